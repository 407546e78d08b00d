"""The checkpoint subcommands: likelihood, encode, decode, interpolate, eval (tiny models)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import save_checkpoint

TOL = ["--rtol", "1e-5", "--atol", "1e-5"]


@pytest.fixture(scope="module")
def moons_ckpt(tmp_path_factory) -> str:
    torch.manual_seed(0)  # the initial weights (torch's own initial seed is random per process)
    model = ss.ScoreModel(ss.MLP(2, hidden=32, depth=2), ss.VPSDE(), prediction="eps")
    fit = ss.fit(
        model,
        lambda n, g: ss.toy_data("two_moons", n, g).float(),
        steps=30,
        batch_size=128,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    path = tmp_path_factory.mktemp("ckpt") / "moons.safetensors"
    save_checkpoint(path, model, ema=fit.ema_model, step=30, data_info={"name": "two_moons", "shape": [2]})
    return str(path)


def _json(path) -> dict:
    return json.loads(path.read_text())


def test_likelihood_matches_the_api(moons_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", moons_ckpt, "--data", "two_moons", "--num", "6", "--out", str(out)]
    assert main([*argv, *TOL]) == 0
    assert "nats" in capsys.readouterr().out
    res = _json(out / "likelihood.json")
    logp = np.load(out / "likelihood.npz")["logp"]
    assert logp.shape == (6,) and res["num"] == 6 and "bpd_mean" not in res
    # The same points (toy draws from the seed) through the API give the same numbers.
    from scoresde.io.checkpoint import load_checkpoint

    model = load_checkpoint(moons_ckpt).model
    x = ss.toy_data("two_moons", 6, torch.Generator().manual_seed(0)).float()
    ref = (
        ss.log_likelihood(model, model.sde, x, integrator=ss.AdaptiveIntegrator(rtol=1e-5, atol=1e-5))
        .logp.double()
        .numpy()
    )
    np.testing.assert_allclose(logp, ref, rtol=1e-6, atol=1e-6)
    assert res["logp_mean_nats"] == pytest.approx(float(ref.mean()))
    assert res["logp_se_nats"] == pytest.approx(float(ref.std(ddof=1) / math.sqrt(6)))


def test_likelihood_and_encode_with_per_sample_steps(moons_ckpt, tmp_path) -> None:
    """--norm independent reaches the API's numbers; the latent commands take it too."""
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", moons_ckpt, "--data", "two_moons", "--num", "6", "--out", str(out)]
    assert main([*argv, *TOL, "--norm", "independent", "--batch-size", "4"]) == 0
    from scoresde.io.checkpoint import load_checkpoint

    model = load_checkpoint(moons_ckpt).model
    x = ss.toy_data("two_moons", 6, torch.Generator().manual_seed(0)).float()
    ref = (
        ss.log_likelihood(model, model.sde, x, integrator=ss.PerSample(rtol=1e-5, atol=1e-5))
        .logp.double()
        .numpy()
    )
    # Batches of 4 and 2 in the command, one batch of 6 here.  Per-sample steps make them agree
    # up to the network's float32 rounding, which can differ with the batch size (matrix products)
    # and tip a step-size decision, moving a result by up to about the tolerance.
    np.testing.assert_allclose(np.load(out / "likelihood.npz")["logp"], ref, rtol=0, atol=2e-4)
    enc = tmp_path / "enc"
    argv = ["encode", "--checkpoint", moons_ckpt, "--data", "two_moons", "--num", "4", "--out", str(enc)]
    assert main([*argv, *TOL, "--norm", "independent"]) == 0
    assert _json(enc / "encode.json")["max_relative_reconstruction_error"] < 1e-2


def test_likelihood_bits_per_dim_of_digits(digits_ckpt, tmp_path) -> None:
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", digits_ckpt, "--num", "4", "--out", str(out)]
    assert (
        main([*argv, "--rtol", "1e-3", "--atol", "1e-3", "--divergence", "hutchinson", "--probes", "2"]) == 0
    )
    res = _json(out / "likelihood.json")
    arrays = np.load(out / "likelihood.npz")
    assert res["levels"] == 17 and res["dims"] == 64
    # bits/dim of the discrete data: logp already includes the dequantization Jacobian.
    np.testing.assert_allclose(arrays["bpd"], -arrays["logp"] / (64 * math.log(2)), rtol=1e-6)
    assert np.isfinite(arrays["bpd"]).all() and (arrays["bpd"] > 0).all()


