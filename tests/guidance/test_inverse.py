"""``sample_posterior``: one call for projection, DPS and SMC on a linear inverse problem."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.guidance import MatrixOperator, conditional_sample, dps_sample, smc_sample
from scoresde.guidance.inverse import sample_posterior


def _problem():
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(ss.GaussianMixture([0.6, 0.4], [[-0.5, 0.2], [0.7, -0.3]], 0.05), sde)
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    return oracle, op, torch.tensor([[0.3]], dtype=torch.float64)


def test_each_mode_is_its_sampler() -> None:
    oracle, op, y_obs = _problem()
    run = {"steps": 5, "seed": 2, "dtype": torch.float64}
    a = sample_posterior(oracle, op, y_obs, (3, 2), "projection", method="heun", **run)
    b = conditional_sample(oracle, op, y_obs, shape=(3, 2), method="heun", **run)
    assert torch.equal(a.x, b.x)
    a = sample_posterior(oracle, op, y_obs, (3, 2), "dps", zeta=0.1, **run)
    b = dps_sample(oracle, op, y_obs, shape=(3, 2), zeta=0.1, **run)
    assert torch.equal(a.x, b.x)
    a = sample_posterior(oracle, op, y_obs, (3, 2), "smc", particles=4, proposal="mcgdiff", **run)
    b = smc_sample(oracle, op, y_obs, shape=(3, 2), particles=4, proposal="mcgdiff", **run)
    assert torch.equal(a.x, b.x)


def test_an_option_of_another_mode_is_an_error() -> None:
    oracle, op, y_obs = _problem()
    with pytest.raises(ValueError, match=r"mode='projection' does not take particles=.*mode='smc'"):
        sample_posterior(oracle, op, y_obs, (3, 2), particles=8)
    with pytest.raises(ValueError, match=r"mode='smc' does not take zeta=.*mode='dps'"):
        sample_posterior(oracle, op, y_obs, (3, 2), "smc", zeta=0.1)
    with pytest.raises(ValueError, match="unknown mode"):
        sample_posterior(oracle, op, y_obs, (3, 2), "magic")
