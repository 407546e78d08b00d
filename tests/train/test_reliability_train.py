"""Reliability of training: run-folder lock and race, overwrite refusal, save-before-evaluate,
evaluation failures, disk full, resume fallback, temp files, file modes, checkpoint metadata,
non-finite steps, and TrainConfig's one-rule-per-field validation."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scoresde._core.checks import NonFiniteError
from scoresde.data.images import load_digits
from scoresde.io import checkpoint as ckpt_module
from scoresde.io.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    read_checkpoint_metadata,
    resume_checkpoint,
)
from scoresde.io.runlock import LOCK_NAME, RunFolderBusyError, RunLock
from scoresde.train.trainer import TrainConfig, Trainer

SRC = Path(__file__).resolve().parents[2] / "src"

TINY = {
    "net": "mlp",
    "hidden": 16,
    "depth": 1,
    "batch_size": 16,
    "warmup": 0,
    "log_every": 1,
    "eval_every": 1000,
    "save_every": 1000,
    "num_samples": 0,
    "progress": False,
}


@pytest.fixture(scope="module")
def digits():
    d = load_digits(test_fraction=0.1)
    d.train, d.train_labels = d.train[:48], d.train_labels[:48]
    d.test, d.test_labels = d.test[:16], d.test_labels[:16]
    return d


def _trainer(tmp_path: Path, digits, **options) -> Trainer:
    cfg = {**TINY, "steps": 2, "out": str(tmp_path), "name": "run", **options}
    return Trainer(TrainConfig(**cfg), data=digits)


# ---------------------------------------------------------------------- #
# Lock and race.
# ---------------------------------------------------------------------- #
def test_lock_names_its_holder_and_breaks_stale_locks(tmp_path) -> None:
    run = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / LOCK_NAME).write_text(
            json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "time": "t0"})
        )
        with pytest.raises(RunFolderBusyError, match=f"in use by process {sleeper.pid} on"):
            RunLock(run).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The holder is dead now: its lock is stale and taken over.
    with RunLock(run) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()


def test_fit_refuses_a_folder_held_by_a_live_process(tmp_path, digits) -> None:
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": sleeper.pid, "host": os.uname().nodename, "time": "t0"}
        (run / LOCK_NAME).write_text(json.dumps(holder))
        with pytest.raises(RunFolderBusyError, match=f"in use by process {sleeper.pid}"):
            _trainer(tmp_path, digits).fit(evaluate=False)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_from_another_host_is_respected(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": "t0"}))
    with pytest.raises(RunFolderBusyError, match="process 1 on elsewhere"):
        RunLock(run).acquire()


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from scoresde.data.images import load_digits
    from scoresde.train.trainer import TrainConfig, Trainer
    out, seed = sys.argv[1], int(sys.argv[2])
    d = load_digits(test_fraction=0.1)
    cfg = TrainConfig(net="mlp", hidden=16, depth=1, batch_size=16, warmup=0, log_every=1,
                      eval_every=1000, save_every=5, num_samples=0, progress=False,
                      steps=30, seed=seed, out=out, name="shared")
    trainer = Trainer(cfg, data=d)
    step = trainer.train_step
    def slow_step():  # 20 ms a step: the two runs overlap for about 0.6 s
        time.sleep(0.02)
        return step()
    trainer.train_step = slow_step
    # Start together: each says it is ready, then waits for the other.
    Path(out, f"ready{seed}").touch()
    while not all(Path(out, f"ready{s}").exists() for s in (1, 2)):
        time.sleep(0.002)
    try:
        trainer.fit(evaluate=False)
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
    """
)


