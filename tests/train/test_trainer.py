"""The image trainer: exact resume, 2-process DDP against 1 process, options, errors."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scoresde.data.images import load_digits
from scoresde.io.checkpoint import load_checkpoint
from scoresde.train.trainer import TrainConfig, Trainer

SRC = Path(__file__).resolve().parents[2] / "src"

TINY = {
    "base_channels": 8,
    "num_res_blocks": 1,
    "batch_size": 16,
    "warmup": 2,
    "log_every": 1,
    "eval_every": 1000,
    "save_every": 1000,
    "num_samples": 0,
    "progress": False,
}


@pytest.fixture(scope="module")
def digits():
    d = load_digits(test_fraction=0.1)
    d.train, d.train_labels = d.train[:48], d.train_labels[:48]  # 3 batches per epoch: epochs roll over
    d.test, d.test_labels = d.test[:16], d.test_labels[:16]
    return d


def _states(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.model.net.state_dict().values(), *trainer.ema.module.net.state_dict().values()]


def test_resume_is_exact(tmp_path, digits) -> None:
    """4 steps in one go == 2 steps, checkpoint, fresh trainer, 2 more (dropout, flips, label dropout
    on; compile off, as the bitwise promise says)."""
    cfg = dict(TINY, steps=4, dropout=0.2, hflip=True, conditional=True, label_dropout=0.3, out=str(tmp_path))
    cfg["compile"] = "off"
    full = Trainer(TrainConfig(**cfg, name="full"), data=digits)
    full.fit(evaluate=False)
    first = Trainer(TrainConfig(**{**cfg, "steps": 2}, name="split"), data=digits)
    first.fit(evaluate=False)
    torch.manual_seed(12345)  # disturb the global RNG: resume must not depend on it
    second = Trainer(TrainConfig(**cfg, name="split"), data=digits)
    assert second.resume(tmp_path / "split" / "checkpoints" / "last.safetensors") == 2
    second.fit(evaluate=False)
    assert second.step == 4
    for a, b in zip(_states(full), _states(second), strict=True):
        assert torch.equal(a, b)
    # The test can fail: a different seed gives different weights.
    other = Trainer(TrainConfig(**{**cfg, "seed": 1}, name="other"), data=digits)
    other.fit(evaluate=False)
    assert not all(torch.equal(a, b) for a, b in zip(_states(full), _states(other)))


def test_resume_refuses_changed_options(tmp_path, digits) -> None:
    cfg = dict(TINY, steps=1, out=str(tmp_path), name="r")
    Trainer(TrainConfig(**cfg), data=digits).fit(evaluate=False)
    changed = Trainer(TrainConfig(**{**cfg, "lr": 1e-4, "steps": 3}), data=digits)
    with pytest.raises(ValueError, match=r"options differ from the checkpoint's \(lr"):
        changed.resume(tmp_path / "r" / "checkpoints" / "last.safetensors")


def test_outputs_eval_and_bf16(tmp_path, digits) -> None:
    cfg = TrainConfig(
        **{**TINY, "num_samples": 4, "eval_every": 2},
        steps=2,
        bf16=True,
        sample_steps=3,
        eval_bpd=True,
        bpd_samples=8,
        out=str(tmp_path),
        name="o",
    )
    res = Trainer(cfg, data=digits).fit()
    run = tmp_path / "o"
    assert (run / "samples" / "step_0000002.png").is_file()
    assert (run / "checkpoints" / "step_0000002.safetensors").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "eval_loss" in lines[-1]
    assert all(math.isfinite(v) for v in res.losses) and math.isfinite(res.eval["eval_loss"])
    # An untrained model: the bound is finite and far above the 17-level uniform's log2(17) = 4.09 bits.
    assert math.isfinite(res.eval["bpd_bound"]) and res.eval["bpd_bound"] > 4.09
    assert load_checkpoint(run).step == 2


def test_minutes_budget_stops_and_saves(tmp_path, digits) -> None:
    """A tiny time budget stops long before ``steps``; the stopping step is saved and evaluated."""
    cfg = TrainConfig(**{**TINY, "num_samples": 0}, steps=10**6, minutes=1e-4, out=str(tmp_path), name="m")
    res = Trainer(cfg, data=digits).fit()
    assert 1 <= res.step < 10**6
    assert load_checkpoint(tmp_path / "m").step == res.step
    assert "eval_loss" in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()[-1]
    # Without a budget the same run would go on: the stop came from the clock.
    assert TrainConfig(**TINY).minutes is None


def test_checkpoints_older_than_final_lr_and_sample_clip_resume_as_they_ran(tmp_path, digits) -> None:
    """A checkpoint saved before ``final_lr`` / ``sample_clip`` existed resumes with the values its
    code used (cosine to lr / 10, unclipped grids); the current defaults would be refused."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from scoresde.train.resume import resumed_settings

    cfg = dict(TINY, steps=2, schedule="cosine", final_lr=0.1, sample_clip="none", out=str(tmp_path))
    Trainer(TrainConfig(**cfg, name="old"), data=digits).fit(evaluate=False)
    last = tmp_path / "old" / "checkpoints" / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        meta = dict(f.metadata())
    record = json.loads(meta["scoresde"])
    for key in ("final_lr", "sample_clip"):
        del record["train"][key]
    meta["scoresde"] = json.dumps(record)
    save_file(load_file(str(last)), str(last), metadata=meta)
    settings = resumed_settings(last)
    assert settings["final_lr"] == 0.1 and settings["sample_clip"] == "none"
    options = {k: v for k, v in cfg.items() if k not in ("final_lr", "sample_clip")}
    resumed = Trainer(TrainConfig(**{**options, **settings, "steps": 3}), data=digits)
    assert resumed.resume(last) == 2
    with pytest.raises(ValueError, match=r"final_lr: 0\.1 -> 0\.0"):
        Trainer(TrainConfig(**{**options, "steps": 3}), data=digits).resume(last)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decaying_schedules_end_at_final_lr_over_steps_or_budget(digits, schedule) -> None:
    """Warm-up, then a decay to lr * final_lr at the last step or when the time budget is spent."""
    cfg = TrainConfig(**{**TINY, "warmup": 10}, steps=110, lr=1e-3, schedule=schedule, final_lr=0.2)
    tr = Trainer(cfg, data=digits)
    assert tr.learning_rate(4) == pytest.approx(5e-4)  # warm-up: (4 + 1) / 10
    assert tr.learning_rate(10) == pytest.approx(1e-3)
    assert tr.learning_rate(110) == pytest.approx(2e-4)
    mid = {"cosine": 2e-4 + 8e-4 * 0.5, "linear": 2e-4 + 8e-4 * 0.5}[schedule]
    assert tr.learning_rate(60) == pytest.approx(mid)
    quarter = {"cosine": 2e-4 + 8e-4 * 0.5 * (1 + math.cos(math.pi / 4)), "linear": 2e-4 + 8e-4 * 0.75}
    assert tr.learning_rate(35) == pytest.approx(quarter[schedule])
    # The time budget drives the decay when it is ahead of the step count; never the warm-up.
    assert tr.learning_rate(35, budget_spent=0.5) == pytest.approx(mid)
    assert tr.learning_rate(35, budget_spent=0.1) == pytest.approx(quarter[schedule])
    assert tr.learning_rate(11, budget_spent=1.0) == pytest.approx(2e-4)
    assert tr.learning_rate(4, budget_spent=1.0) == pytest.approx(5e-4)
    constant = Trainer(TrainConfig(**TINY, lr=1e-3, schedule="constant"), data=digits)
    assert constant.learning_rate(10**6, budget_spent=1.0) == pytest.approx(1e-3)


