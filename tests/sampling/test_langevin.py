"""Langevin dynamics on a score of p_0: ULA's known bias, MALA's exactness, the funnel."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss

MU, VAR = 1.0, 2.0


def _gauss_score(x: torch.Tensor) -> torch.Tensor:
    return -(x - MU) / VAR


def _gauss_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - MU) ** 2).sum(1) / VAR


def _start(n: int = 4000, d: int = 2) -> torch.Tensor:
    return 3.0 + torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_ula_has_its_known_stationary_bias_and_mala_removes_it() -> None:
    """Target N(1, 2 I) in 2-D, eps = 1.0, 4000 chains, 100 steps from N(3, I).

    ULA is the AR(1) chain x' = (1 - eps/VAR) x + ... with stationary variance
    VAR / (1 - eps / (2 VAR)) = 2.667 (not 2); MALA is exact.  Standard errors: mean 0.016,
    variance 0.045 (8000 coordinates); the tolerances are about 3 of them.
    """
    ula = ss.langevin_dynamics(_gauss_score, _start(), 1.0, 100, seed=0)
    assert ula.acceptance_rate is None and ula.nfe == 100
    assert float(ula.x.mean()) == pytest.approx(MU, abs=0.05)
    assert float(ula.x.var()) == pytest.approx(VAR / (1 - 1.0 / (2 * VAR)), abs=0.15)
    mala = ss.langevin_dynamics(_gauss_score, _start(), 1.0, 100, seed=0, log_prob_fn=_gauss_log_prob)
    assert mala.nfe == 101
    assert float(mala.x.mean()) == pytest.approx(MU, abs=0.05)
    assert float(mala.x.var()) == pytest.approx(VAR, abs=0.12)
    assert 0.5 < mala.acceptance_rate < 0.95
    assert mala.acceptance.shape == (4000,)


def test_mala_with_a_huge_step_rejects_and_stays_exact() -> None:
    """eps = 40 (20x the variance): ULA explodes, MALA rejects almost everything but, started
    from exact samples, keeps the target's mean and variance (its accepted moves are exact)."""
    x0 = MU + math.sqrt(VAR) * torch.randn(
        4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    mala = ss.langevin_dynamics(_gauss_score, x0, 40.0, 200, seed=0, log_prob_fn=_gauss_log_prob)
    assert mala.acceptance_rate < 0.05
    assert float(mala.x.mean()) == pytest.approx(MU, abs=0.06)
    assert float(mala.x.var()) == pytest.approx(VAR, abs=0.15)
    ula = ss.langevin_dynamics(_gauss_score, x0, 40.0, 20, seed=0)
    assert float(ula.x.abs().max()) > 1e6 or not bool(torch.isfinite(ula.x).all())


def test_ula_and_mala_sample_the_funnel() -> None:
    """Neal's funnel (scale 1, 2-D), 2000 chains, eps = 0.05, 600 steps from N(0, 0.25 I).

    Exact: E v = 0, sd v = 1, E|x_1| = sqrt(2/pi) exp(scale^2 / 8) = 0.904.  Standard errors
    (2000 chains): 0.022, 0.016, 0.03; tolerances 0.08 / 0.08 / 0.1 also cover ULA's O(eps)
    bias and incomplete mixing in the neck.
    """
    funnel = ss.Funnel(2, scale=1.0)
    x0 = 0.5 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    e_abs = math.sqrt(2 / math.pi) * math.exp(1.0 / 8)
    for log_prob in (None, funnel.log_prob):
        res = ss.langevin_dynamics(funnel.score, x0, 0.05, 600, seed=1, log_prob_fn=log_prob)
        v = res.x[:, 0]
        assert float(v.mean()) == pytest.approx(0.0, abs=0.08)
        assert float(v.std()) == pytest.approx(1.0, abs=0.08)
        assert float(res.x[:, 1].abs().mean()) == pytest.approx(e_abs, abs=0.1)
    assert res.acceptance_rate > 0.9


@pytest.mark.slow
def test_mala_samples_a_wide_funnel() -> None:
    """Funnel scale 2: 2000 chains x 5000 MALA steps (eps = 0.05) reach sd v = 2 within 0.15."""
    funnel = ss.Funnel(2, scale=2.0)
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = ss.langevin_dynamics(funnel.score, x0, 0.05, 5000, seed=0, log_prob_fn=funnel.log_prob)
    v = res.x[:, 0]
    assert float(v.mean()) == pytest.approx(0.0, abs=0.15)
    assert float(v.std()) == pytest.approx(2.0, abs=0.15)


def test_seed_reproduces_across_chain_counts_and_trajectory() -> None:
    x0 = _start(10)
    a = ss.langevin_dynamics(_gauss_score, x0, 0.3, 12, seed=5, log_prob_fn=_gauss_log_prob, record_stride=5)
    b = ss.langevin_dynamics(_gauss_score, x0[:4], 0.3, 12, seed=5, log_prob_fn=_gauss_log_prob)
    torch.testing.assert_close(a.x[:4], b.x)
    assert a.trajectory.shape == (1 + 3, 10, 2)  # start, steps 5 and 10, and the last
    torch.testing.assert_close(a.trajectory[0], x0)
    torch.testing.assert_close(a.trajectory[-1], a.x)
    g1 = ss.langevin_dynamics(_gauss_score, x0, 0.3, 5, generator=torch.Generator().manual_seed(0))
    g2 = ss.langevin_dynamics(_gauss_score, x0, 0.3, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g1.x, g2.x)
    assert not torch.allclose(g1.x, x0)


def test_bad_arguments() -> None:
    x0 = _start(4)
    with pytest.raises(ValueError, match="step_size must be positive"):
        ss.langevin_dynamics(_gauss_score, x0, 0.0, 10)
    with pytest.raises(ValueError, match="step_size must be positive"):
        ss.langevin_dynamics(_gauss_score, x0, -1.0, 10)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 0"):
        ss.langevin_dynamics(_gauss_score, x0, 0.1, -1)
    with pytest.raises(ValueError, match="record_stride must be an integer >= 1"):
        ss.langevin_dynamics(_gauss_score, x0, 0.1, 3, record_stride=0)
    with pytest.raises(ValueError, match="x0 contains 1 non-finite"):
        ss.langevin_dynamics(_gauss_score, torch.tensor([[float("nan"), 0.0]]), 0.1, 3)
    with pytest.raises(ValueError, match="log_prob_fn must return shape"):
        ss.langevin_dynamics(_gauss_score, x0, 0.1, 3, log_prob_fn=lambda x: x)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        ss.langevin_dynamics(lambda x: x[:, :1], x0, 0.1, 3)
    with pytest.raises(ValueError, match="either generator or seed"):
        ss.langevin_dynamics(_gauss_score, x0, 0.1, 3, seed=0, generator=torch.Generator())
