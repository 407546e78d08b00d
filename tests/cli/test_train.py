"""``scoresde train`` and ``scoresde sample`` end to end (tiny), config files, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import load_checkpoint

TINY = ["--base-channels", "8", "--num-res-blocks", "1", "--batch-size", "8", "--warmup", "1"]
TINY += ["--num-samples", "4", "--sample-steps", "2", "--no-progress", "--log-every", "1"]


def test_help_lists_train_and_sample(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "sample" in out


def test_train_config_file_resume_and_sample(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), y=np.arange(40) % 2)
    config = tmp_path / "c.toml"
    config.write_text(
        f'data = "{tmp_path / "d.npz"}"\nsteps = 5\nconditional = true\nout = "{tmp_path}"\nname = "r"\n'
        'sde = "ve"\nlr = 0.001\n'
    )
    # Flags override the file (steps 2 instead of 5), then --resume continues to 3.
    assert main(["train", "--config", str(config), "--steps", "2", *TINY]) == 0
    run = tmp_path / "r"
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 2 and saved["sde"] == "ve" and saved["lr"] == 0.001 and saved["conditional"]
    assert main(["train", "--config", str(config), "--steps", "3", "--resume", *TINY]) == 0
    assert "resumed" in capsys.readouterr().out
    ckpt = load_checkpoint(run)
    assert (
        ckpt.step == 3 and ckpt.config["net"]["num_classes"] == 2 and ckpt.config["net"]["in_channels"] == 3
    )

    assert main(["sample", "--checkpoint", str(run), "--num", "6", "--steps", "3", "--class", "1"]) == 0
    npz = np.load(run / "samples" / "samples_euler_maruyama_3_seed0_class1.npz")
    assert (
        npz["x"].shape == (6, 3, 8, 8)
        and npz["images"].shape == (6, 8, 8, 3)
        and npz["images"].dtype == np.uint8
    )
    assert (npz["y"] == 1).all() and np.isfinite(npz["x"]).all()
    with Image.open(run / "samples" / "samples_euler_maruyama_3_seed0_class1.png") as im:
        assert im.mode == "RGB" and im.size[0] > 8 * 3


def test_cli_errors(tmp_path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "nothing.npz"), "--out", str(tmp_path)]) == 2
    assert "no such data file" in capsys.readouterr().err
    assert main(["train", "--loss", "ncsn", "--out", str(tmp_path)]) == 2
    assert "unknown loss 'ncsn'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1.0\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown setting 'learning_rate' in config file" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--sde-option", "beta_max", "--out", str(tmp_path)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_resume_never_rewrites_the_record_and_refuses_fewer_steps(tmp_path, capsys) -> None:
    """Issue 24: ``--resume RUN --steps 5`` on a run at step 6 is an error naming both numbers, and
    no resume rewrites ``config.json``."""
    base = ["train", "--data", "digits", "--out", str(tmp_path), "--name", "r", *TINY, "--num-samples", "0"]
    assert main([*base, "--steps", "6", "--save-every", "3"]) == 0
    run = tmp_path / "r"
    record = (run / "config.json").read_bytes()
    files = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    capsys.readouterr()
    for steps in ("5", "6"):
        assert main(["train", "--resume", str(run), "--steps", steps, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"steps {steps}" in err and "at step 6" in err, err
    assert (run / "config.json").read_bytes() == record
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == files
    assert main(["train", "--resume", str(run), "--steps", "7", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint None" not in out and "step_0000007.safetensors" in out
    assert (run / "config.json").read_bytes() == record  # still the record of how the run was made
    assert load_checkpoint(run).step == 7


def test_constant_images_are_refused_before_training(tmp_path, capsys) -> None:
    np.save(tmp_path / "flat.npy", np.full((40, 8, 8), 128, dtype=np.uint8))
    args = ["train", "--data", str(tmp_path / "flat.npy"), "--out", str(tmp_path), *TINY, "--steps", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "degenerate" in err and "standard deviation is 0" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "demo"])
def test_zero_learning_rate_is_refused(tmp_path, capsys, command) -> None:
    assert main([command, "--lr", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "must be a finite number > 0" in err and "got 0" in err, err
    assert not (tmp_path / "o").exists()