def test_minutes_budget_decays_the_logged_learning_rate(tmp_path, digits) -> None:
    """With a time budget and a step count far away, the logged rate still reaches lr * final_lr."""
    cfg = TrainConfig(
        **{**TINY, "warmup": 0}, steps=10**6, minutes=0.02, schedule="linear", final_lr=0.0, out=str(tmp_path)
    )
    Trainer(cfg, data=digits).fit(evaluate=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rates) >= 3
    assert rates[0] > 0.5 * cfg.lr  # the first step: little of the budget spent
    assert rates[-1] < 0.2 * cfg.lr  # the last: almost all of it
    assert all(a >= b for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"final_lr": 1.5}, "final_lr is the last learning rate"),
        ({"schedule": "step"}, "unknown schedule"),
        ({"minutes": 0.0}, "minutes must be a positive"),
        ({"minutes": float("nan")}, "minutes must be a positive"),
        ({"loss": "ncsn"}, "unknown loss"),
        ({"sde": "ncsnv2"}, "unknown sde"),
        ({"steps": 0}, "steps must be a positive"),
        ({"importance": True, "loss": "ddpm"}, "dsm loss only"),
    ],
)
def test_config_errors(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_trainer_data_errors(digits) -> None:
    with pytest.raises(ValueError, match="exceeds the 48 training images"):
        Trainer(TrainConfig(**{**TINY, "batch_size": 64}), data=digits)


def test_two_process_ddp_matches_one_process(tmp_path, digits) -> None:
    """torchrun, 2 CPU processes (gloo), global batch 16 == 1 process with batch 16.

    Both draw the same global minibatch, times and noise; the gradients agree up to float
    summation order (DDP averages two half-batch means).  Adam divides each coordinate by its
    own gradient RMS, so coordinates whose gradient is at rounding level may step differently;
    we therefore compare the whole weight update: relative L2 difference below 1e-2 (observed
    ~5e-4), while a different seed gives a difference of order 1.
    """
    args = ["--steps", "3", "--base-channels", "8", "--num-res-blocks", "1", "--batch-size", "16"]
    args += ["--dropout", "0", "--hflip", "--warmup", "1", "--num-samples", "0", "--no-progress"]
    args += ["--test-fraction", "0.1", "--out", str(tmp_path), "--name", "ddp"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "scoresde", "train", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout
    ddp = load_checkpoint(tmp_path / "ddp", ema=False)

    cfg = TrainConfig(
        **{**TINY, "log_every": 1000, "warmup": 1},
        steps=3,
        dropout=0.0,
        hflip=True,
        out=str(tmp_path),
        name="one",
    )
    single = Trainer(cfg)  # full digits, same split as the CLI run
    init = {k: v.clone() for k, v in single.model.net.state_dict().items()}
    single.fit(evaluate=False)
    other = Trainer(TrainConfig(**{**cfg.to_dict(), "seed": 7, "name": "other"}))
    other.fit(evaluate=False)

    def rel_update_diff(a: dict, b: dict) -> float:
        num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in init)
        den = sum(float(((a[k] - init[k]) ** 2).sum()) for k in init)
        return math.sqrt(num / den)

    mine = single.model.net.state_dict()
    assert rel_update_diff(mine, ddp.net_state()) < 1e-2
    assert rel_update_diff(mine, other.model.net.state_dict()) > 0.1
    shutil.rmtree(tmp_path)


def test_auto_weighting_resolves_by_prediction_and_importance() -> None:
    """``weighting="auto"`` (the default) is recorded as the weighting it stands for: edm for v /
    x0 / velocity networks, sigma2 (the eps-MSE) for eps and score networks, likelihood with
    importance-sampled times; an explicit weighting is kept, and a bad pair still fails by name."""
    assert TrainConfig().weighting == "edm"
    assert {p: TrainConfig(prediction=p).weighting for p in ("v", "x0", "velocity", "eps", "score")} == {
        "v": "edm",
        "x0": "edm",
        "velocity": "edm",
        "eps": "sigma2",
        "score": "sigma2",
    }
    assert TrainConfig(importance=True).weighting == "likelihood"
    assert TrainConfig(prediction="eps", weighting="edm").weighting == "edm"
    assert TrainConfig.from_dict(TrainConfig(prediction="eps").to_dict()).weighting == "sigma2"
    with pytest.raises(ValueError, match="importance sampling of t needs weighting='likelihood'"):
        TrainConfig(weighting="edm", importance=True)
    with pytest.raises(ValueError, match=r"unknown weighting 'bogus'.*'auto'"):
        TrainConfig(weighting="bogus")
