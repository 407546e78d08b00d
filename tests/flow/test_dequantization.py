"""Bits/dim: uniform dequantization, the explicit data-scaling Jacobian and the [0, eps] corrections."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.flow.dequantization import likelihood_points

MEAN = torch.tensor([0.1, -0.2], dtype=torch.float64)
STD = torch.tensor([0.2, 0.15], dtype=torch.float64)
QUANT = ss.Quantization(num_bins=32, low=-1.0, high=1.0)


def _gaussian(sde: ss.SDE) -> tuple[ss.GaussianMixture, ss.AnalyticScore]:
    gmm = ss.GaussianMixture([1.0], MEAN[None], (STD**2)[None])
    return gmm, ss.AnalyticScore(gmm, sde)


def _marginal(sde: ss.SDE, t: float) -> tuple[float, float]:
    s, sigma = sde.marginal(torch.tensor(t, dtype=torch.float64))
    return float(s), float(sigma)


def _discrete_data(sde: ss.SDE, n: int, seed: int) -> torch.Tensor:
    """Bins of draws from p_eps (exactly Gaussian): data whose bin probabilities are known."""
    s, sigma = _marginal(sde, sde.eps)
    std = torch.sqrt(s**2 * STD**2 + sigma**2)
    y = s * MEAN + std * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = torch.floor((y - QUANT.low) / QUANT.width)
    assert bool(((k >= 0) & (k < QUANT.num_bins)).all())
    return k


def _exact_prior(oracle, sde):
    return lambda z: oracle.log_prob(z, sde.T)


def test_uniform_dequantization_matches_closed_form():
    """The paper's convention: E_u[log p_eps(y)] + D log w, exact for Gaussian p_eps."""
    sde = ss.VPSDE()
    _, oracle = _gaussian(sde)
    k = _discrete_data(sde, 64, seed=0)
    res = ss.log_likelihood(
        oracle,
        sde,
        k,
        quantization=QUANT,
        generator=torch.Generator().manual_seed(1),
        options=ss.LikelihoodOptions(draws=8, prior_logp=_exact_prior(oracle, sde)),
    )  # fmt: skip
    s, sigma = _marginal(sde, sde.eps)
    mu, var = s * MEAN, s**2 * STD**2 + sigma**2
    a, b = QUANT.low + k * QUANT.width - mu, QUANT.low + (k + 1) * QUANT.width - mu
    second_moment = (b**3 - a**3) / (3 * QUANT.width)
    target = (-0.5 * torch.log(2 * math.pi * var) - second_moment / (2 * var)).sum(1) + 2 * math.log(
        QUANT.width
    )
    diff = res.logp - target
    se = float(diff.std()) / math.sqrt(diff.numel())
    assert abs(float(diff.mean())) < 3 * se + 1e-4, (float(diff.mean()), se)
    assert se < 0.02
    # bits/dim = -logp / (D ln 2), with mean and standard error.
    torch.testing.assert_close(res.bpd, -res.logp / (2 * math.log(2)))
    assert res.bpd_mean == pytest.approx(float(res.bpd.mean()))
    assert res.bpd_se == pytest.approx(float(res.bpd.std()) / 8)
    torch.testing.assert_close(res.offset, torch.full_like(res.offset, 2 * math.log(QUANT.width)))


def test_bpd_of_known_discrete_distribution():
    """Data drawn from P(k) = mass of p_eps on bin k: mean bpd -> entropy of P in bits/dim."""
    sde = ss.VPSDE()
    _, oracle = _gaussian(sde)
    n = 256
    k = _discrete_data(sde, n, seed=2)
    res = ss.log_likelihood(oracle, sde, k, quantization=QUANT, generator=torch.Generator().manual_seed(3))
    s, sigma = _marginal(sde, sde.eps)
    std = torch.sqrt(s**2 * STD**2 + sigma**2)
    bins = torch.arange(QUANT.num_bins, dtype=torch.float64)[:, None].expand(-1, 2)
    logp_bins = QUANT.log_bin_mass(bins, s * MEAN, std)  # (num_bins, D), exact
    entropy = -(logp_bins.exp() * logp_bins).sum()
    exact_bpd = float(entropy) / (2 * math.log(2))
    # The dequantization bound exceeds the entropy by the Jensen gap ~ w^2 / (24 var) per dim.
    gap = float((QUANT.width**2 / (24 * std**2)).sum()) / (2 * math.log(2))
    assert abs(res.bpd_mean - exact_bpd - gap) < 3 * res.bpd_se + gap, (res.bpd_mean, exact_bpd, res.bpd_se)
    # Per sample against the exact discrete log-probability: a sharper check of the Jacobian.
    log_pk = QUANT.log_bin_mass(k, s * MEAN, std).sum(1)
    diff = res.logp - log_pk
    gap_nats = gap * 2 * math.log(2)
    se = float(diff.std()) / math.sqrt(n)
    assert abs(float(diff.mean()) + gap_nats) < 3 * se + 0.1 * gap_nats, (float(diff.mean()), gap_nats, se)


