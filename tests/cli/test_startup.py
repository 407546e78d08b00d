"""Start-up and runtime of the CLI: ``--help`` imports no torch, the torch-free name copies match
their sources, the OpenMP environment and the automatic thread count, ``--compile``.

No timings here (those are in benchmarks/speed.py): what is checked is which modules are
imported and which values are chosen.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from scoresde.cli import names
from scoresde.cli.__main__ import TABLE, load_command, main
from scoresde.settings import runtime

_PROBE = (
    "import sys\n"
    "from scoresde.cli.__main__ import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('MODULES', ','.join(m for m in ('torch', 'numpy') if m in sys.modules), file=sys.stderr)\n"
)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["sample", "--help"], ["fit-solver", "--help"], []],
    ids=["top", "sample", "fit-solver", "bare"],
)
def test_help_imports_no_torch(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "COMMAND" in proc.stdout or "--checkpoint" in proc.stdout
    loaded = proc.stderr.rsplit("MODULES", 1)[1].strip()
    assert loaded == "", f"scoresde {' '.join(argv)} imported {loaded}"


def test_import_scoresde_imports_no_torch() -> None:
    code = "import sys, scoresde; assert 'torch' not in sys.modules; print(scoresde.VPSDE.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "VPSDE"


def test_table_matches_the_commands() -> None:
    assert len({e.name for e in TABLE}) == len(TABLE)
    for entry in TABLE:
        command = load_command(entry.name)
        assert command.name == entry.name
        assert command.help == entry.help, entry.name


def test_name_copies_match_their_sources() -> None:
    from scoresde.distill.consistency import DISTANCES, WEIGHTINGS
    from scoresde.distill.progressive import PROGRESSIVE_WEIGHTINGS
    from scoresde.distill.run import DISTILL_METHODS
    from scoresde.flow.integrators import NORMS
    from scoresde.io.samples import SAMPLE_FORMATS
    from scoresde.io.sources import WEIGHTS
    from scoresde.models.clipping import CLIP_MODES
    from scoresde.models.compile import COMPILE_MODES
    from scoresde.models.execution import EXECUTION_MODES
    from scoresde.sampling.grids import GRIDS
    from scoresde.sampling.registry import ALIASES, SAMPLERS
    from scoresde.train.config import SCHEDULES

    assert {k: tuple(v.required) for k, v in SAMPLERS.items()} == names.SAMPLERS_REQUIRED
    assert list(names.SAMPLERS_REQUIRED) == list(SAMPLERS)
    assert names.ALIASES == ALIASES
    assert tuple(names.GRIDS) == tuple(GRIDS)
    assert tuple(names.CLIP_MODES) == tuple(CLIP_MODES)
    assert tuple(names.NORMS) == tuple(NORMS)
    assert tuple(names.SAMPLE_FORMATS) == tuple(SAMPLE_FORMATS)
    assert tuple(names.WEIGHTS) == tuple(WEIGHTS)
    assert tuple(names.EXECUTION_MODES) == tuple(EXECUTION_MODES)
    assert tuple(names.COMPILE_MODES) == tuple(COMPILE_MODES)
    assert tuple(names.CONSISTENCY_DISTANCES) == tuple(DISTANCES)
    assert tuple(names.CONSISTENCY_WEIGHTINGS) == tuple(WEIGHTINGS)
    assert tuple(names.LR_SCHEDULES) == tuple(SCHEDULES)
    assert tuple(names.PROGRESSIVE_WEIGHTINGS) == tuple(PROGRESSIVE_WEIGHTINGS)
    assert tuple(names.DISTILL_METHODS) == tuple(DISTILL_METHODS)


def test_quiet_openmp_sets_a_passive_policy_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    assert runtime.quiet_openmp(env) == runtime.PASSIVE_OPENMP
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["GOMP_SPINCOUNT"] == "0"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert runtime.quiet_openmp(env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"SCORESDE_OMP_ACTIVE": "1"}
    assert runtime.quiet_openmp(env) == {} and "OMP_WAIT_POLICY" not in env
    env = {"KMP_BLOCKTIME": "200"}
    runtime.quiet_openmp(env)
    assert env["KMP_BLOCKTIME"] == "200" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_cli_runs_torch_with_the_passive_policy() -> None:
    code = (
        "import os, sys\n"
        "from scoresde.cli.__main__ import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in runtime.PASSIVE_OPENMP}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "PASSIVE"


def test_auto_threads_takes_the_free_cores(monkeypatch) -> None:
    for var in ("SCORESDE_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert runtime.auto_threads(cores=2, busy=0.0) == 2
    assert runtime.auto_threads(cores=2, busy=1.0) == 1
    assert runtime.auto_threads(cores=2, busy=7.0) == 1
    assert runtime.auto_threads(cores=16, busy=3.2) == 13
    monkeypatch.setenv("SCORESDE_THREADS", "3")
    assert runtime.auto_threads(cores=2, busy=1.0) == 3
    monkeypatch.delenv("SCORESDE_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # an explicit OpenMP setting (torchrun's) is kept
    assert runtime.auto_threads(cores=2, busy=0.0) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes on this node share the free cores
    assert runtime.auto_threads(cores=16, busy=0.0) == 8
    assert runtime.auto_threads(cores=2, busy=1.0) == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    n = runtime.auto_threads()
    assert 1 <= n <= runtime.available_cores()
    assert runtime.busy_cores() >= 0.0


def test_inference_commands_take_compile() -> None:
    for name in ("sample", "likelihood", "encode", "decode", "interpolate", "eval", "inpaint", "colorize"):
        keys = {o.key for o in load_command(name).all_options}
        assert {"compile", "compile_mode", "channels_last"} <= keys, name


def test_sample_frozen_and_channels_last_match_eager(digits_ckpt: str, tmp_path) -> None:
    """``--compile freeze --channels-last`` gives the eager samples within float tolerance (the
    MLP has no convolutions: channels_last leaves it as it is)."""
    import numpy as np

    out = {}
    for label, extra in (("eager", []), ("frozen", ["--compile", "freeze", "--channels-last"])):
        argv = ["sample", "--checkpoint", digits_ckpt, "-n", "4", "--steps", "3", "--method", "ddim", *extra]
        assert main([*argv, "--device", "cpu", "--out", str(tmp_path / label)]) == 0
        out[label] = np.load(tmp_path / label / "samples_ddim_3_seed0.npz")["x"]
    np.testing.assert_allclose(out["frozen"], out["eager"], rtol=1e-4, atol=1e-5)


def test_compile_without_a_compiler_is_a_clear_error(digits_ckpt: str, tmp_path, monkeypatch, capsys) -> None:
    from scoresde.models import compile as C

    monkeypatch.setattr(C, "_cxx_compiler", lambda: None)
    C._probe.cache_clear()
    try:
        argv = ["sample", "--checkpoint", digits_ckpt, "--compile", "--num", "2", "--steps", "2"]
        status = main([*argv, "--device", "cpu", "--out", str(tmp_path / "s")])
    finally:
        C._probe.cache_clear()
    err = capsys.readouterr().err
    assert status == 1
    assert "scoresde sample: error: torch.compile" in err
    assert "C++ compiler" in err and "without --compile" in err
