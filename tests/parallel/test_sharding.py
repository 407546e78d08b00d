"""Sharding over torchrun processes: 2 gloo processes give exactly the single-process samples."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import scoresde as ss
from scoresde.parallel.process_group import DistInfo
from scoresde.parallel.sharding import gather_to_rank0, sample_batches, shard_range

SRC = Path(__file__).resolve().parents[1] / "src"

_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import scoresde as ss
    from scoresde.parallel.sharding import gather_to_rank0, sample_batches, shard_range
    from scoresde.parallel.process_group import cleanup_distributed, init_distributed

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    gmm = ss.GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [[[0.1, 0.0], [0.0, 0.2]]] * 2)
    oracle = ss.AnalyticScore(gmm, ss.VPSDE())
    mine = shard_range(11, info.rank, info.world_size)
    x = sample_batches(ss.sample, oracle, (2,), mine, seed=7, batch_size=3,
                       method="euler_maruyama", steps=6, dtype=torch.float64)
    # Uneven blocks (6 and 5 samples) with a trailing dimension, as a likelihood table.
    both = gather_to_rank0(torch.cat([x, torch.full((len(mine), 1), float(info.rank))], 1), info)
    if info.is_main:
        torch.save(both, sys.argv[1])
    cleanup_distributed()
    """
)


def test_two_gloo_processes_equal_one(tmp_path) -> None:
    script = tmp_path / "shard.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "gathered.pt"
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gathered = torch.load(out, weights_only=True)
    gmm = ss.GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [[[0.1, 0.0], [0.0, 0.2]]] * 2)
    single = ss.sample(
        ss.AnalyticScore(gmm, ss.VPSDE()),
        shape=(11, 2),
        method="euler_maruyama",
        steps=6,
        seed=7,
        dtype=torch.float64,
    ).x
    assert gathered.shape == (11, 3)
    # Bit equality: the same code on this machine; per-sample seeds make 2 ranks equal 1 process.
    assert torch.equal(gathered[:, :2], single)
    assert gathered[:, 2].tolist() == [0.0] * len(shard_range(11, 0, 2)) + [1.0] * len(shard_range(11, 1, 2))


def test_gather_is_identity_single_process() -> None:
    x = torch.arange(6.0).reshape(3, 2)
    assert gather_to_rank0(x, DistInfo()) is x
    assert sample_batches(ss.sample, None, (2,), range(0), seed=0).shape == (0, 2)


def test_sample_sharded_single_process_is_sample_batches_with_nfe() -> None:
    from scoresde.parallel.sharding import sample_sharded

    gmm = ss.GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [[[0.1, 0.0], [0.0, 0.2]]] * 2)
    oracle = ss.AnalyticScore(gmm, ss.VPSDE())
    kw = {"method": "euler", "steps": 5, "dtype": torch.float64}
    drawn = sample_sharded(ss.sample, oracle, (2,), 7, seed=3, info=DistInfo(), batch_size=3, **kw)
    want = sample_batches(ss.sample, oracle, (2,), range(7), seed=3, batch_size=3, **kw)
    # Bit equality: one process runs the same batches as sample_batches, on this machine.
    torch.testing.assert_close(drawn.x, want.float(), rtol=0, atol=0)
    assert drawn.nfe == 6  # 5 steps and the final denoising step