@pytest.mark.parametrize("correction", ["none", "gaussian", "discretized"])
def test_corrections_equal_exact_density_estimator(correction):
    """ODE estimate == the same estimator with the exact log p_eps, on the same random draws."""
    sde = ss.VPSDE()
    _, oracle = _gaussian(sde)
    k = _discrete_data(sde, 16, seed=4)
    res = ss.log_likelihood(
        oracle,
        sde,
        k,
        quantization=QUANT,
        generator=torch.Generator().manual_seed(5),
        options=ss.LikelihoodOptions(
            eps_correction=correction, draws=2, prior_logp=_exact_prior(oracle, sde)
        ),
    )  # fmt: skip
    points, offset = likelihood_points(k, sde, QUANT, correction, 2, torch.Generator().manual_seed(5))
    exact = oracle.log_prob(points.reshape(-1, 2), sde.eps).reshape(2, -1) + offset
    assert float((res.logp_draws - exact).abs().mean()) < 1e-4
    torch.testing.assert_close(res.logp, exact.mean(0), rtol=0, atol=1e-3)


def test_gaussian_correction_continuous_expectation():
    """E_n[log p_eps(s x + sigma n)] + D log s in closed form for Gaussian p_eps."""
    sde = ss.VPSDE()
    _, oracle = _gaussian(sde)
    x = (MEAN + 0.1)[None]
    points, offset = likelihood_points(x, sde, None, "gaussian", 20000, torch.Generator().manual_seed(6))
    est = oracle.log_prob(points.reshape(-1, 2), sde.eps) + offset.reshape(-1)
    s, sigma = _marginal(sde, sde.eps)
    var = s**2 * STD**2 + sigma**2
    closed = float(
        (-0.5 * torch.log(2 * math.pi * var) - (s * x[0] - s * MEAN) ** 2 / (2 * var)).sum()
        - 0.5 * sigma**2 * (1 / var).sum()
        + 2 * math.log(s)
    )
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - closed) < 3 * se + 1e-9


def test_decoder_bounds_below_exact_decoder_model():
    """Both corrections bound log P(k) of 'ODE to eps, then Gaussian decoder', exact here."""
    sde = ss.VPSDE()
    _, oracle = _gaussian(sde)
    k = _discrete_data(sde, 64, seed=7)
    s, sigma = _marginal(sde, sde.eps)
    sigma_hat = sigma / s
    # x_eps / s ~ N(m, C + sigma_hat^2); decoding adds sigma_hat^2 again.
    log_pk = QUANT.log_bin_mass(k, MEAN, torch.sqrt(STD**2 + 2 * sigma_hat**2)).sum(1)
    for correction in ("gaussian", "discretized"):
        points, offset = likelihood_points(k, sde, QUANT, correction, 64, torch.Generator().manual_seed(8))
        bound = (oracle.log_prob(points.reshape(-1, 2), sde.eps).reshape(64, -1) + offset).mean(0)
        diff = bound - log_pk
        se = float(diff.std()) / math.sqrt(diff.numel())
        assert float(diff.mean()) < 3 * se, correction
        if correction == "gaussian":  # tight up to the small Jensen gap of dequantization
            assert float(diff.mean()) > -0.05


def test_bad_discrete_input(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    k = torch.tensor([[3.0, 4.0], [31.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="outside the declared range"):
        ss.log_likelihood(oracle, sde, k + 1, quantization=QUANT)
    with pytest.raises(ValueError, match="outside the declared range"):
        ss.log_likelihood(oracle, sde, k - 4, quantization=QUANT)
    with pytest.raises(ValueError, match="integer bin"):
        ss.log_likelihood(oracle, sde, k + 0.5, quantization=QUANT)
    with pytest.raises(ValueError, match="non-finite"):
        ss.log_likelihood(oracle, sde, k * float("nan"), quantization=QUANT)
    with pytest.raises(ValueError, match="shape"):
        ss.log_likelihood(oracle, sde, k[0], quantization=QUANT)
    with pytest.raises(ValueError, match="num_bins"):
        ss.Quantization(num_bins=1)
    with pytest.raises(ValueError, match="low < high"):
        ss.Quantization(256, 1.0, -1.0)


def test_integer_dtype_and_8bit_jacobian(gmm2d):
    """uint8 data: computed in the default float dtype; log-Jacobian D log(2/256) for [-1, 1]."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    k = torch.tensor([[100, 140], [128, 60]], dtype=torch.uint8)
    res = ss.log_likelihood(
        oracle, sde, k, quantization=ss.Quantization(), integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3)
    )
    assert res.logp.dtype == torch.get_default_dtype()
    torch.testing.assert_close(res.offset, torch.full((2,), 2 * math.log(2 / 256)))