@pytest.mark.slow
def test_two_processes_training_into_one_folder(tmp_path) -> None:
    """Two real processes start together on the same run folder: one refuses, nothing is mixed.

    Slow (about 30 s here): two fresh interpreters import torch on a shared machine."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(seed)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    winner = next(seed for seed, (code, _) in zip((1, 2), results) if code == 0)
    loser_msg = next(msg for code, msg in results if code == 1)
    assert "RunFolderBusyError: the run folder" in loser_msg or "already holds a run" in loser_msg, loser_msg
    run = tmp_path / "shared"
    # Nothing mixed: every checkpoint, config.json and every metrics line belong to the winner.
    ckpts = sorted((run / "checkpoints").glob("*.safetensors"))
    assert len(ckpts) == 7  # step 5, 10, ..., 30 and last
    assert {read_checkpoint_metadata(p)["train"]["seed"] for p in ckpts} == {winner}
    assert json.loads((run / "config.json").read_text())["seed"] == winner
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))
    assert not list((run / "checkpoints").glob(".*.tmp")) and not (run / LOCK_NAME).exists()


# ---------------------------------------------------------------------- #
# Overwrite, temp files, file modes.
# ---------------------------------------------------------------------- #
def test_an_existing_run_is_not_overwritten(tmp_path, digits) -> None:
    _trainer(tmp_path, digits, steps=4).fit(evaluate=False)
    last = tmp_path / "run" / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds a run .*resume it, or pass overwrite"):
        _trainer(tmp_path, digits, steps=1).fit(evaluate=False)
    assert last.read_bytes() == before and load_checkpoint(last).step == 4
    # Resuming continues it; overwrite replaces it.
    resumed = _trainer(tmp_path, digits, steps=6)
    resumed.resume(tmp_path / "run")
    assert resumed.fit(evaluate=False).step == 6
    _trainer(tmp_path, digits, steps=1, overwrite=True).fit(evaluate=False)
    assert load_checkpoint(last).step == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.safetensors", "step_0000001.safetensors"]


def test_orphaned_temp_files_are_cleaned_and_modes_agree(tmp_path, digits) -> None:
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    orphan = ckpt_dir / ".step_0000005.safetensors.999.abc.tmp"
    orphan.write_bytes(b"partial")
    trainer = _trainer(tmp_path, digits, steps=2, overwrite=True)
    trainer.fit(evaluate=False)
    assert not orphan.exists()
    modes = {p.name: p.stat().st_mode & 0o777 for p in ckpt_dir.iterdir()}
    assert len(set(modes.values())) == 1, modes
    assert modes["last.safetensors"] == ckpt_module.file_mode()


# ---------------------------------------------------------------------- #
# Save before evaluate; evaluation failures.
# ---------------------------------------------------------------------- #
def test_evaluation_failure_keeps_the_checkpoint(tmp_path, digits, capsys) -> None:
    trainer = _trainer(tmp_path, digits, steps=4, eval_every=2, save_every=2)

    def broken() -> dict:
        # The checkpoint of this step must already be on disk when evaluation runs.
        assert (tmp_path / "run" / "checkpoints" / f"step_{trainer.step:07d}.safetensors").is_file()
        raise RuntimeError("cannot write a 4-channel grid")

    trainer.evaluate = broken
    res = trainer.fit()
    assert res.step == 4 and len(res.eval_errors) == 2
    assert "evaluation at step 2 failed (RuntimeError: cannot write a 4-channel grid)" in res.eval_errors[0]
    assert "training goes on" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run").step == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_error" in r] == [2, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eval_bpd": True, "data": "digits-color"}, "eval_bpd needs discrete data"),
        ({"num_samples": 4}, "1 or 3 channels; the data has 4"),
        ({"net": "unet", "attn_resolutions": (3,)}, r"the UNet has no resolution \[3\]"),
        ({"image_size": 16}, "image_size 16: the data's images are 8x8"),
    ],
)
def test_evaluation_settings_are_checked_before_the_first_step(tmp_path, digits, options, message) -> None:
    data = digits
    if options.get("num_samples"):
        data = load_digits(test_fraction=0.1)
        data.train = data.train.repeat(1, 4, 1, 1)[:48]
        data.test = data.test.repeat(1, 4, 1, 1)[:16]
    if options.get("data") == "digits-color":
        data = load_digits(test_fraction=0.1, colored=True)
    with pytest.raises(ValueError, match=message):
        Trainer(TrainConfig(**{**TINY, "out": str(tmp_path), **options}), data=data)


# ---------------------------------------------------------------------- #
# Disk full and resume fallback.
# ---------------------------------------------------------------------- #
def test_disk_full_names_the_intact_checkpoint(tmp_path, digits, monkeypatch) -> None:
    """ENOSPC while writing step 4 (simulated in the writer): the error names step 2 as intact."""
    import safetensors.torch

    trainer = _trainer(tmp_path, digits, steps=4, save_every=2)
    real = safetensors.torch.save_file

    def full(tensors, filename, metadata=None):
        if trainer.step == 4:
            Path(filename).write_bytes(b"\0" * 100)  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    step2 = tmp_path / "run" / "checkpoints" / "step_0000002.safetensors"
    with pytest.raises(
        CheckpointWriteError, match=f"No space left on device.*newest intact checkpoint is {step2}"
    ):
        trainer.fit(evaluate=False)
    ckpt_dir = step2.parent
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.safetensors", "step_0000002.safetensors"]
    assert load_checkpoint(ckpt_dir / "last.safetensors").step == 2


def test_disk_full_on_a_real_tmpfs(tmp_path, digits) -> None:
    """A 1 MiB tmpfs: needs root (mount); skipped otherwise."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root on this machine")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("mount -t tmpfs failed (no privilege in this container)")
    try:
        trainer = _trainer(mnt, digits, steps=2, hidden=256, depth=3)  # ~0.2M params: 2.4 MB with Adam
        with pytest.raises(CheckpointWriteError, match="No space left on device"):
            trainer.fit(evaluate=False)
        assert not list((mnt / "run" / "checkpoints").glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)])


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, digits, capsys) -> None:
    _trainer(tmp_path, digits, steps=4, save_every=2).fit(evaluate=False)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    last = ckpt_dir / "last.safetensors"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    assert resume_checkpoint(tmp_path / "run")[0] == ckpt_dir / "step_0000004.safetensors"
    (ckpt_dir / "step_0000004.safetensors").write_bytes(b"garbage")
    path, note = resume_checkpoint(last)
    assert path == ckpt_dir / "step_0000002.safetensors" and "corrupt or incomplete" in note
    trainer = _trainer(tmp_path, digits, steps=4, save_every=2)
    assert trainer.resume(last) == 2
    assert "resuming from the newest intact checkpoint" in capsys.readouterr().err
    last.unlink()
    assert resume_checkpoint(last)[0] == ckpt_dir / "step_0000002.safetensors"
    shutil.rmtree(ckpt_dir)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resume_checkpoint(last)


