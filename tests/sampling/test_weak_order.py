"""Weak order of the stochastic samplers, computed exactly (no Monte Carlo).

For Gaussian data ``N(0, c^2)`` the exact score is linear in ``x``, so every stochastic sampler
here is an affine map of the start ``x_T`` and of the noise draws: ``x_out = a x_T + sum_k b_k
z_k``.  Running it on a batch whose sample 0 starts at ``x_T = 1`` without noise, and whose sample
``k`` starts at 0 and receives unit noise only at draw ``k``, reads off ``a`` and every ``b_k``;
then ``Var(x_out) = a^2 Var(x_T) + sum_k b_k^2`` exactly, with ``x_T`` drawn from the exact
``p_T``.  The weak error is ``|Var(x_out) - Var(E[x_0 | x_eps])|`` (the samplers end with the
Tweedie denoiser at ``eps``), and its slope against the number of steps is the weak order.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

import scoresde as ss
from scoresde.sampling.grids import time_grid
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.registry import SAMPLERS

F64 = torch.float64
C = 0.5  # data standard deviation


class IndicatorNoise(NoiseSource):
    """Draw ``k`` is 1 for sample ``k + 1`` and 0 for every other sample."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(like)
        z[self.calls + 1] = 1.0
        self.calls += 1
        return z


def _weak_errors(sde: ss.SDE, method: str, steps: list[int]) -> list[float]:
    oracle = ss.AnalyticScore(ss.GaussianMixture([1.0], [[0.0]], [[[C * C]]], dtype=F64), sde)
    s_eps, sigma_eps = (float(v) for v in sde.marginal(torch.tensor(sde.eps, dtype=F64)))
    v_eps = s_eps**2 * C**2 + sigma_eps**2
    target = s_eps**2 * C**4 / v_eps  # Var(E[x_0 | x_eps]) for x_eps ~ p_eps
    s_T, sigma_T = (float(v) for v in sde.marginal(torch.tensor(sde.T, dtype=F64)))
    v_T = s_T**2 * C**2 + sigma_T**2
    errors = []
    for n in steps:
        ts = time_grid(sde, n, "uniform")
        batch = 2 + 4 * n  # room for up to 4 noise draws per step
        x = torch.zeros(batch, 1, dtype=F64)
        x[0] = 1.0
        noise = IndicatorNoise()
        out = SAMPLERS[method](oracle, sde, x, ts, noise=noise, y=None, callback=None)
        assert noise.calls < batch - 1
        out = oracle.denoise(out, ts[-1].to(F64).expand(batch))
        var = float(out[0, 0] ** 2 * v_T + out[1:, 0].pow(2).sum())
        errors.append(abs(var - target))
    return errors


def _orders(errors: list[float]) -> list[float]:
    return [math.log(errors[i] / errors[i + 1], 2) for i in range(len(errors) - 1)]


@pytest.mark.parametrize(
    "method", ["euler_maruyama", "reverse_diffusion", "ancestral", "edm_stochastic", "dpm_solver++_2m_sde"]
)
def test_weak_order_at_least_one(sde: ss.SDE, method: str) -> None:
    """Measured slopes at 100 -> 200 -> 400 steps: 0.86-2.31 (ancestral under VP is the slowest to 1)."""
    errors = _weak_errors(sde, method, [100, 200, 400])
    orders = _orders(errors)
    assert errors[-1] < 1e-2 and all(a > b for a, b in pairwise(errors)), errors
    assert orders[-1] > 0.85, (errors, orders)


def test_euler_maruyama_has_weak_order_one_under_vp() -> None:
    """The textbook rate: errors 3.8e-3, 1.9e-3, 9.1e-4 at 100, 200, 400 steps (slopes 1.05, 1.02)."""
    orders = _orders(_weak_errors(ss.VPSDE(), "euler_maruyama", [100, 200, 400]))
    assert all(0.9 < o < 1.1 for o in orders), orders


@pytest.mark.parametrize("sde", [ss.VPSDE(), ss.SubVPSDE()], ids=["vp", "subvp"])
def test_sde_dpm_solver_pp_2m_has_weak_order_two(sde: ss.SDE) -> None:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b): measured slopes 1.96-2.29 at 100 -> 400 steps."""
    orders = _orders(_weak_errors(sde, "dpm_solver++_2m_sde", [100, 200, 400]))
    assert all(o > 1.8 for o in orders), orders
