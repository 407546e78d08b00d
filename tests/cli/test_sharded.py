"""Per-sample seeds, torchrun sharding and PNG folders of the CLI (tiny digits model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli.__main__ import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
# One thread in every process (--threads 0 would take the free cores, which vary with the load):
# the bit-equality checks compare the same code at the same thread count.
FAST = ["--method", "euler", "--steps", "4", "--device", "cpu", "--threads", "1"]


def _samples(ckpt: str, out: Path, *extra: str) -> np.ndarray:
    assert main(["sample", "--checkpoint", ckpt, "--out", str(out), *FAST, *extra]) == 0
    (path,) = out.glob("samples_*.npz")
    return np.load(path)["x"]


def test_samples_depend_on_seed_and_index_only(digits_ckpt, tmp_path) -> None:
    b8 = _samples(digits_ckpt, tmp_path / "b8", "--num", "8", "--batch-size", "8")
    b4 = _samples(digits_ckpt, tmp_path / "b4", "--num", "8", "--batch-size", "4")
    b1 = _samples(digits_ckpt, tmp_path / "b1", "--num", "8", "--batch-size", "1")
    # the same noise per sample; the network's float32 sums may differ in the last bit by batch size
    np.testing.assert_allclose(b4, b8, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b1, b8, rtol=1e-5, atol=1e-5)
    # seeds that differ by the batch size used to reproduce each other's samples
    s4 = _samples(digits_ckpt, tmp_path / "s4", "--num", "8", "--batch-size", "4", "--seed", "4")
    flat0, flat4 = b4.reshape(8, -1), s4.reshape(8, -1)
    dist = np.abs(flat0[:, None] - flat4[None]).max(-1)
    assert dist.min() > 1e-3, "a sample of --seed 4 repeats one of --seed 0"


def test_png_format_writes_numbered_images(digits_ckpt, tmp_path) -> None:
    from PIL import Image

    _samples(digits_ckpt, tmp_path / "npz", "--num", "5")
    (npz,) = (tmp_path / "npz").glob("samples_*.npz")
    ref = np.load(npz)["images"]  # uint8 (N, H, W, C)
    out = tmp_path / "png"
    assert (
        main(
            ["sample", "--checkpoint", digits_ckpt, "--out", str(out), *FAST, "--num", "5", "--format", "png"]
        )
        == 0
    )
    (folder,) = [p for p in out.glob("samples_*") if p.is_dir()]
    files = sorted(folder.glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    img = np.asarray(Image.open(files[3]))
    assert img.shape == (8, 8)
    np.testing.assert_array_equal(img, ref[3, :, :, 0])
    assert not list(out.glob("*.npz"))


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "scoresde",
    ]
    res = subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_torchrun_sample_equals_one_process(digits_ckpt, tmp_path) -> None:
    one = _samples(digits_ckpt, tmp_path / "one", "--num", "7", "--batch-size", "2")
    out = tmp_path / "two"
    # torchrun's own parser takes `--num` as an abbreviation of its `--numa-binding`: use --set num=N
    res = _torchrun(
        "sample",
        "--checkpoint",
        digits_ckpt,
        "--out",
        str(out),
        *FAST,
        "--set",
        "num=7",
        "--batch-size",
        "2",
        cwd=tmp_path,
    )
    (path,) = out.glob("samples_*.npz")
    np.testing.assert_array_equal(np.load(path)["x"], one)
    assert res.stdout.count("wrote ") == 2  # grid and npz, once (rank 0 only)


def test_torchrun_likelihood_equals_one_process(digits_ckpt, tmp_path) -> None:
    args = [
        "likelihood",
        "--checkpoint",
        digits_ckpt,
        "--data",
        "digits",
        "--set",
        "num=5",
        "--batch-size",
        "2",
    ]
    args += ["--divergence", "hutchinson", "--rtol", "1e-3", "--atol", "1e-3", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    _torchrun(*args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    one = np.load(tmp_path / "one" / "likelihood.npz")
    two = np.load(tmp_path / "two" / "likelihood.npz")
    np.testing.assert_allclose(two["logp"], one["logp"], rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "two" / "likelihood.json").read_text())["num"] == 5


def test_progress_to_a_pipe_stays_small(digits_ckpt, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "scoresde", "sample", "--checkpoint", digits_ckpt, "--out", str(tmp_path)]
    cmd += [
        "--method",
        "euler",
        "--steps",
        "200",
        "--device",
        "cpu",
        "--num",
        "4",
        "--batch-size",
        "1",
        "--progress",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    assert "\r" not in text
    assert "sample: 4/4 (100%)" in text  # progress lines are written, just not a bar per step
    assert "200/200" not in text  # the per-batch samplers report nothing
    assert len(res.stdout) + len(res.stderr) < 3000


def _digits_folder(tmp_path: Path) -> Path:
    """An image folder with class subfolders (labels from the names) of 300 digits."""
    from PIL import Image

    from scoresde.data.images import load_digits

    d = load_digits(0.1, 0)
    data = tmp_path / "digits_folder"
    imgs = ((d.train[:300, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, (img, label) in enumerate(zip(imgs, d.train_labels[:300].tolist())):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data / str(label) / f"{i}.png")
    return data


def test_eval_reference_classifier_on_labelled_image_folder(digits_ckpt, tmp_path) -> None:
    out, cache = tmp_path / "eval", tmp_path / "cache"
    args = [
        "eval",
        "--checkpoint",
        digits_ckpt,
        "--data",
        str(_digits_folder(tmp_path)),
        "--num",
        "20",
        *FAST,
    ]
    args += ["--out", str(out), "--classifier-cache", str(cache), "--classifier-epochs", "3"]
    assert main(args) == 0
    res = json.loads((out / "eval.json").read_text())
    assert 0 <= res["frechet_floor"] < res["frechet"]
    assert 0 <= res["classifier_heldout_accuracy"] <= 1
    assert len(list(cache.glob("*.safetensors"))) == 1, "the reference classifier is cached"
    assert main([*args[:-6], "--out", str(tmp_path / "again"), *args[-4:]]) == 0  # from the cache
    again = json.loads((tmp_path / "again" / "eval.json").read_text())
    assert again["frechet"] == res["frechet"]
    assert len(list(cache.glob("*.safetensors"))) == 1


@pytest.mark.slow
def test_eval_fid_with_standin_inception_weights(digits_ckpt, tmp_path) -> None:
    from scoresde.evaluation import standin_inception_state

    weights = tmp_path / "standin_inception.pth"
    torch.save(standin_inception_state(0), weights)
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", digits_ckpt, "--data", str(_digits_folder(tmp_path)), "--num", "6", *FAST]
    args += ["--out", str(out), "--classifier-epochs", "1", "--classifier-cache", str(tmp_path / "c")]
    assert main([*args, "--fid-weights", str(weights)]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert np.isfinite(res["fid"]) and res["fid"] >= 0
    assert res["is_mean"] >= 1 - 1e-6
    assert np.isfinite(res["kid_mean"])


def test_clip_denoised_keeps_samples_in_range(digits_ckpt, tmp_path) -> None:
    raw = _samples(digits_ckpt, tmp_path / "raw", "--num", "4", "--clip-denoised", "none")
    assert np.abs(raw).max() > 1.5  # this barely trained model leaves the data range
    for mode in ("clip", "dynamic", "auto"):
        x = _samples(digits_ckpt, tmp_path / mode, "--num", "4", "--clip-denoised", mode)
        assert np.abs(x).max() <= 1 + 1e-5, mode
    # auto (the default) is clip for an image model in [-1, 1]
    default = _samples(digits_ckpt, tmp_path / "default", "--num", "4")
    np.testing.assert_array_equal(
        default, _samples(digits_ckpt, tmp_path / "clip2", "--num", "4", "--clip-denoised", "clip")
    )


def test_data_help_lists_the_layouts(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["likelihood", "--help"])
    text = capsys.readouterr().out
    assert "Accepted data sources" in text and "keras" in text and "CIFAR-10" in text


def test_sample_optimized_grid(digits_ckpt, tmp_path, capsys) -> None:
    uniform = _samples(digits_ckpt, tmp_path / "uniform", "--num", "4")
    pilot = ["--grid", "optimized", "--grid-pilot", "8", "--grid-seed", "1"]
    optimized = _samples(digits_ckpt, tmp_path / "opt", "--num", "4", *pilot)
    assert "optimized grid (from " in capsys.readouterr().out
    assert np.abs(optimized - uniform).max() > 1e-5  # the optimised times, not the uniform ones
    again = _samples(digits_ckpt, tmp_path / "again", "--num", "4", *pilot)
    np.testing.assert_array_equal(again, optimized)  # a deterministic function of the pilot seed
    argv = ["sample", "--checkpoint", digits_ckpt, "--out", str(tmp_path / "sde"), *pilot]
    assert main([*argv, "--method", "euler_maruyama", "--steps", "4"]) == 2
    assert "deterministic ODE solver" in capsys.readouterr().err


def test_torchrun_eval_equals_one_process(digits_ckpt, tmp_path) -> None:
    args = ["eval", "--checkpoint", digits_ckpt, "--data", "digits", "--set", "num=6", *FAST]
    args += ["--batch-size", "1", "--classifier-epochs", "1"]  # batches that match across the ranks
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    res = _torchrun(*args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    one = json.loads((tmp_path / "one" / "eval.json").read_text())
    two = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert two["num"] == one["num"] == 6
    assert two["samples_vs_heldout"] == one["samples_vs_heldout"]
    assert two["frechet"] == one["frechet"]
    assert res.stdout.count("outputs in ") == 1  # rank 0 alone writes and prints


def test_torchrun_encode_equals_one_process(digits_ckpt, tmp_path) -> None:
    args = ["encode", "--checkpoint", digits_ckpt, "--data", "digits", "--set", "num=5"]
    args += ["--norm", "independent", "--rtol", "1e-3", "--atol", "1e-3", "--device", "cpu", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    _torchrun(*args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    one = np.load(tmp_path / "one" / "latents.npz")
    two = np.load(tmp_path / "two" / "latents.npz")
    assert two["z"].shape == (5, 64)
    np.testing.assert_array_equal(two["x"], one["x"])
    # Each point takes its own steps (--norm independent); only the float32 network's sums differ
    # with the batch size (5 points vs blocks of 3 and 2), far below the solver's 1e-3 tolerance.
    np.testing.assert_allclose(two["z"], one["z"], rtol=0, atol=1e-5)
