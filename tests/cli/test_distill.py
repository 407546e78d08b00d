"""``scoresde distill``: a run folder, checkpoints, an exact resume, --overwrite, and a student that
``scoresde sample --method consistency`` draws from (tiny MLP teacher on flattened 8x8 digits)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from scoresde.cli.__main__ import main
from scoresde.distill import ConsistencyModel
from scoresde.io.loaded import load_model

TINY = ["--batch-size", "8", "--num-scales", "4", "--groups", "2", "--log-every", "1", "--threads", "1"]


def _distill(teacher: str, out: Path, *extra: str) -> int:
    return main(["distill", "--checkpoint", teacher, "--out", str(out), *TINY, *extra])


def test_resume_continues_bit_for_bit(digits_ckpt, tmp_path, capsys) -> None:
    # The same code run twice on one machine: 4 steps straight == 2 steps, then resumed to 4.
    assert _distill(digits_ckpt, tmp_path / "straight", "--steps", "4", "--save-every", "2") == 0
    assert _distill(digits_ckpt, tmp_path / "halves", "--steps", "2") == 0
    assert main(["distill", "--resume", str(tmp_path / "halves"), "--steps", "4", "--threads", "1"]) == 0
    assert "resumed" in capsys.readouterr().out
    a = load_file(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    b = load_file(tmp_path / "halves" / "checkpoints" / "last.safetensors")
    assert sorted(a) == sorted(b) and any(k.startswith("optim.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, EMA and optimiser state
    # Periodic checkpoints: every --save-every steps and at the end.
    names = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").glob("step_*"))
    assert names == ["step_0000002.safetensors", "step_0000004.safetensors"]
    assert (tmp_path / "straight" / "metrics.jsonl").read_text().count("\n") == 4


def test_the_student_samples_with_the_consistency_method(digits_ckpt, tmp_path, capsys) -> None:
    run = tmp_path / "student"
    assert _distill(digits_ckpt, run, "--steps", "2") == 0
    loaded = load_model(run)
    assert isinstance(loaded.model, ConsistencyModel) and loaded.step == 2
    assert loaded.info.test_fraction == 0.1 and loaded.info.image_shape == (1, 8, 8)
    for steps in ("1", "4"):
        out = tmp_path / f"samples{steps}"
        argv = ["sample", "--checkpoint", str(run), "--method", "consistency", "--steps", steps]
        assert main([*argv, "--no-denoise", "-n", "4", "--threads", "1", "--out", str(out)]) == 0
        assert f"({steps} network evaluations per sample)" in capsys.readouterr().out
        assert len(list(out.glob("samples_consistency_*.npz"))) == 1


def test_an_existing_run_is_refused_unless_overwrite(digits_ckpt, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert _distill(digits_ckpt, run, "--steps", "2", "--save-every", "1") == 0
    assert _distill(digits_ckpt, run, "--steps", "1") != 0
    assert "already holds a run" in capsys.readouterr().err
    assert len(list((run / "checkpoints").glob("step_*"))) == 2  # untouched
    assert _distill(digits_ckpt, run, "--steps", "1", "--overwrite") == 0
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_0000001.safetensors"]


def test_bad_inputs_give_named_errors(digits_ckpt, tmp_path, capsys) -> None:
    assert main(["distill", "--out", str(tmp_path / "a"), *TINY]) != 0
    assert "teacher" in capsys.readouterr().err
    assert _distill(digits_ckpt, tmp_path / "b", "--solver", "euler_maruyama") != 0
    assert "fixed-step probability-flow ODE solver" in capsys.readouterr().err
    assert _distill(digits_ckpt, tmp_path / "c", "--steps", "1") == 0
    capsys.readouterr()
    argv = ["distill", "--resume", str(tmp_path / "c"), "--steps", "2", "--num-scales", "5", "--threads", "1"]
    assert main(argv) != 0
    assert "num_scales" in capsys.readouterr().err
    assert main(["distill", "--resume", "--steps", "2", "--threads", "1"]) != 0
    assert "--name or --out" in capsys.readouterr().err


def test_a_checkpoint_from_before_the_method_option_resumes(digits_ckpt, tmp_path) -> None:
    # Consistency checkpoints written before `--method` existed record no "method": they resume.
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / "old"
    assert _distill(digits_ckpt, run, "--steps", "1") == 0
    last = run / "checkpoints" / "last.safetensors"
    with safe_open(str(last), "pt") as f:
        meta = json.loads(f.metadata()["scoresde"])
    meta["train"].pop("method")
    assert not {"rounds", "teacher_steps", "grid"} & set(meta["train"])  # never recorded here
    save_file(load_file(last), str(last), metadata={"scoresde": json.dumps(meta)})
    assert main(["distill", "--resume", str(run), "--steps", "2", "--threads", "1"]) == 0


def test_a_minutes_budget_stops_the_run_early_and_saves_its_last_step(digits_ckpt, tmp_path, capsys) -> None:
    run = tmp_path / "budget"
    assert _distill(digits_ckpt, run, "--steps", "1000000", "--minutes", "1e-4") == 0
    assert "1000000 steps, 4 scales, heun teacher steps or 0.0001 minutes" in capsys.readouterr().out
    loaded = load_model(run)
    assert 1 <= loaded.step < 1000000 and isinstance(loaded.model, ConsistencyModel)
    assert (run / "checkpoints" / f"step_{loaded.step:07d}.safetensors").is_file()
