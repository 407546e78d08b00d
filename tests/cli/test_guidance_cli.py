"""``scoresde sample`` guidance, ``train-classifier --data digits``, ``inpaint`` and ``colorize``,
end to end on tiny checkpoints trained for two steps (fast; one torch thread)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.data.images import load_digits
from scoresde.guidance import ClassifierFreeGuidance
from scoresde.io.checkpoint import load_checkpoint
from scoresde.models.clipping import ClipDenoised
from scoresde.train.trainer import TrainConfig, Trainer

TINY = {
    "base_channels": 8,
    "channel_mults": (1,),
    "num_res_blocks": 1,
    "attn_resolutions": (),
    "steps": 2,
    "batch_size": 8,
    "warmup": 1,
    "num_samples": 4,
    "sample_steps": 2,
    "eval_every": 1000,
    "save_every": 1000,
    "progress": False,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Checkpoints: conditional with label dropout, conditional without, unconditional, 3-channel."""
    root = tmp_path_factory.mktemp("ckpts")
    runs = {
        "cfg": {"conditional": True, "label_dropout": 0.2},
        "cond": {"conditional": True},
        "uncond": {},
        "color": {"data": "digits-color"},
    }
    out = {}
    for name, extra in runs.items():
        result = Trainer(TrainConfig(**TINY, **extra, out=str(root), name=name)).fit()
        out[name] = str(result.checkpoint)
    return out


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_colored_digits_are_tinted_digits() -> None:
    gray, color = load_digits(), load_digits(colored=True)
    assert color.train.shape == (gray.train.shape[0], 3, 8, 8) and color.levels is None
    assert torch.equal(color.train_labels, gray.train_labels)
    v = (color.train + 1) / 2  # v_n c_n, colours of HSV value 1: the brightest channel is v_n itself
    assert torch.allclose(v.amax(dim=1, keepdim=True), (gray.train + 1) / 2, atol=1e-6)
    # One colour per image: channel ratios are the same at every lit pixel.
    lit = (gray.train[:, 0] + 1) / 2 > 0.5
    ratio = v / v.amax(dim=1, keepdim=True).clamp_min(1e-6)
    spread = [(ratio[i][:, lit[i]].amax(1) - ratio[i][:, lit[i]].amin(1)).max() for i in range(50)]
    assert max(spread) < 1e-5


def test_sample_classifier_free_guidance(ckpts, tmp_path, capsys) -> None:
    base = ["sample", "--checkpoint", ckpts["cfg"], "--num", "4", "--method", "euler", "--steps", "3"]
    base += ["--class", "7"]
    code, out, err = _run(capsys, *base, "--out", str(tmp_path / "plain"))
    assert code == 0, err
    code, out, err = _run(capsys, *base, "--guidance", "0", "--out", str(tmp_path / "w0"))
    assert code == 0, err
    plain = np.load(tmp_path / "plain" / "samples_euler_3_seed0_class7.npz")
    w0 = np.load(tmp_path / "w0" / "samples_euler_3_seed0_class7_cfg0.npz")
    # w = 0 is the conditional model itself, at twice the network evaluations.
    np.testing.assert_allclose(w0["x"], plain["x"], atol=1e-5)
    assert (w0["y"] == 7).all() and "8 network evaluations" in out
    code, out, err = _run(capsys, *base, "--guidance", "3", "--out", str(tmp_path / "w3"))
    w3 = np.load(tmp_path / "w3" / "samples_euler_3_seed0_class7_cfg3.npz")
    assert code == 0 and np.isfinite(w3["x"]).all()
    # The CLI's guided samples are the library's: ClassifierFreeGuidance(w = 3) through ss.sample,
    # with the predicted x0 clipped (--clip-denoised auto: an image model in [-1, 1]).
    model = load_checkpoint(ckpts["cfg"]).model
    ref = ss.sample(
        ClipDenoised(ClassifierFreeGuidance(model, 3.0)),
        shape=(4, 1, 8, 8),
        method="euler",
        steps=3,
        seed=0,
        y=torch.full((4,), 7),
    )
    np.testing.assert_allclose(w3["x"], ref.x.numpy(), atol=1e-5)
    assert (tmp_path / "w3" / "config.toml").is_file()


def test_sample_guidance_errors(ckpts, tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path), "--steps", "2", "--num", "2"]
    code, _, err = _run(capsys, "sample", "--checkpoint", ckpts["cond"], "--guidance", "1", *out)
    assert code == 2 and "trained with label dropout" in err and "label_dropout = 0" in err
    code, _, err = _run(capsys, "sample", "--checkpoint", ckpts["uncond"], "--guidance", "1", *out)
    assert code == 2 and "unconditional" in err
    code, _, err = _run(capsys, "sample", "--checkpoint", ckpts["cfg"], "--class", "10", *out)
    assert code == 2 and "unknown class 10" in err and "[0, 9]" in err
    code, _, err = _run(capsys, "sample", "--checkpoint", ckpts["cfg"], "--set", "clas=1", *out)
    assert code == 2 and "did you mean 'class'" in err
    code, _, err = _run(capsys, "sample", *out)
    assert code == 2 and "--checkpoint" in err
    code, _, err = _run(
        capsys, "sample", "--checkpoint", ckpts["uncond"], "--classifier", str(tmp_path), *out
    )
    assert code == 2 and "classifier not found" in err