# ---------------------------------------------------------------------- #
# Checkpoint metadata validated before allocating.
# ---------------------------------------------------------------------- #
def _rewrite_meta(src: Path, dst: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["scoresde"])
    tensors = load_file(str(src))
    meta, tensors = edit(meta, tensors)
    save_file(tensors, str(dst), metadata={"scoresde": json.dumps(meta)})
    return dst


def _no_ema(meta, tensors):
    return meta, {k: v for k, v in tensors.items() if not k.startswith("ema.")}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m, t: ([m], t), "must be a JSON object, got a JSON list"),
        (lambda m, t: ({k: v for k, v in m.items() if k != "step"}, t), "lacks 'step'"),
        (lambda m, t: ({**m, "step": -3}, t), "'step' must be a non-negative integer"),
        (lambda m, t: ({**m, "net": {**m["net"], "hidden": 10**6}}, t), r"hidden must lie in \[1, 65536\]"),
        (
            lambda m, t: ({**m, "net": {**m["net"], "hidden": 1e6}}, t),
            "hidden must be an integer, got 1000000.0",
        ),
        (
            lambda m, t: ({**m, "net": {**m["net"], "hidden": 65536, "depth": 1024}}, t),
            "parameters .* more than the",
        ),
        (lambda m, t: ({**m, "model": {**m["model"], "sigma_data": float("nan")}}, t), "sigma_data must be"),
        (lambda m, t: ({**m, "net": [1, 2]}, t), "'net' must be a JSON object"),
        (_no_ema, "has_ema but the file holds no ema"),
    ],
)
def test_bad_checkpoint_metadata_is_refused_before_allocating(tmp_path, digits, edit, message) -> None:
    _trainer(tmp_path, digits, steps=1).fit(evaluate=False)
    bad = _rewrite_meta(
        tmp_path / "run" / "checkpoints" / "last.safetensors", tmp_path / "bad.safetensors", edit
    )
    with pytest.raises(ValueError, match=message):
        load_checkpoint(bad)


