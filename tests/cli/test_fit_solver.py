"""``scoresde fit-solver`` and ``scoresde sample --solver``: bespoke solvers (Shaul et al. 2024)
from the command line, end to end on tiny checkpoints (a 2-step class-conditional UNet on the
8x8 digits, the 10-step MLP of ``conftest.py``) with fits of 2 iterations on 4 draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.guidance import ClassifierFreeGuidance
from scoresde.io.checkpoint import load_checkpoint
from scoresde.io.digest import weights_digest
from scoresde.models.clipping import ClipDenoised
from scoresde.sampling.bespoke import BespokeSolver
from scoresde.sampling.bespoke_fit import bespoke_from_base
from scoresde.sampling.grids import time_grid
from scoresde.train.trainer import TrainConfig, Trainer

# A fit of 2 Adam steps on 4 prior draws, with a loose reference solve: seconds, not minutes.
FIT = ["--steps", "3", "--pilot", "4", "--iterations", "2", "--reference-tol", "1e-3", "--threads", "1"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cond_ckpt(tmp_path_factory) -> str:
    """A class-conditional UNet on the 8x8 digits with label dropout (classifier-free guidance),
    trained for 2 steps (`scoresde train`'s run)."""
    root = tmp_path_factory.mktemp("cond")
    config = TrainConfig(
        base_channels=8,
        channel_mults=(1,),
        num_res_blocks=1,
        attn_resolutions=(),
        steps=2,
        batch_size=8,
        warmup=1,
        num_samples=4,
        sample_steps=2,
        eval_every=1000,
        save_every=1000,
        progress=False,
        device="cpu",
        conditional=True,
        label_dropout=0.2,
        out=str(root),
        name="cond",
    )
    return str(Trainer(config).fit().checkpoint)


@pytest.fixture(scope="module")
def fitted(cond_ckpt, tmp_path_factory) -> Path:
    """The output folder of one `scoresde fit-solver` run on the conditional checkpoint."""
    out = tmp_path_factory.mktemp("fit") / "solver"
    assert main(["fit-solver", "--checkpoint", cond_ckpt, *FIT, "--out", str(out)]) == 0
    return out


def test_fit_solver_writes_a_loadable_solver_and_a_report(fitted, cond_ckpt) -> None:
    solver = BespokeSolver.from_json(json.loads((fitted / "solver.json").read_text()))
    assert solver.steps == 3 and solver.shape == (1, 8, 8) and solver.iterations == 2 and solver.pilot == 4
    assert solver.base == "unipc" and solver.grid == "logsnr"
    assert solver.pilot_error <= solver.pilot_error_start  # the best iterate is kept
    report = json.loads((fitted / "fit.json").read_text())
    assert (
        report["pilot_error"] == solver.pilot_error
        and report["pilot_error_start"] == solver.pilot_error_start
    )
    assert report["pilot_nfe"] == solver.pilot_nfe > 0 and report["seconds"] >= 0
    assert report["labels"] == "uniform" and report["seed"] == 0 and report["steps"] == 3
    assert len(report["history"]) == 3 and report["sample_with"].endswith(str(fitted / "solver.json"))
    assert (fitted / "config.toml").is_file()


def test_fit_solver_is_deterministic_and_prints_one_summary(cond_ckpt, fitted, tmp_path, capsys) -> None:
    code, out, err = _run(
        capsys, "fit-solver", "--checkpoint", cond_ckpt, *FIT, "--out", str(tmp_path / "again")
    )
    assert code == 0, err
    first = out.splitlines()[0]
    assert (
        first.startswith("fitted a 3-step bespoke solver for ") and "from unipc on the logsnr grid" in first
    )
    assert "RMS endpoint error" in first and "on 4 draws, 2 iterations" in first
    # The labels and the prior draws come from --seed: the same code run twice gives the same solver
    # (all but the seconds it took).
    again, first_fit = (json.loads((d / "solver.json").read_text()) for d in (tmp_path / "again", fitted))
    assert again.pop("seconds") >= 0 and first_fit.pop("seconds") >= 0
    assert again == first_fit
    # An earlier run's results are refused without --overwrite, before any work.
    code, _, err = _run(
        capsys, "fit-solver", "--checkpoint", cond_ckpt, *FIT, "--out", str(tmp_path / "again")
    )
    assert code == 2 and "--overwrite" in err and "solver.json" in err


def test_sample_with_solver_equals_the_library(cond_ckpt, fitted, tmp_path, capsys) -> None:
    # A folder holding solver.json is taken too; --method bespoke and the solver's steps are implied.
    code, out, err = _run(
        capsys,
        "sample",
        "--checkpoint",
        cond_ckpt,
        "--solver",
        str(fitted),
        "-n",
        "4",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert "warning" not in err  # the model, guidance and clipping it was fitted to
    assert "with bespoke, 3 steps (4 network evaluations per sample)" in out
    assert f"bespoke solver {fitted}: 3 steps, started at unipc" in out
    got = np.load(tmp_path / "samples_bespoke_3_seed0.npz")
    solver = BespokeSolver.from_json(json.loads((fitted / "solver.json").read_text()))
    # The CLI's samples are the library's: the solver through ss.sample, the predicted x0 clipped
    # (--clip-denoised auto: an image model in [-1, 1]), labels cycling over the classes.
    model = load_checkpoint(cond_ckpt).model
    ref = ss.sample(
        ClipDenoised(model),
        shape=(4, 1, 8, 8),
        method="bespoke",
        solver=solver,
        seed=0,
        y=torch.arange(4) % 10,
    )
    np.testing.assert_allclose(got["x"], ref.x.numpy(), rtol=1e-6, atol=1e-6)
    assert (got["y"] == np.arange(4)).all()
    assert 'method = "bespoke"' in (tmp_path / "config.toml").read_text()


def _solver_for_another_sde(path: Path) -> None:
    sde = ss.VESDE()
    solver = bespoke_from_base(sde, "ddim", time_grid(sde, 3, "logsnr"), grid="logsnr")
    path.write_text(json.dumps(solver.to_json()))


def _solver_with(path: Path, fitted: Path, **changes) -> None:
    data = json.loads((fitted / "solver.json").read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("args", "prepare", "words"),
    [
        (["--steps", "5"], None, ["--steps 5", "takes 3 steps", "--steps 3"]),
        (["--method", "heun"], None, ["--solver", "--method is 'heun'"]),
        (["--grid", "optimized"], None, ["--grid optimized", "own fitted times"]),
        (["--solver", "{tmp}/nope.json"], None, ["--solver", "nope.json", "fit-solver"]),
        (["--solver", "{tmp}"], None, ["--solver", "holds no solver.json"]),
        (["--solver", "{tmp}/bad.json"], "corrupt", ["--solver", "bad.json", "is not JSON"]),
        (["--solver", "{tmp}/bad.json"], "not_solver", ["--solver", "not a bespoke solver", "'times'"]),
        (
            ["--solver", "{tmp}/bad.json"],
            "short_a",
            ["--solver", "not a valid bespoke solver", "3 coefficients a"],
        ),
        (["--solver", "{tmp}/bad.json"], "shape", ["--solver", "shape (64,)", "(1, 8, 8)", "another model"]),
        (["--solver", "{tmp}/bad.json"], "ve", ["--solver", "time interval", "VPSDE", "another model"]),
    ],
    ids=["steps", "method", "grid", "missing", "folder", "corrupt", "not-solver", "short-a", "shape", "sde"],
)
def test_sample_solver_errors_are_named(cond_ckpt, fitted, tmp_path, capsys, args, prepare, words) -> None:
    bad = tmp_path / "bad.json"
    if prepare == "corrupt":
        bad.write_text('{"times": [1.0, 0.5')
    elif prepare == "not_solver":
        bad.write_text(json.dumps({"steps": 3}))
    elif prepare == "short_a":
        _solver_with(bad, fitted, a=[1.0, 0.5])
    elif prepare == "shape":
        _solver_with(bad, fitted, shape=[64])
    elif prepare == "ve":
        _solver_for_another_sde(bad)
    argv = ["sample", "--checkpoint", cond_ckpt, "--solver", str(fitted / "solver.json"), "-n", "2"]
    argv += [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")]
    code, _, err = _run(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()  # refused before any output


def test_method_bespoke_needs_a_solver(digits_ckpt, tmp_path, capsys) -> None:
    code, _, err = _run(
        capsys, "sample", "--checkpoint", digits_ckpt, "--method", "bespoke", "--out", str(tmp_path)
    )
    assert code == 2 and "--method bespoke needs --solver PATH" in err
    # Commands without --solver say where the sampler is offered.
    code, _, err = _run(
        capsys, "inpaint", "--checkpoint", digits_ckpt, "--method", "bespoke", "--out", str(tmp_path)
    )
    assert code == 2 and "scoresde sample" in err and "--solver" in err and "fit-solver" in err


def test_eval_with_solver(cond_ckpt, fitted, tmp_path, capsys) -> None:
    argv = [
        "eval",
        "--checkpoint",
        cond_ckpt,
        "--solver",
        str(fitted),
        "--num",
        "8",
        "--classifier-epochs",
        "1",
    ]
    code, _, err = _run(capsys, *argv, "--steps", "4", "--out", str(tmp_path / "bad"))
    assert code == 2 and "takes 3 steps" in err
    code, _, err = _run(capsys, *argv, "--threads", "1", "--out", str(tmp_path / "ok"))
    assert code == 0, err
    sampler = json.loads((tmp_path / "ok" / "eval.json").read_text())["sampler"]
    assert sampler == {"method": "bespoke", "steps": 3, "grid": "solver", "nfe": 4, "solver": str(fitted)}


def test_fit_solver_on_an_unconditional_mlp_and_its_errors(digits_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "mlp"
    code, _, err = _run(
        capsys, "fit-solver", "--checkpoint", digits_ckpt, *FIT, "--base", "ddim", "--out", str(out)
    )
    assert code == 0, err
    solver = BespokeSolver.from_json(json.loads((out / "solver.json").read_text()))
    assert solver.shape == (64,) and solver.base == "ddim"
    assert json.loads((out / "fit.json").read_text())["labels"] is None
    code, _, err = _run(
        capsys,
        "sample",
        "--checkpoint",
        digits_ckpt,
        "--solver",
        str(out),
        "-n",
        "3",
        "--out",
        str(tmp_path / "s"),
    )
    assert code == 0, err
    x = np.load(tmp_path / "s" / "samples_bespoke_3_seed0.npz")["x"]
    # The flattened digits are images in [-1, 1]: --clip-denoised auto clips, in the fit as here.
    model = ClipDenoised(load_checkpoint(digits_ckpt).model)
    ref = ss.sample(model, shape=(3, 64), method="bespoke", solver=solver, seed=0)
    np.testing.assert_allclose(x, ref.x.numpy(), rtol=1e-6, atol=1e-6)
    # A base that evaluates the network twice per step has no bespoke form; an unconditional
    # model takes no --class.
    bad = ["fit-solver", "--checkpoint", digits_ckpt, *FIT]
    code, _, err = _run(capsys, *bad, "--base", "heun", "--out", str(tmp_path / "b"))
    assert code == 2 and "heun" in err and "one model evaluation per step" in err
    code, _, err = _run(capsys, *bad, "--class", "1", "--out", str(tmp_path / "c"))
    assert code == 2 and "--class" in err and "unconditional" in err
    code, _, err = _run(capsys, *bad, "--base", "magic", "--out", str(tmp_path / "d"))
    assert code == 2 and "magic" in err
    code, _, err = _run(capsys, *bad, "--guidance", "2", "--out", str(tmp_path / "e"))
    assert code == 2 and "--guidance" in err and "unconditional" in err
    code, _, err = _run(capsys, *bad, "--reference-tol", "0", "--out", str(tmp_path / "f"))
    assert code == 2 and "--reference-tol" in err and "> 0" in err
    code, _, err = _run(capsys, *bad, "--lr", "0", "--out", str(tmp_path / "g"))
    assert code == 2 and "lr" in err and "> 0" in err


def test_solver_records_what_it_was_fitted_to(cond_ckpt, fitted, tmp_path, capsys) -> None:
    data = json.loads((fitted / "solver.json").read_text())
    fitted_for = data["fitted_for"]
    # The digest of the weights `sample` loads (EMA), whatever the folder is called now.
    assert fitted_for["weights_sha256"] == weights_digest(load_checkpoint(cond_ckpt).model)
    assert fitted_for["guidance"] is None and fitted_for["class"] is None
    assert fitted_for["clip_denoised"] == "auto" and fitted_for["step"] == 2
    # The same solver on other weights, with guidance and for one class: it runs, with a warning
    # naming each difference, and the samples are the solver's all the same.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "fitted_for": {**fitted_for, "weights_sha256": "0" * 64}}))
    argv = ["sample", "--checkpoint", cond_ckpt, "--solver", str(other), "-n", "2", "--guidance", "2"]
    code, _, err = _run(capsys, *argv, "--class", "3", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert f"this run loads {cond_ckpt} (step 2), whose weights differ" in err
    assert "a run with --guidance (none), this one has 2" in err
    assert "a run with --class (none), this one has 3" in err
    assert (tmp_path / "s" / "samples_bespoke_3_seed0_class3_cfg2.npz").exists()
    # A solver.json without the record (written by Python) runs without a word.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({k: v for k, v in data.items() if k != "fitted_for"}))
    argv = ["sample", "--checkpoint", cond_ckpt, "--solver", str(bare), "-n", "2", "--guidance", "2"]
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "b"))
    assert code == 0 and "warning" not in err, err


def test_fit_solver_and_sample_with_guidance(cond_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "cfg"
    argv = [
        "fit-solver",
        "--checkpoint",
        cond_ckpt,
        *FIT,
        "--guidance",
        "2",
        "--class",
        "3",
        "--out",
        str(out),
    ]
    code, _, err = _run(capsys, *argv)
    assert code == 0, err
    report = json.loads((out / "fit.json").read_text())
    assert report["guidance"] == 2.0 and report["labels"] == 3 and "--guidance 2" in report["sample_with"]
    argv = [
        "sample",
        "--checkpoint",
        cond_ckpt,
        "--solver",
        str(out),
        "--guidance",
        "2",
        "--class",
        "3",
        "-n",
        "2",
    ]
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "s"))
    assert code == 0, err
    got = np.load(tmp_path / "s" / "samples_bespoke_3_seed0_class3_cfg2.npz")["x"]
    solver = BespokeSolver.from_json(json.loads((out / "solver.json").read_text()))
    model = ClipDenoised(ClassifierFreeGuidance(load_checkpoint(cond_ckpt).model, 2.0))
    ref = ss.sample(model, shape=(2, 1, 8, 8), method="bespoke", solver=solver, seed=0, y=torch.full((2,), 3))
    np.testing.assert_allclose(got, ref.x.numpy(), rtol=1e-6, atol=1e-6)


def test_fit_solver_holdout_batch_and_loss(cond_ckpt, fitted, tmp_path, capsys) -> None:
    """--holdout keeps the iterate of least validation error (never worse than the start there);
    the training draws are those of a run without it (same start error); --batch and --loss reach
    fit_bespoke; --batch above --pilot is a named error."""
    out = tmp_path / "val"
    code, text, _ = _run(
        capsys,
        "fit-solver", "--checkpoint", cond_ckpt, *FIT, "--holdout", "3", "--batch", "2",
        "--loss", "draw_rms", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and "held-out draws" in text
    report = json.loads((out / "fit.json").read_text())
    assert report["holdout"] == 3 and report["batch"] == 2 and report["loss"] == "draw_rms"
    assert report["validation_error"] <= report["validation_error_start"]
    plain = json.loads((fitted / "fit.json").read_text())
    # The same prior draws and labels: the same start and the same error of the start.
    assert report["pilot_error_start"] == pytest.approx(plain["pilot_error_start"], rel=1e-6)
    code, _, err = _run(
        capsys, "fit-solver", "--checkpoint", cond_ckpt, *FIT, "--batch", "9", "--out", str(tmp_path / "b")
    )
    assert code == 2 and "batch" in err and "pilot" in err
    assert not (tmp_path / "b" / "solver.json").exists()


def test_sample_with_a_solver_carrying_the_analytic_first_step(cond_ckpt, fitted, tmp_path, capsys) -> None:
    """A solver with per-label first-step means (``BespokeSolver.first_step_mean``): the CLI runs it
    with one network evaluation fewer than its steps, and its samples are the library's."""
    from scoresde.sampling import analytic_first_step

    model = load_checkpoint(cond_ckpt).model
    solver = BespokeSolver.from_json(json.loads((fitted / "solver.json").read_text()))
    afs = analytic_first_step(
        model, (1, 8, 8), generator=torch.Generator().manual_seed(0), pilot=4, num_classes=10
    )
    solver.first_step_mean, solver.first_step_classes = afs.mean, 10
    path = tmp_path / "afs.json"
    path.write_text(json.dumps(solver.to_json()))
    code, out, err = _run(capsys, "sample", "--checkpoint", cond_ckpt, "--solver", str(path), "-n", "4",
                          "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    assert "with bespoke, 3 steps (3 network evaluations per sample)" in out  # 2 + the final denoising
    got = np.load(tmp_path / "out" / "samples_bespoke_3_seed0.npz")
    ref = ss.sample(
        ClipDenoised(model),
        shape=(4, 1, 8, 8),
        method="bespoke",
        solver=solver,
        seed=0,
        y=torch.arange(4) % 10,
    )
    np.testing.assert_allclose(got["x"], ref.x.numpy(), rtol=1e-6, atol=1e-6)
