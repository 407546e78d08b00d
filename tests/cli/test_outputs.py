"""Every command's outputs follow train's rule: an earlier run's results are refused, or replaced
as a whole under --overwrite, never overwritten in part or mixed (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import save_checkpoint
from scoresde.io.outputs import RECORD


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    vec = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    save_checkpoint(root / "vec.safetensors", vec, step=1, data_info={"name": "two_moons", "shape": [2]})
    img = ss.ScoreModel(ss.MLP(64, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    info = {"name": "digits", "shape": [1, 8, 8], "num_classes": None, "levels": 17}
    save_checkpoint(root / "run" / "checkpoints" / "last.safetensors", img, step=1, data_info=info)
    nan = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    with torch.no_grad():
        for p in nan.parameters():
            p.fill_(float("nan"))
    save_checkpoint(root / "nan.safetensors", nan, step=1, data_info={"name": "two_moons", "shape": [2]})
    return {
        "vec": str(root / "vec.safetensors"),
        "img": str(root / "run"),
        "nan": str(root / "nan.safetensors"),
    }


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_second_encode_is_refused_and_overwrite_replaces_the_set(ckpts, tmp_path: Path, capsys) -> None:
    out = tmp_path / "enc"
    argv = ["encode", "--checkpoint", ckpts["vec"], "--data", "two_moons", "--out", str(out)]
    assert main([*argv, "--num", "4"]) == 0
    first = {n: (out / n).read_bytes() for n in ("latents.npz", "encode.json", "config.toml")}
    capsys.readouterr()
    assert main([*argv, "--num", "3"]) == 2
    err = capsys.readouterr().err
    assert "already holds the results of an earlier `scoresde encode` run" in err and "--overwrite" in err
    assert {n: (out / n).read_bytes() for n in first} == first  # untouched
    assert main([*argv, "--num", "3", "--overwrite"]) == 0
    assert np.load(out / "latents.npz")["z"].shape == (3, 2)
    assert json.loads((out / "encode.json").read_text())["num"] == 3
    assert "overwrite" not in (out / "config.toml").read_text()  # a repeat never overwrites silently
    record = json.loads((out / RECORD).read_text())
    assert record["command"] == "encode" and record["outputs"] == [
        "config.toml",
        "encode.json",
        "latents.npz",
    ]


def test_png_set_is_never_mixed(ckpts, tmp_path: Path) -> None:
    out = tmp_path / "png"
    argv = ["sample", "--checkpoint", ckpts["img"], "--steps", "2", "--format", "png", "--out", str(out)]
    assert main([*argv, "--num", "4"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert len(list(folder.iterdir())) == 4
    (out / "notes.txt").write_text("the user's")
    assert main([*argv, "--num", "2"]) == 2
    assert len(list(folder.iterdir())) == 4
    assert main([*argv, "--num", "2", "--overwrite"]) == 0
    assert _names(folder) == ["000000.png", "000001.png"]  # the whole earlier set went first
    assert (out / "notes.txt").read_text() == "the user's"  # not a result: kept


def test_unnamed_default_folders_go_beside_earlier_results(ckpts, tmp_path: Path, capsys) -> None:
    argv = ["sample", "--checkpoint", ckpts["img"], "--steps", "2", "--num", "2"]
    assert main(argv) == 0 and main(argv) == 0
    run = Path(ckpts["img"])
    assert {"samples", "samples-2"} <= set(_names(run))
    assert "samples-2" in capsys.readouterr().out


def test_a_failed_run_leaves_the_folder_as_it_was(ckpts, tmp_path: Path) -> None:
    out = tmp_path / "dec"
    argv = ["decode", "--checkpoint", ckpts["nan"], "--num", "2", "--out", str(out)]
    assert main(argv) == 1  # the model's output is NaN: a runtime failure after the folder was claimed
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("k")
    assert main(argv) == 1
    assert _names(out) == ["keep.txt"]


def test_named_run_folders_follow_the_same_rule(tmp_path: Path) -> None:
    from scoresde.cli.config import check_out, claim_run_dir
    from scoresde.io.outputs import OutputExistsError, finish_output_dir

    cfg = {"name": "r", "steps": 3}
    folder = claim_run_dir(cfg, "encode", root=tmp_path)
    (folder.path / "latents.npz").write_text("z")
    finish_output_dir(folder)
    with pytest.raises(OutputExistsError, match=r"--name: .*latents\.npz.*--overwrite"):
        check_out(cfg, "encode", root=tmp_path)
    with pytest.raises(OutputExistsError):
        claim_run_dir(cfg, "encode", root=tmp_path)
    again = claim_run_dir({**cfg, "overwrite": True}, "encode", root=tmp_path)
    assert again.replaced == ("config.toml", "latents.npz") and _names(again.path) == [RECORD, "config.toml"]
    # Unnamed: a fresh timestamped folder; train keeps its own rule.
    check_out({"name": "r"}, "train", root=tmp_path)
