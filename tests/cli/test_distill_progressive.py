"""``scoresde distill --method progressive``: round bookkeeping, an exact resume (mid-round and at a
round's end), and a student that ``scoresde sample`` draws from on its distilled DDIM grid (tiny MLP
teacher on flattened 8x8 digits)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import read_checkpoint_metadata
from scoresde.io.loaded import load_model
from scoresde.sampling.grids import time_grid

TINY = ["--method", "progressive", "--batch-size", "8", "--log-every", "1", "--threads", "1"]


def _distill(teacher: str, out: Path, *extra: str) -> int:
    return main(["distill", "--checkpoint", teacher, "--out", str(out), *TINY, *extra])


def _same(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert sorted(x) == sorted(y)
    assert any(k.startswith("optim.") for k in x) and any(k.startswith("teacher.") for k in x)
    assert all(torch.equal(x[k], y[k]) for k in x)  # teacher, student, EMA and optimiser state


def test_resume_mid_round_and_at_a_round_end_continue_bit_for_bit(digits_ckpt, tmp_path, capsys) -> None:
    # The same code run twice on one machine.  2 rounds of 3 steps: 8 -> 4 -> 2 DDIM steps.
    straight = tmp_path / "straight"
    args = ("--rounds", "2", "--steps", "3", "--save-every", "2")
    assert _distill(digits_ckpt, straight, *args) == 0
    ckpts = straight / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step_*")) == [f"step_000000{k}.safetensors" for k in (2, 4, 6)]
    assert (straight / "metrics.jsonl").read_text().count("\n") == 6
    # Mid-round: step 4 is round 2's first step; resume a copy of the run from it.
    mid = tmp_path / "mid"
    shutil.copytree(straight, mid)
    for name in ("step_0000006.safetensors", "last.safetensors"):
        (mid / "checkpoints" / name).unlink()
    assert (
        main(["distill", "--resume", str(mid / "checkpoints" / "step_0000004.safetensors"), "--threads", "1"])
        == 0
    )
    assert "resumed" in capsys.readouterr().out
    _same(ckpts / "last.safetensors", mid / "checkpoints" / "last.safetensors")
    # At a round's end: one round of the same 8-step teacher, then --rounds 2 continues the halving.
    ends = tmp_path / "ends"
    assert _distill(digits_ckpt, ends, "--rounds", "1", "--teacher-steps", "8", "--steps", "3") == 0
    assert (
        read_checkpoint_metadata(ends / "checkpoints" / "last.safetensors")["extra"]["progressive"]["steps"]
        == 4
    )
    assert main(["distill", "--resume", str(ends), "--rounds", "2", "--threads", "1"]) == 0
    _same(ckpts / "last.safetensors", ends / "checkpoints" / "last.safetensors")


def test_the_student_samples_with_ddim_on_its_distilled_grid(digits_ckpt, tmp_path, capsys) -> None:
    run = tmp_path / "student"
    assert _distill(digits_ckpt, run, "--rounds", "2", "--teacher-steps", "12", "--steps", "2") == 0
    assert "into a 3-step DDIM student" in capsys.readouterr().out
    loaded = load_model(run)
    assert loaded.step == 4 and loaded.info.image_shape == (1, 8, 8)
    distilled = loaded.distilled_grid
    assert distilled is not None and distilled.steps == 3 and distilled.method == "ddim"
    # Exactly every 4th time of the first teacher's 12-step log-SNR grid.
    assert torch.equal(distilled.grid, time_grid(loaded.sde, 12, "logsnr")[::4])
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(run), "-n", "4", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "with ddim, 3 steps (3 network evaluations per sample)" in printed
    assert len(list(out.glob("samples_ddim_3_*.npz"))) == 1
    # Other samplers, step counts or grids are refused by name.
    for extra in (["--steps", "4"], ["--method", "heun"], ["--grid", "uniform"]):
        argv = ["sample", "--checkpoint", str(run), "-n", "2", "--threads", "1", "--out", str(tmp_path / "x")]
        assert main([*argv, *extra]) != 0
        assert "progressive-distillation student" in capsys.readouterr().err
    # So does `scoresde eval` (same defaults, same check).
    argv = ["eval", "--checkpoint", str(run), "-n", "2", "--threads", "1", "--out", str(tmp_path / "e")]
    assert main([*argv, "--steps", "4"]) != 0
    assert "progressive-distillation student" in capsys.readouterr().err


def test_bad_inputs_give_named_errors(digits_ckpt, tmp_path, capsys) -> None:
    assert _distill(digits_ckpt, tmp_path / "a", "--rounds", "0") != 0
    assert "rounds" in capsys.readouterr().err
    assert _distill(digits_ckpt, tmp_path / "b", "--rounds", "2", "--teacher-steps", "6") != 0
    assert "not divisible by 2**rounds = 4" in capsys.readouterr().err
    assert _distill(digits_ckpt, tmp_path / "c", "--weighting", "inverse_step") != 0
    assert "unknown progressive weighting" in capsys.readouterr().err
    # A distilled student is no teacher: a consistency model has no probability-flow ODE map.
    cm = tmp_path / "cm"
    argv = ["distill", "--checkpoint", digits_ckpt, "--out", str(cm), "--steps", "1", "--batch-size", "4"]
    assert main([*argv, "--num-scales", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert _distill(str(cm), tmp_path / "d") != 0
    assert "no probability-flow ODE map" in capsys.readouterr().err
    # Steps per round place the rounds' boundaries: a resume may not change them.
    assert _distill(digits_ckpt, tmp_path / "e", "--rounds", "1", "--steps", "2") == 0
    capsys.readouterr()
    assert (
        main(["distill", "--resume", str(tmp_path / "e"), "--rounds", "2", "--steps", "3", "--threads", "1"])
        != 0
    )
    assert "steps" in capsys.readouterr().err


def test_a_tiny_budget_runs_every_round_and_ends_with_the_last_rounds_student(
    digits_ckpt, tmp_path, capsys
) -> None:
    # 6 ms for 2 rounds of at most 10**5 steps: time ends each round, after at least one step.
    run = tmp_path / "budget"
    assert _distill(digits_ckpt, run, "--rounds", "2", "--steps", "100000", "--minutes", "1e-4") == 0
    assert "or 0.0001 minutes in all, split over the rounds" in capsys.readouterr().out
    ckpts = sorted((run / "checkpoints").glob("step_*"))
    entries = [read_checkpoint_metadata(p) for p in ckpts]
    ends = [
        (m["step"], m["extra"]["progressive"]) for m in entries if m["extra"]["progressive"]["round_done"]
    ]
    assert [e["round"] for _, e in ends] == [1, 2] and [e["steps"] for _, e in ends] == [4, 2]
    (end1, first), (end2, second) = ends
    assert 1 <= end1 == second["round_start"] < end2 < 200000 and first["round_start"] == 0
    loaded = load_model(run)
    assert loaded.step == end2 and loaded.distilled_grid is not None and loaded.distilled_grid.steps == 2
    assert torch.equal(loaded.distilled_grid.grid, time_grid(loaded.sde, 8, "logsnr")[::4])
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(run), "-n", "4", "--threads", "1", "--out", str(out)]) == 0
    assert "with ddim, 2 steps (2 network evaluations per sample)" in capsys.readouterr().out
    assert len(list(out.glob("samples_ddim_2_*.npz"))) == 1
    # The run is over: a resume needs more rounds (then round 3 gets what is left of a new budget).
    assert main(["distill", "--resume", str(run), "--threads", "1"]) != 0
    assert "resume with more --rounds" in capsys.readouterr().err
    argv = ["distill", "--resume", str(run), "--rounds", "3", "--minutes", "1e-4", "--threads", "1"]
    assert main(argv) == 0
    last = read_checkpoint_metadata(run / "checkpoints" / "last.safetensors")
    assert last["extra"]["progressive"]["round"] == 3 and last["step"] == end2 + 1  # a used-up share
    assert last["extra"]["progressive"]["steps"] == 1


def test_bad_minutes_give_named_errors(digits_ckpt, tmp_path, capsys) -> None:
    # The command line refuses nan / inf as it parses them, the settings zero and negative budgets.
    for minutes, message in (("0", "positive"), ("-1", "positive"), ("nan", "finite"), ("inf", "finite")):
        assert _distill(digits_ckpt, tmp_path / "m", "--minutes", minutes) != 0
        err = capsys.readouterr().err
        assert "minutes" in err and message in err and "Traceback" not in err
