"""Clipping / dynamic thresholding of x0 (Saharia et al. 2022) with every sampler, on exact oracles."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.guidance import MatrixOperator
from scoresde.models import ClipDenoised, dynamic_threshold
from scoresde.sampling import EMS, bespoke_from_base

_OPTIONS = {
    "pc": {"norms": "sample", "snr": 0.05},
    "langevin": {"norms": "sample", "snr": 0.05},
    "dpm_solver_v3": {"ems": EMS.constant(-12.0, 12.0, 1.0)},  # the DPM-Solver++ statistics
    # DPM-Solver++(2M) on the run's grid (6 uniform steps on [eps, T]) as a bespoke solver.
    "bespoke": {
        "solver": bespoke_from_base(ss.VPSDE(), "dpm_solver++_2m", ss.time_grid(ss.VPSDE(), 6, "uniform"))
    },
    "dps": {"operator": MatrixOperator(torch.eye(4)[:2]), "y_obs": torch.zeros(2), "zeta": 0.1},
}


def _point_masses(centre: float, dim: int = 4) -> ss.GaussianMixture:
    """Near-point masses at ``+-centre`` in every coordinate (tiny isotropic covariances)."""
    means = [[centre] * dim, [-centre] * dim, [centre, -centre] * (dim // 2)]
    return ss.GaussianMixture([0.4, 0.3, 0.3], means, torch.stack([torch.eye(dim) * 1e-6] * 3))


@pytest.mark.parametrize("method", sorted(ss.SAMPLERS))
def test_clipping_is_inactive_when_the_data_lies_inside_the_range(method) -> None:
    oracle = ss.AnalyticScore(_point_masses(0.7), ss.VPSDE())
    kw = {"method": method, "steps": 6, "seed": 1, "dtype": torch.float64, **_OPTIONS.get(method, {})}
    plain = ss.sample(oracle, shape=(5, 4), **kw)
    for mode in ("clip", "dynamic"):
        clipped = ss.sample(ClipDenoised(oracle, mode), shape=(5, 4), **kw)
        torch.testing.assert_close(clipped.x, plain.x, rtol=1e-6, atol=1e-6)
        assert clipped.nfe == plain.nfe


@pytest.mark.parametrize("method", ["euler", "dpm_solver++_2m", "euler_maruyama", "edm_stochastic"])
def test_clipping_is_active_when_the_data_lies_outside(method) -> None:
    oracle = ss.AnalyticScore(_point_masses(1.5), ss.VPSDE())
    kw = {"method": method, "steps": 20, "seed": 2, "dtype": torch.float64}
    plain = ss.sample(oracle, shape=(64, 4), **kw).x
    assert plain.abs().max() > 1.4  # the unclipped model reaches its data at +-1.5
    clipped = ss.sample(ClipDenoised(oracle, "clip"), shape=(64, 4), **kw).x
    assert clipped.abs().max() <= 1.0 + 1e-12  # the final Tweedie step returns a clipped x0
    assert (clipped.abs() > 0.99).double().mean() > 0.9  # the data piles up at the bound
    dynamic = ss.sample(ClipDenoised(oracle, "dynamic", percentile=0.5), shape=(64, 4), **kw).x
    assert dynamic.abs().max() <= 1.0 + 1e-12


def test_dynamic_threshold_formula() -> None:
    x0 = torch.tensor([[0.5, -0.2, 0.9, 0.1], [3.0, -1.5, 0.5, 1.0]])
    out = dynamic_threshold(x0, percentile=1.0)
    torch.testing.assert_close(out[0], x0[0])  # inside the range: unchanged (s = max(., 1) = 1)
    torch.testing.assert_close(out[1], x0[1] / 3.0)  # s = max |x0| = 3: rescaled, not clipped
    s = torch.quantile(x0[1].abs(), 0.5)
    torch.testing.assert_close(dynamic_threshold(x0, 0.5)[1], x0[1].clamp(-s, s) / s)
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(x0, 0.0)
    with pytest.raises(ValueError, match="unknown clipping mode 'soft'"):
        ClipDenoised(ss.AnalyticScore(_point_masses(0.5), ss.VPSDE()), "soft")