def test_train_classifier_digits_and_classifier_guidance(ckpts, tmp_path, capsys) -> None:
    clf = tmp_path / "clf"
    args = ["--data", "digits", "--steps", "3", "--hidden", "4", "--batch-size", "16", "--no-progress"]
    code, out, err = _run(
        capsys, "train-classifier", "--checkpoint", ckpts["uncond"], *args, "--out", str(clf)
    )
    assert code == 0, err
    metrics = json.loads((clf / "metrics.json").read_text())
    assert metrics["data"] == "digits" and metrics["classes"] == 10 and "VPSDE" in metrics["sde"]
    assert len(metrics["accuracy"]) == 5 and "held-out accuracy" in out
    # --overwrite: every call below writes (or fails) in the one folder tmp_path.
    sample = ["sample", "--checkpoint", ckpts["uncond"], "--num", "3", "--steps", "2", "--out", str(tmp_path)]
    sample.append("--overwrite")
    code, out, err = _run(
        capsys, *sample, "--classifier", str(clf), "--classifier-scale", "2", "--class", "4"
    )
    assert code == 0, err
    npz = np.load(tmp_path / "samples_euler_maruyama_2_seed0_class4_clf2.npz")
    assert npz["x"].shape == (3, 1, 8, 8) and (npz["y"] == 4).all() and np.isfinite(npz["x"]).all()
    code, _, err = _run(capsys, *sample, "--classifier", str(clf), "--class", "11")
    assert code == 2 and "unknown class 11" in err
    # A classifier trained under another SDE, or a model's SDE contradicted, is refused.
    ve = tmp_path / "ve"
    assert _run(capsys, "train-classifier", "--sde", "ve", *args, "--out", str(ve))[0] == 0
    code, _, err = _run(capsys, *sample, "--classifier", str(ve / "classifier.safetensors"))
    assert code == 2 and "trained under VESDE" in err
    code, _, err = _run(capsys, "train-classifier", "--checkpoint", ckpts["uncond"], "--sde", "ve", *args)
    assert code == 2 and "disagrees with the checkpoint's SDE" in err
    code, _, err = _run(
        capsys, "train-classifier", "--checkpoint", ckpts["color"], *args, "--out", str(ve), "--overwrite"
    )
    assert code == 2 and "(3, 8, 8)" in err and "(1, 8, 8)" in err
    code, _, err = _run(capsys, *sample, "--classifier", str(clf), "--guidance", "1")
    assert code == 2 and "not both" in err


