"""``likelihood`` and ``encode`` keep their promises or say so: ``--target-se`` checked after the
run, tolerances that cannot be met refused by name, fewer items than ``--num`` noted, and
valid JSON (issue 24; issue 23, item 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import save_checkpoint

LOOSE = ["--rtol", "1e-2", "--atol", "1e-2"]


@pytest.fixture(scope="module")
def points_ckpt(tmp_path_factory) -> str:
    """An untrained 2-D MLP on vectors (no image shape: .npy files hold out their last tenth)."""
    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    path = tmp_path_factory.mktemp("ckpt") / "points.safetensors"
    save_checkpoint(path, model, step=0, data_info={"name": "points", "shape": [2]})
    return str(path)


def _strict_json(path) -> dict:
    """Parse as strict JSON: NaN / Infinity are refused."""

    def refuse(token: str) -> float:
        raise ValueError(f"not JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_target_se_miss_is_an_error_unless_accepted(points_ckpt, tmp_path, capsys) -> None:
    argv = ["likelihood", "--checkpoint", points_ckpt, "--data", "two_moons", "--num", "8"]
    argv += ["--divergence", "exact", "--target-se", "1e-9"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 3
    err = capsys.readouterr().err
    assert "--target-se" in err and "not met" in err and "--accept-miss" in err
    res = _strict_json(tmp_path / "a" / "likelihood.json")
    assert res["target_met"] is False and "not met" in res["target_miss"]
    assert res["solver_error"] > res["plan"]["solver_budget"]
    assert main([*argv, "--accept-miss", "--out", str(tmp_path / "b")]) == 0
    res = _strict_json(tmp_path / "b" / "likelihood.json")
    assert res["target_met"] is False and res["target_miss_accepted"] is True


def test_accept_miss_needs_target_se(points_ckpt, tmp_path, capsys) -> None:
    argv = ["likelihood", "--checkpoint", points_ckpt, "--data", "two_moons", "--num", "4", "--accept-miss"]
    assert main([*argv, "--out", str(tmp_path)]) != 0
    assert "--accept-miss" in capsys.readouterr().err


def test_target_se_method_needs_target_se(points_ckpt, tmp_path, capsys) -> None:
    argv = ["likelihood", "--checkpoint", points_ckpt, "--data", "two_moons", "--num", "4"]
    assert main([*argv, "--target-se-method", "dopri5", "--out", str(tmp_path)]) != 0
    assert "--target-se-method" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["likelihood", "encode"])
def test_unmeetable_tolerance_names_it(points_ckpt, tmp_path, capsys, command) -> None:
    argv = [command, "--checkpoint", points_ckpt, "--data", "two_moons", "--num", "4"]
    assert main([*argv, "--rtol", "1e-300", "--atol", "1e-300", "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "rtol=1e-300" in err and "--rtol" in err and "NaN" not in err


def test_fewer_points_than_num_are_noted(points_ckpt, tmp_path, capsys) -> None:
    """A 4-row file holds out its last tenth (1 row): --num 2 scores 1 point and says so, and the
    single point's undefined standard error is written as null, with the reason."""
    data = tmp_path / "four.npy"
    np.save(data, np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32))
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", points_ckpt, "--data", str(data), "--num", "2", *LOOSE]
    assert main([*argv, "--out", str(out)]) == 0
    assert "--num 2 asked" in capsys.readouterr().err
    res = _strict_json(out / "likelihood.json")
    assert res["num"] == 1 and res["num_asked"] == 2 and "only 1" in res["notes"][0]
    assert res["logp_se_nats"] is None and "logp_se_nats=nan" in res["non_finite"]["fields"]


def test_encode_more_than_exist_is_noted(points_ckpt, tmp_path, capsys) -> None:
    data = tmp_path / "rows.npy"
    np.save(data, np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32))
    out = tmp_path / "enc"
    argv = ["encode", "--checkpoint", points_ckpt, "--data", str(data), "--num", "100000", *LOOSE]
    assert main([*argv, "--out", str(out)]) == 0
    assert "--num 100000 asked" in capsys.readouterr().err
    res = _strict_json(out / "encode.json")
    assert res["num"] == 4 and res["num_asked"] == 100000 and "4 used" in res["notes"][0]
