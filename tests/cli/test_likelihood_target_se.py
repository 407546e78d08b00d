"""``scoresde likelihood --target-se``: the option reaches the library and the JSON reports both errors."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.io.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ring_ckpt(tmp_path_factory) -> str:
    """A tiny, briefly trained MLP on the 2-D two-moons data."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = ss.ScoreModel(ss.MLP(2, hidden=16, depth=1), ss.VPSDE(), prediction="eps")
    fit = ss.fit(
        model,
        lambda n, g: ss.toy_data("two_moons", n, g).float(),
        steps=20,
        batch_size=64,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    path = tmp_path_factory.mktemp("ckpt") / "moons.safetensors"
    save_checkpoint(path, model, ema=fit.ema_model, step=20, data_info={"name": "two_moons", "shape": [2]})
    return str(path)


def test_target_se_in_the_json(ring_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", ring_ckpt, "--data", "two_moons", "--num", "40", "--out", str(out)]
    target = ["--target-se", "0.05", "--divergence", "hutchinson", "--batch-size", "20"]
    assert main([*argv, *target]) == 0
    assert "Monte-Carlo s.e." in capsys.readouterr().out
    res = json.loads((out / "likelihood.json").read_text())
    assert res["target_se"] == 0.05 and res["se_units"] == "nats"
    assert 0 < res["mc_se"] <= 1.1 * 0.05 and 0 <= res["solver_error"] <= 0.25 * 0.05 + 1e-12
    plan = res["plan"]
    assert plan["divergence"] == "hutchinson" and plan["num_probes"] >= 1 and plan["target_points"] == 40
    assert plan["steps"] is not None and plan["rtol"] is None  # the default plan: rk4 steps
    # The second batch reused the first one's plan: one pilot in all.
    assert res["nfe"] > plan["pilot_nfe"] > 0
    # The same first batch through the API gives the same plan.
    import numpy as np

    from scoresde.io.checkpoint import load_checkpoint
    from scoresde.parallel import batch_generator

    model = load_checkpoint(ring_ckpt).model
    x = ss.toy_data("two_moons", 40, torch.Generator().manual_seed(0)).float()
    api = ss.log_likelihood(
        model,
        model.sde,
        x[:20],
        divergence="hutchinson",
        generator=batch_generator(0, 0),  # the CLI's generator of the batch starting at point 0
        target_se=ss.PrecisionTarget(0.05, points=40),
    )
    assert asdict(api.plan) == plan | {"pilot_nfe": api.plan.pilot_nfe}
    np.testing.assert_allclose(
        np.load(out / "likelihood.npz")["logp"][:20], api.logp.double().numpy(), atol=1e-6
    )


def test_target_se_method_dopri5_plans_a_tolerance(ring_ckpt, tmp_path) -> None:
    out = tmp_path / "lik"
    argv = ["likelihood", "--checkpoint", ring_ckpt, "--data", "two_moons", "--num", "20", "--out", str(out)]
    assert main([*argv, "--target-se", "0.05", "--target-se-method", "dopri5"]) == 0
    plan = json.loads((out / "likelihood.json").read_text())["plan"]
    assert plan["rtol"] is not None and plan["steps"] is None


def test_auto_divergence_needs_target_se(ring_ckpt, tmp_path) -> None:
    argv = [
        "likelihood",
        "--checkpoint",
        ring_ckpt,
        "--data",
        "two_moons",
        "--num",
        "4",
        "--out",
        str(tmp_path),
    ]
    assert main([*argv, "--divergence", "auto"]) != 0
