"""Round trips between score, eps, x0, v and velocity, and the network wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scoresde as ss
from scoresde.models.parameterization import PREDICTIONS, convert, convert_at, from_eps, to_eps


@pytest.mark.parametrize("kind", list(ss.PREDICTIONS))
def test_round_trip_through_eps(sde: ss.SDE, kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 8, dtype=torch.float64)
    s, sigma = (c[:, None] for c in sde.marginal(t))
    ds, dsig = (c[:, None] for c in sde.marginal_derivatives(t))
    pred = from_eps(kind, eps, x, s, sigma, ds, dsig)
    torch.testing.assert_close(to_eps(kind, pred, x, s, sigma, ds, dsig), eps, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", list(ss.PREDICTIONS))
def test_every_prediction_gives_the_same_score(sde: ss.SDE, gmm2d: ss.GaussianMixture, kind: str) -> None:
    """A network predicting ``kind`` exactly (here: the oracle converted) answers all methods alike."""
    oracle = ss.AnalyticScore(gmm2d, sde)

    class Exact(nn.Module):
        def forward(self, x, t):
            return oracle.predict(kind, x, t)

    model = ss.ScoreModel(Exact(), sde, prediction=kind, scale_input=False)
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 8, dtype=torch.float64)
    for method in ("score", "eps", "denoise", "v", "velocity"):
        torch.testing.assert_close(getattr(model, method)(x, t), getattr(oracle, method)(x, t))


def test_definitions_hold(sde: ss.SDE, gmm2d: ss.GaussianMixture) -> None:
    """x = s x0 + sigma eps, score = -eps / sigma, for the oracle's own predictions."""
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.full((8,), 0.5, dtype=torch.float64)
    s, sigma = (c[:, None] for c in sde.marginal(t))
    torch.testing.assert_close(s * oracle.denoise(x, t) + sigma * oracle.eps(x, t), x)
    torch.testing.assert_close(oracle.score(x, t), -oracle.eps(x, t) / sigma)


def test_scale_input_and_time_input() -> None:
    seen = {}

    class Probe(nn.Module):
        def forward(self, x, t):
            seen["x"], seen["t"] = x, t
            return torch.zeros_like(x)

    sde = ss.VESDE(sigma_max=10.0)
    model = ss.ScoreModel(Probe(), sde, sigma_data=0.5, time_input="log_sigma")
    x = torch.ones(2, 3, dtype=torch.float64)
    t = torch.tensor([0.5, 0.5], dtype=torch.float64)
    model.eps(x, t)
    _, sigma = sde.marginal(t)
    torch.testing.assert_close(seen["x"], x / torch.sqrt(0.25 + sigma**2)[:, None])
    torch.testing.assert_close(seen["t"], 0.25 * torch.log(sigma))
    with pytest.raises(ValueError, match="unknown prediction"):
        ss.ScoreModel(Probe(), sde, prediction="noise")
    with pytest.raises(ValueError, match="unknown time_input"):
        ss.ScoreModel(Probe(), sde, time_input="noise_level")


@pytest.mark.parametrize("coefs", [(0.8, 0.6, -0.3, 0.5), (1.0, 2.5, 0.0, 1.7), (0.05, 0.999, -2.0, 0.02)])
def test_convert_at_equals_convert(coefs):
    """Float coefficients (one time for the batch) give the tensor conversion within float64
    rounding, for every pair of predictions (VP-like, VE-like s = 1, and s near 0)."""
    g = torch.Generator().manual_seed(0)
    x, out = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(5, 3, generator=g, dtype=torch.float64),
    )
    as_t = [torch.tensor(c, dtype=torch.float64) for c in coefs]
    for p in PREDICTIONS:
        for k in PREDICTIONS:
            want = convert(p, k, out, x, *as_t)
            got = convert_at(p, k, out, x, *coefs)
            scale = float(want.abs().max())
            torch.testing.assert_close(got, want, rtol=0, atol=1e-13 * scale, msg=f"{p} -> {k}")


def test_convert_at_undefined_conversion_is_not_finite():
    """A conversion that divides by sigma = 0 gives the tensor path's inf (the guard reports it)."""
    x, out = torch.ones(2, 2), torch.ones(2, 2)
    assert not torch.isfinite(convert_at("eps", "score", out, x, 1.0, 0.0)).any()
