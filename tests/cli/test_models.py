"""Model sources of the inference subcommands: ``--model diffusers:DIR`` and ``--model score_sde:CKPT``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli.__main__ import main

FIXTURE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "score_sde_pytorch" / "ddpmpp_vp"
)


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised UNet2DModel (1 x 8 x 8) with a DDIM scheduler, saved offline."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    folder = tmp_path_factory.mktemp("diffusers") / "tiny_unet"
    unet.save_pretrained(folder)
    diffusers.DDIMScheduler(num_train_timesteps=100).save_pretrained(folder)
    return folder


def test_sample_diffusers_folder_writes_samples(diffusers_dir, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sample", "--model", f"diffusers:{diffusers_dir}", "--num", "2", "--steps", "3"]
    assert main([*argv, "--method", "ddim", "--device", "cpu", "--out", str(out)]) == 0
    npz = list(out.glob("samples_*.npz"))
    assert len(npz) == 1 and len(list(out.glob("samples_*.png"))) == 1
    arrays = np.load(npz[0])
    assert arrays["x"].shape == (2, 1, 8, 8) and np.isfinite(arrays["x"]).all()
    assert arrays["images"].shape == (2, 8, 8, 1) and arrays["images"].dtype == np.uint8
    assert "sampled 2 from" in capsys.readouterr().out


def test_likelihood_diffusers_on_digits(diffusers_dir, tmp_path, capsys):
    out = tmp_path / "l"
    argv = ["likelihood", "--model", f"diffusers:{diffusers_dir}", "--data", "digits", "--num", "2"]
    cheap = ["--divergence", "hutchinson", "--rtol", "1e-2", "--atol", "1e-2", "--device", "cpu"]
    assert main([*argv, *cheap, "--out", str(out)]) == 0
    summary = json.loads((out / "likelihood.json").read_text())
    assert summary["num"] == 2 and summary["dims"] == 64 and math.isfinite(summary["bpd_mean"])
    assert "bits/dim" in capsys.readouterr().out


def test_likelihood_score_sde_checkpoint_prints_bits_per_dim(tmp_path, capsys):
    # 8-bit RGB 16 x 16 images, the fixture model's data; the held-out tenth is scored.
    images = np.random.default_rng(0).integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)
    data = tmp_path / "images.npz"
    np.savez(data, x=images)
    out = tmp_path / "l"
    argv = [
        "likelihood",
        "--model",
        f"score_sde:{FIXTURE / 'checkpoint.pth'}",
        "--model-config",
        str(FIXTURE / "config.json"),
        "--weights",
        "raw",
        "--data",
        str(data),
        "--num",
        "2",
    ]
    cheap = ["--divergence", "hutchinson", "--rtol", "1e-2", "--atol", "1e-2", "--device", "cpu"]
    assert main([*argv, *cheap, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bits/dim (256 levels" in printed
    summary = json.loads((out / "likelihood.json").read_text())
    assert summary["num"] == 2 and summary["dims"] == 3 * 16 * 16
    assert math.isfinite(summary["bpd_mean"]) and summary["bpd_mean"] > 0


@pytest.mark.parametrize(
    "command", ["sample", "likelihood", "encode", "decode", "interpolate", "eval", "inpaint", "colorize"]
)
def test_every_inference_command_takes_model_and_needs_one_source(command, tmp_path, capsys):
    assert main([command, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "no model given: pass --checkpoint" in capsys.readouterr().err
    argv = [command, "--checkpoint", "x.safetensors", "--model", "diffusers:d", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "either --checkpoint or --model, not both" in capsys.readouterr().err
    assert main([command, "--model", "nope:d", "--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model source 'nope'; known: diffusers:PATH, score_sde:PATH" in capsys.readouterr().err


def test_bad_model_inputs_are_named(tmp_path, capsys):
    base = ["sample", "--device", "cpu", "--out", str(tmp_path / "o")]
    assert main([*base, "--model", f"score_sde:{tmp_path / 'missing.pth'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"")
    assert main([*base, "--model", f"score_sde:{ckpt}"]) == 2
    assert "needs --model-config" in capsys.readouterr().err
    assert main([*base, "--model", f"diffusers:{tmp_path}"]) == 2
    assert "is not a diffusers model folder" in capsys.readouterr().err


def test_loaded_diffusers_info_and_data_range_maps(diffusers_dir):
    import dataclasses

    from scoresde.data.model_range import from_model_range, to_images, to_model_range
    from scoresde.io.sources import load_source

    _, info = load_source(f"diffusers:{diffusers_dir}")
    assert (info.source, info.item_shape, info.image_shape) == ("diffusers", (1, 8, 8), (1, 8, 8))
    assert info.data_range == (-1.0, 1.0) and info.num_classes is None and info.prediction == "eps"
    x = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    assert torch.equal(to_model_range(x, info), x)
    unit = dataclasses.replace(info, data_range=(0.0, 1.0))  # a score_sde model with centered = false
    inside = to_model_range(x, unit)
    assert float(inside.min()) == 0.0 and float(inside.max()) == 1.0
    torch.testing.assert_close(from_model_range(inside, unit), x)
    torch.testing.assert_close(to_images(inside, unit), x)


def test_sample_ncsnv2_checkpoint_with_annealed_langevin(tmp_path, capsys):
    """``--model score_sde:CKPT --model-config CFG`` with an NCSNv2 checkpoint (tests/interop/data)."""
    from scoresde.nets.score_sde.paper_configs import paper_config

    data = Path(__file__).resolve().parents[1] / "interop" / "data"
    cfg = paper_config("ve/ncsnv2/cifar10")
    cfg["data"]["image_size"], cfg["model"]["nf"] = 16, 4  # the fixture's overrides
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    out = tmp_path / "s"
    ckpt = data / "ncsnv2_64_checkpoint.pth"
    argv = ["sample", "--model", f"score_sde:{ckpt}", "--model-config", str(config)]
    run = ["--method", "ald", "--num", "2", "--steps", "3", "--device", "cpu", "--out", str(out)]
    assert main([*argv, *run]) == 0
    arrays = np.load(next(out.glob("samples_*.npz")))
    assert arrays["x"].shape == (2, 3, 16, 16) and np.isfinite(arrays["x"]).all()
    assert "sampled 2 from" in capsys.readouterr().out
    # The paper config as written describes the full-size network: named mismatch, no crash.
    bad = ["--model-config", "ve/ncsnv2/cifar10", "--out", str(tmp_path / "b"), "--device", "cpu"]
    assert main([*argv[:3], *bad, "--num", "1", "--steps", "1"]) != 0
    assert "tensors of the wrong shape" in capsys.readouterr().err