def test_inpaint_command(ckpts, tmp_path, capsys) -> None:
    out = tmp_path / "inp"
    argv = ["inpaint", "--checkpoint", ckpts["cfg"], "--num", "3", "--samples", "2", "--steps", "3"]
    code, _, err = _run(capsys, *argv, "--mask", "left", "--out", str(out))
    assert code == 0, err
    npz = np.load(out / "inpaint.npz")
    assert npz["samples"].shape == (2, 3, 1, 8, 8) and npz["mask"].shape == (1, 8, 8)
    assert not npz["mask"][:, :, :4].any() and npz["mask"][:, :, 4:].all()
    # Projection keeps the known pixels exactly.
    known = np.broadcast_to(npz["mask"], npz["samples"].shape)
    np.testing.assert_array_equal(npz["samples"][known], np.broadcast_to(npz["original"], known.shape)[known])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["max_abs_error_known"] == 0 and metrics["hidden_fraction"] == 0.5
    with Image.open(out / "inpaint.png") as im:  # rows: original, masked, 2 samples; 3 columns
        assert im.size == (8 * (3 * 9 + 1), 8 * (4 * 9 + 1))
    mask_file = tmp_path / "m.npy"
    np.save(mask_file, np.eye(8, dtype=bool))
    code, out_text, err = _run(
        capsys, *argv, "--mask", str(mask_file), "--dps", "--out", str(tmp_path / "dps")
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "dps" / "metrics.json").read_text())
    assert metrics["mode"] == "dps" and metrics["nfe"] == 4 and "ancestral + zeta 0.2" in out_text
    assert math.isfinite(metrics["mse_hidden"]) and metrics["max_abs_error_known"] > 0  # DPS only nears y
    code, _, err = _run(capsys, *argv, "--mask", "diagonal", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown mask 'diagonal'" in err
    np.save(mask_file, np.ones((4, 4)))
    code, _, err = _run(capsys, *argv, "--mask", str(mask_file), "--out", str(tmp_path / "x"))
    assert code == 2 and "a mask must have shape (8, 8)" in err
    code, _, err = _run(capsys, *argv, "--data", "digits-color", "--out", str(tmp_path / "x"))
    assert code == 2 and "(1, 8, 8)" in err


def test_colorize_command(ckpts, tmp_path, capsys) -> None:
    out = tmp_path / "col"
    argv = ["colorize", "--num", "2", "--samples", "2", "--steps", "3", "--out", str(out)]
    code, _, err = _run(capsys, *argv, "--checkpoint", ckpts["color"])
    assert code == 0, err
    npz = np.load(out / "colorize.npz")
    assert npz["samples"].shape == (2, 2, 3, 8, 8) and npz["gray"].shape == (2, 1, 8, 8)
    np.testing.assert_allclose(npz["samples"].mean(axis=2, keepdims=True)[0], npz["gray"], atol=1e-5)
    assert json.loads((out / "metrics.json").read_text())["max_abs_gray_error"] < 1e-5
    with Image.open(out / "colorize.png") as im:
        assert im.mode == "RGB"
    code, _, err = _run(capsys, *argv, "--checkpoint", ckpts["uncond"], "--overwrite")
    assert code == 2 and "needs a model of 3-channel images" in err and "digits-color" in err


def test_inpaint_smc_and_clip_denoised(ckpts, tmp_path, capsys) -> None:
    argv = ["inpaint", "--checkpoint", ckpts["uncond"], "--num", "2", "--samples", "1", "--steps", "4"]
    code, text, err = _run(capsys, *argv, "--smc", "--particles", "3", "--out", str(tmp_path / "smc"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "smc" / "metrics.json").read_text())
    assert metrics["mode"] == "smc" and "3 particles" in text
    smc = metrics["smc"]
    assert smc["particles"] == 3 and 1 - 1e-6 <= smc["ess_min"] <= smc["ess_mean"] <= 3 + 1e-6
    assert math.isfinite(smc["log_evidence_mean"])
    # The last SMC step conditions exactly on the known pixels.
    assert metrics["max_abs_error_known"] < 1e-4
    code, _, err = _run(capsys, *argv, "--smc", "--dps", "--out", str(tmp_path / "both"))
    assert code == 2 and "not both" in err
    # --clip-denoised reaches the sampler: the samples change.
    samples = {}
    for mode in ("none", "clip"):
        out = tmp_path / f"clip_{mode}"
        code, _, err = _run(capsys, *argv, "--clip-denoised", mode, "--out", str(out))
        assert code == 0, err
        samples[mode] = np.load(out / "inpaint.npz")["samples"]
    assert np.abs(samples["none"] - samples["clip"]).max() > 1e-4


def test_colorize_smc_and_clip_denoised(ckpts, tmp_path, capsys) -> None:
    argv = ["colorize", "--checkpoint", ckpts["color"], "--num", "2", "--samples", "1", "--steps", "4"]
    code, text, err = _run(capsys, *argv, "--smc", "--particles", "2", "--out", str(tmp_path / "smc"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "smc" / "metrics.json").read_text())
    assert metrics["smc"]["particles"] == 2 and 1 - 1e-6 <= metrics["smc"]["ess_min"] <= 2 + 1e-6
    assert metrics["max_abs_gray_error"] < 1e-4 and "SMC, 2 particles" in text
    assert metrics["grid"] == "logsnr"  # the --smc default
    samples = {}
    for mode in ("none", "dynamic"):
        out = tmp_path / f"clip_{mode}"
        code, _, err = _run(capsys, *argv, "--clip-denoised", mode, "--out", str(out))
        assert code == 0, err
        samples[mode] = np.load(out / "colorize.npz")["samples"]
    assert np.abs(samples["none"] - samples["dynamic"]).max() > 1e-4


def test_inpaint_smc_mcgdiff_and_logsnr_grid(ckpts, tmp_path, capsys) -> None:
    """``--smc-proposal mcgdiff`` reaches the sampler (other samples, known pixels still exact);
    with ``--smc`` the grid defaults to logsnr, an explicit ``--grid`` still wins."""
    argv = ["inpaint", "--checkpoint", ckpts["uncond"], "--num", "2", "--samples", "1", "--steps", "4"]
    samples, metrics, texts = {}, {}, {}
    for name, extra in (
        ("tds", []),
        ("mcgdiff", ["--smc-proposal", "mcgdiff"]),
        ("uniform", ["--grid", "uniform"]),
    ):
        out = tmp_path / name
        code, texts[name], err = _run(capsys, *argv, "--smc", "--particles", "3", *extra, "--out", str(out))
        assert code == 0, err
        samples[name] = np.load(out / "inpaint.npz")["samples"]
        metrics[name] = json.loads((out / "metrics.json").read_text())
    assert "mcgdiff, 3 particles" in texts["mcgdiff"] and "tds, 3 particles" in texts["tds"]
    assert metrics["tds"]["grid"] == "logsnr" and metrics["mcgdiff"]["grid"] == "logsnr"
    assert metrics["uniform"]["grid"] == "uniform"
    assert metrics["mcgdiff"]["max_abs_error_known"] < 1e-4
    assert np.abs(samples["tds"] - samples["mcgdiff"]).max() > 1e-4
    assert np.abs(samples["tds"] - samples["uniform"]).max() > 1e-4
    # Without --smc the projection sampler keeps its uniform default.
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "projection"))
    assert code == 0, err
    assert json.loads((tmp_path / "projection" / "metrics.json").read_text())["grid"] == "uniform"