def test_unet_sizes_from_metadata_are_bounded() -> None:
    from scoresde.nets import build_net

    with pytest.raises(ValueError, match=r"base_channels must lie in \[1, 8192\], got 1000000"):
        build_net({"name": "unet", "base_channels": 1000000})
    with pytest.raises(ValueError, match="channel_mults must be a list of integers, got 3"):
        build_net({"name": "unet", "channel_mults": 3})
    with pytest.raises(ValueError, match="parameters"):
        build_net({"name": "unet", "base_channels": 8192, "channel_mults": [1, 2, 4]})


# ---------------------------------------------------------------------- #
# Non-finite steps.
# ---------------------------------------------------------------------- #
def _poison(trainer: Trainer, bad_steps) -> None:
    objective = trainer.objective

    def poisoned(model, x0, y, u, noise):
        out = objective(model, x0, y, u, noise)
        if trainer.step in bad_steps:
            out.loss = out.loss * float("nan")
        return out

    trainer.objective = poisoned


def test_single_non_finite_steps_are_skipped(tmp_path, digits) -> None:
    trainer = _trainer(tmp_path, digits, steps=6, max_nonfinite_steps=2)
    _poison(trainer, {1, 3, 4})
    res = trainer.fit(evaluate=False)
    assert res.step == 6 and res.skipped_steps == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.ema.num_updates == 3  # only the good steps updated the EMA
    assert math.isnan(res.losses[1]) and math.isfinite(res.losses[0])


def test_consecutive_non_finite_steps_stop_with_the_last_checkpoint_intact(tmp_path, digits) -> None:
    trainer = _trainer(tmp_path, digits, steps=20, save_every=2, max_nonfinite_steps=2)
    _poison(trainer, set(range(3, 20)))
    # Steps 1-3 update; 4, 5, 6 are skipped (step 4's checkpoint holds step 3's weights); 6 stops.
    step4 = tmp_path / "run" / "checkpoints" / "step_0000004.safetensors"
    with pytest.raises(NonFiniteError, match=f"training stopped at step 6: 3 consecutive .*{step4}"):
        trainer.fit(evaluate=False)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 4 and ckpt.config["ema"]["num_updates"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt.tensors.values())
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # the lock is released on errors too


def test_stop_at_the_first_non_finite_step(tmp_path, digits) -> None:
    trainer = _trainer(tmp_path, digits, steps=5, max_nonfinite_steps=0)
    _poison(trainer, {0})
    with pytest.raises(NonFiniteError, match="training stopped at step 1: 1 consecutive"):
        trainer.fit(evaluate=False)