def test_encode_decode_round_trip(moons_ckpt, tmp_path) -> None:
    enc = tmp_path / "enc"
    argv = ["encode", "--checkpoint", moons_ckpt, "--data", "two_moons", "--num", "8", "--out", str(enc)]
    assert main([*argv, *TOL]) == 0
    lat = np.load(enc / "latents.npz")
    assert lat["z"].shape == (8, 2)
    assert _json(enc / "encode.json")["max_relative_reconstruction_error"] < 1e-2
    dec = tmp_path / "dec"
    assert (
        main(
            [
                "decode",
                "--checkpoint",
                moons_ckpt,
                "--latents",
                str(enc / "latents.npz"),
                "--out",
                str(dec),
                *TOL,
            ]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(dec / "samples.npz")["x"], lat["x"], atol=2e-2)
    assert (dec / "samples.png").stat().st_size > 0


def test_decode_temperature_scales_prior_draws(moons_ckpt, tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["decode", "--checkpoint", moons_ckpt, "--num", "5", "--rtol", "1e-3", "--atol", "1e-3"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--temperature", "0.5", "--out", str(b)]) == 0
    np.testing.assert_allclose(
        np.load(b / "samples.npz")["z"], 0.5 * np.load(a / "samples.npz")["z"], rtol=1e-6
    )


def test_interpolate_ends_at_the_data(moons_ckpt, tmp_path) -> None:
    out = tmp_path / "interp"
    argv = ["interpolate", "--checkpoint", moons_ckpt, "--data", "two_moons", "--first", "1", "--second", "3"]
    assert main([*argv, "--frames", "5", "--out", str(out), *TOL]) == 0
    res = np.load(out / "interpolation.npz")
    x = ss.toy_data("two_moons", 4, torch.Generator().manual_seed(0)).numpy()
    assert res["x"].shape == (5, 2) and res["alpha"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(res["x"][[0, -1]], x[[1, 3]], atol=2e-2)
    assert (out / "interpolation.png").stat().st_size > 0


def test_eval_vectors_reports_distances_and_floor(moons_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", moons_ckpt, "--data", "two_moons", "--num", "200", "--steps", "10"]
    assert main([*argv, "--out", str(out)]) == 0
    res = _json(out / "eval.json")
    assert set(res["samples_vs_heldout"]) == {"sliced_w2", "mmd2", "energy"}
    assert res["sampler"]["nfe"] == 11
    # A 30-step model is far from the data; fresh exact draws are close to it.
    assert res["floor"]["energy"] < res["samples_vs_heldout"]["energy"]
    assert "| energy |" in capsys.readouterr().out


def test_auto_clipping_leaves_vector_models_alone(moons_ckpt, tmp_path) -> None:
    """--clip-denoised auto (sample's default) clips image models only: 2-D moons are not images."""
    xs = {}
    for mode in ("auto", "none", "clip"):
        argv = ["sample", "--checkpoint", moons_ckpt, "--num", "64", "--steps", "5", "--clip-denoised", mode]
        assert main([*argv, "--out", str(tmp_path / mode)]) == 0
        xs[mode] = np.load(next((tmp_path / mode).glob("*.npz")))["x"]
    np.testing.assert_array_equal(xs["auto"], xs["none"])
    assert np.abs(xs["none"]).max() > 1.0 >= np.abs(xs["clip"]).max() - 1e-6  # clipping would change them


def test_errors_name_the_fix(moons_ckpt, tmp_path, capsys) -> None:
    assert main(["likelihood", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["encode", "--checkpoint", moons_ckpt, "--data", "digits", "--out", str(tmp_path / "o")]) == 2
    assert "pass the data the model was trained on" in capsys.readouterr().err
    assert main(["decode", "--checkpoint", moons_ckpt, "--latents", str(tmp_path / "z.npz")]) == 2
    assert "scoresde encode" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", moons_ckpt, "--method", "magic", "--out", str(tmp_path / "o")]) == 2
    assert "unknown sampler 'magic'" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", moons_ckpt, "--method", "dps", "--out", str(tmp_path / "o")]) == 2
    assert (
        "'dps' is not offered here: the sampler needs operator, y_obs; scoresde inpaint"
        in capsys.readouterr().err
    )
    assert main(["train", "--set", "stepz=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_digits_classifier_and_frechet(digits_ckpt, tmp_path) -> None:
    out = tmp_path / "eval"
    assert (
        main(["eval", "--checkpoint", digits_ckpt, "--num", "150", "--steps", "10", "--out", str(out)]) == 0
    )
    res = _json(out / "eval.json")
    assert res["classifier_heldout_accuracy"] > 0.9
    assert 0 <= res["frechet_floor"] < res["frechet"]


def test_likelihood_of_a_conditional_model_needs_labels_or_null_token(tmp_path, capsys) -> None:
    model = ss.ScoreModel(ss.MLP(2, hidden=16, depth=1, num_classes=3), ss.VPSDE(), prediction="eps")
    ckpt = save_checkpoint(
        tmp_path / "cond.safetensors", model, data_info={"name": "two_moons", "shape": [2]}
    )
    argv = ["likelihood", "--checkpoint", str(ckpt), "--data", "two_moons", "--num", "3", "--rtol", "1e-3"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "--unconditional" in capsys.readouterr().err
    assert main([*argv, "--unconditional", "--out", str(tmp_path / "b")]) == 0
    assert _json(tmp_path / "b" / "likelihood.json")["conditional_on"] == "null label"


def test_data_of_another_size_is_resized_to_the_models(digits_ckpt, tmp_path, capsys) -> None:
    from scoresde.data.images import load_digits, resize_images

    digits = load_digits(0.1, 0)
    x = torch.cat([digits.train, digits.test])
    big = ((resize_images(x, 16) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()  # (N, 16, 16)
    data = tmp_path / "digits16.npz"
    np.savez(data, x=big)
    argv = ["likelihood", "--checkpoint", digits_ckpt, "--data", str(data), "--num", "3"]
    argv += ["--rtol", "1e-3", "--atol", "1e-3", "--divergence", "hutchinson"]
    assert main([*argv, "--out", str(tmp_path / "lik")]) == 0, capsys.readouterr().err
    res = _json(tmp_path / "lik" / "likelihood.json")
    assert res["dims"] == 64 and res["num"] == 3  # resized back to the model's 8x8
    inp = ["inpaint", "--checkpoint", digits_ckpt, "--data", str(data), "--num", "2", "--samples", "1"]
    assert main([*inp, "--steps", "2", "--out", str(tmp_path / "inp")]) == 0, capsys.readouterr().err
    assert np.load(tmp_path / "inp" / "inpaint.npz")["original"].shape == (2, 1, 8, 8)
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, x=np.repeat(big[..., None], 3, axis=-1))  # 3 channels: no resize makes them fit
    assert main([*argv[:4], str(rgb), *argv[5:], "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "(192,)" in err and "(64,)" in err