def test_options_that_do_not_apply_are_refused(ckpts, tmp_path, capsys, monkeypatch) -> None:
    """Issue 24: an option that the chosen mode would ignore, or a value out of range, stops the
    run up front with a message naming the option."""
    inpaint = ["inpaint", "--checkpoint", ckpts["uncond"], "--num", "1", "--samples", "1", "--steps", "2"]
    out = ["--out", str(tmp_path / "o")]
    code, _, err = _run(capsys, *inpaint, "--smc-proposal", "mcgdiff", "--particles", "8", *out)
    assert code == 2 and "--particles applies to --smc" in err and "samples by projection" in err
    code, _, err = _run(capsys, *inpaint, "--smc-proposal", "mcgdiff", *out)
    assert code == 2 and "--smc-proposal applies to --smc" in err
    code, _, err = _run(capsys, *inpaint, "--smc", "--dps-zeta", "0.5", *out)
    assert code == 2 and "--dps-zeta applies to --dps" in err
    colorize = ["colorize", "--checkpoint", ckpts["color"], "--num", "1", "--samples", "1", "--steps", "2"]
    code, _, err = _run(capsys, *colorize, "--particles", "4", *out)
    assert code == 2 and "--particles applies to --smc" in err

    sample = ["sample", "--checkpoint", ckpts["uncond"], "--num", "2", "--steps", "3", *out]
    import scoresde.sampling.grid_opt as grid_opt

    def no_pilot(*args, **kwargs):
        raise AssertionError("a pilot ran")

    monkeypatch.setattr(grid_opt, "optimize_grid", no_pilot)
    code, _, err = _run(capsys, *sample, "--grid", "optimized", "--method", "dopri5")
    assert code == 2 and "'dopri5' is adaptive" in err and "grid" in err
    monkeypatch.undo()
    cfg_sample = ["sample", "--checkpoint", ckpts["cfg"], "--num", "2", "--steps", "2", *out]
    code, _, err = _run(capsys, *cfg_sample, "--guidance", "1e30")
    assert code == 2 and "--guidance 1e+30 is out of range" in err and "|w| <= 1000" in err
    for w in ("inf", "nan"):  # refused by the settings layer already
        code, _, err = _run(capsys, *cfg_sample, "--guidance", w)
        assert code == 2 and "--guidance" in err and "finite" in err, (w, err)

    # A model whose data range is not [-1, 1] (a score_sde model with data.centered = false).
    import dataclasses

    import scoresde.cli._io as cli_io  # the sample command imports load_model from here when it runs

    real = cli_io.load_model

    def zero_one(ctx, **kwargs):
        loaded = real(ctx, **kwargs)
        return dataclasses.replace(loaded, info=dataclasses.replace(loaded.info, data_range=(0.0, 1.0)))

    monkeypatch.setattr(cli_io, "load_model", zero_one)
    code, _, err = _run(capsys, *sample, "--clip-denoised", "clip")
    assert code == 2 and "clip_denoised='clip'" in err and "data range is (0.0, 1.0)" in err
    code, _, err = _run(capsys, *sample, "--clip-denoised", "auto")  # auto: no clipping, runs
    assert code == 0, err


def test_old_sampler_keys_on_the_command_line(ckpts, tmp_path, capsys) -> None:
    argv = ["sample", "--checkpoint", ckpts["uncond"], "--num", "2", "--steps", "2", "--seed", "1"]
    xs = {}
    for key in ("dpm_solver++_2m", "dpm_solver_pp_2m"):
        code, _, err = _run(capsys, *argv, "--method", key, "--out", str(tmp_path / key))
        assert code == 0, err
        xs[key] = np.load(next((tmp_path / key).glob("*.npz")))["x"]
    np.testing.assert_array_equal(xs["dpm_solver++_2m"], xs["dpm_solver_pp_2m"])