# ---------------------------------------------------------------------- #
# TrainConfig: strict types and one rule per field.
# ---------------------------------------------------------------------- #
RULES = [
    ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0"),
    ({"grad_clip": math.nan}, "grad_clip must be a finite number > 0"),
    ({"lr": math.inf}, "lr must be a finite number > 0"),
    ({"lr": math.nan}, "lr must be a finite number > 0"),
    ({"sigma_data": math.nan}, "sigma_data must be a finite number > 0"),
    ({"sigma_data": 0.0}, "sigma_data must be a finite number > 0"),
    ({"bpd_samples": -5}, "bpd_samples must be >= 1, got -5"),
    ({"bpd_samples": 0}, "bpd_samples must be >= 1, got 0"),
    ({"image_size": 0}, "image_size must be >= 1"),
    ({"label_dropout": 0.2}, "label_dropout 0.2 needs conditional = true"),
    ({"sample_method": "foo"}, "sample_method 'foo' is not a sampler"),
    ({"seed": 2**64}, "seed must lie in"),
    ({"seed": -1}, "seed must lie in"),
    ({"device": "tpu"}, "device must be auto, cpu, mps, cuda or cuda:N, got 'tpu'"),
    ({"name": "../../x"}, "name must be a plain folder name"),
    ({"name": ".."}, "name must be a plain folder name"),
    ({"test_fraction": 1.0}, "test_fraction must lie in"),
    ({"dropout": 1.0}, "dropout must lie in"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
    ({"channel_mults": ()}, "channel_mults must hold at least one"),
    ({"channel_mults": (0, 1)}, "channel_mults must be >= 1"),
    ({"num_scales": 0}, "num_scales must be >= 1"),
    ({"num_samples": -1}, "num_samples must be >= 0"),
    ({"sde_options": {"beta_max": math.inf}}, "sde_options.beta_max must be finite"),
    ({"max_nonfinite_steps": -1}, "max_nonfinite_steps must be >= 0"),
    ({"conditional": "false"}, "conditional must be true or false, got 'false'"),
    ({"steps": "abc"}, "steps must be an integer, got 'abc'"),
    ({"steps": 2.5}, "steps must be an integer, got 2.5"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"channel_mults": 3}, "channel_mults must be a list, got 3"),
    ({"data": 5}, "data must be a string, got 5"),
    ({"hflip": 1}, "hflip must be true or false, got 1"),
    ({"sde_options": {"beta_max": "big"}}, "sde_options.beta_max must be a number"),
]


@pytest.mark.parametrize(("options", "message"), RULES, ids=[str(o) for o, _ in RULES])
def test_config_rules(options, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig(**options)


def test_config_normalises_good_values() -> None:
    c = TrainConfig(steps=1e3, lr=1, channel_mults=[1, 2], sde_options={"beta_max": 20})
    assert c.steps == 1000 and isinstance(c.steps, int) and c.lr == 1.0 and c.channel_mults == (1, 2)
    assert c.sde_options == {"beta_max": 20.0} and TrainConfig(grad_clip=None).grad_clip is None


@settings(max_examples=25, deadline=None)
@given(
    key=st.sampled_from(["lr", "grad_clip", "sigma_data"]),
    value=st.one_of(st.floats(max_value=0.0), st.just(math.inf), st.just(math.nan), st.just(-math.inf)),
)
def test_positive_float_options_refuse_every_bad_value(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{key} must be a finite number > 0"):
        TrainConfig(**{key: value})


@settings(max_examples=25, deadline=None)
@given(
    key=st.sampled_from(["steps", "batch_size", "bpd_samples", "sample_steps", "log_every"]),
    value=st.one_of(st.integers(max_value=0), st.text(max_size=3), st.booleans(), st.floats(0.1, 0.9)),
)
def test_positive_int_options_refuse_every_bad_value(key: str, value) -> None:
    with pytest.raises((ValueError, TypeError), match=key):
        TrainConfig(**{key: value})


def test_evaluations_are_bounded_to_their_share_of_the_time(tmp_path, digits) -> None:
    """Evaluations before the last are skipped while they exceed ``eval_share`` of the run's time;
    the last one always runs."""
    trainer = _trainer(tmp_path, digits, steps=4, eval_every=1, save_every=10, eval_share=0.05)
    evaluated = []

    def slow() -> dict:
        evaluated.append(trainer.step)
        time.sleep(1.0)  # far more than 5% of four tiny steps
        return {"eval_loss": 0.0}

    trainer.evaluate = slow
    trainer.fit()
    assert evaluated == [1, 4]
