"""Probability-flow ODE likelihoods against exact Gaussian-mixture log-densities."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.flow.integrators import make_integrator
from scoresde.flow.likelihood import divergence_exact, divergence_hutchinson, draw_probes

RTOL = ATOL = 1e-5


def _exact_prior(oracle: ss.AnalyticScore, sde: ss.SDE):
    """The exact ``log p_T`` (the SDE's Gaussian prior is only approximately ``p_T``)."""
    return lambda z: oracle.log_prob(z, sde.T)


def _error(oracle, sde, x, integrator=None, time_variable=None) -> tuple[torch.Tensor, ss.LikelihoodResult]:
    res = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=integrator or ss.AdaptiveIntegrator(rtol=RTOL, atol=ATOL),
        options=ss.LikelihoodOptions(time_variable=time_variable, prior_logp=_exact_prior(oracle, sde)),
    )
    return (res.logp - oracle.log_prob(x, sde.eps)).abs(), res


def test_matches_exact_logp_2d(sde, gmm2d):
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(32, generator=torch.Generator().manual_seed(0))
    err, res = _error(oracle, sde, x)
    assert float(err.mean()) <= 1e-4, float(err.mean())
    assert res.logp.dtype == torch.float64 and res.z.shape == x.shape and res.nfe > 0
    torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)


@pytest.mark.parametrize(
    "sde",
    [
        pytest.param(ss.VESDE(sigma_min=0.01, sigma_max=10.0), id="ve", marks=pytest.mark.slow),
        pytest.param(ss.VPSDE(), id="vp"),
        pytest.param(ss.SubVPSDE(), id="subvp", marks=pytest.mark.slow),
    ],
)
def test_matches_exact_logp_16d(sde):
    gmm = ss.GaussianMixture.random(16, 3, eig_min=1e-2, generator=torch.Generator().manual_seed(1))
    oracle = ss.AnalyticScore(gmm, sde)
    x = gmm.sample(12, generator=torch.Generator().manual_seed(2))
    err, _ = _error(oracle, sde, x)
    assert float(err.mean()) <= 1e-4, float(err.mean())


def test_image_shaped_input(gmm2d):
    """Any (B, *D) shape: a 4-D mixture seen as (B, 1, 2, 2) images."""
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture.random(4, 2, eig_min=1e-2, generator=torch.Generator().manual_seed(3))
    oracle = ss.AnalyticScore(gmm, sde)
    x = gmm.sample(4, generator=torch.Generator().manual_seed(4))
    flat = ss.log_likelihood(oracle, sde, x)
    img = ss.log_likelihood(oracle, sde, x.reshape(4, 1, 2, 2))
    assert img.z.shape == (4, 1, 2, 2)
    torch.testing.assert_close(img.logp, flat.logp, rtol=0, atol=1e-8)


def test_log_sigma_clock_same_answer(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(16, generator=torch.Generator().manual_seed(5))
    err, _ = _error(oracle, sde, x, time_variable="log_sigma")
    assert float(err.mean()) <= 1e-4


def test_fixed_step_converges(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(6))
    errs = []
    for steps in (20, 40):
        err, res = _error(oracle, sde, x, ss.FixedStepIntegrator("rk4", steps))
        assert res.nfe == 4 * steps
        errs.append(float(err.mean()))
    # rk4 is 4th order: halving the step divides the error by ~16 once resolved.
    assert errs[0] / errs[1] > 8, errs


def test_sample_alone_equals_sample_in_batch(gmm2d):
    """Per-sample error control: a sample's logp does not depend on its batch (to tolerance)."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(64, generator=torch.Generator().manual_seed(7))
    batch = ss.log_likelihood(oracle, sde, x, integrator=ss.AdaptiveIntegrator(rtol=RTOL, atol=ATOL))
    exact = oracle.log_prob(x, sde.eps)
    for i in (0, 17, 42):
        alone = ss.log_likelihood(
            oracle, sde, x[i : i + 1], integrator=ss.AdaptiveIntegrator(rtol=RTOL, atol=ATOL)
        )
        assert abs(float(alone.logp[0] - batch.logp[i])) < 3e-4
    # ... and every sample of the batch meets the tolerance, not just the batch average.
    prior_gap = batch.prior_logp - oracle.log_prob(batch.z, sde.T)
    assert float((batch.logp - prior_gap - exact).abs().max()) < 3e-4


def test_float32_runs_in_float32(gmm2d):
    sde = ss.SubVPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(8, generator=torch.Generator().manual_seed(8)).float()
    res = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.AdaptiveIntegrator(rtol=1e-4, atol=1e-4),
        options=ss.LikelihoodOptions(prior_logp=_exact_prior(oracle, sde)),
    )
    assert res.logp.dtype == torch.float32 and res.z.dtype == torch.float32
    exact = oracle.log_prob(x.double(), sde.eps)
    assert float((res.logp.double() - exact).abs().max()) < 1e-2


def test_divergence_estimators_on_linear_map():
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    v = x @ a.T
    torch.testing.assert_close(divergence_exact(v, x), torch.trace(a).expand(3))
    probes = draw_probes(x, 20000, "rademacher", torch.Generator().manual_seed(0))
    assert set(probes.unique().tolist()) == {-1.0, 1.0}
    est = divergence_hutchinson(v, x, probes)
    torch.testing.assert_close(est, torch.trace(a).expand(3), atol=0.15, rtol=0)


def _replicated_estimates(probe: str, n: int = 400) -> tuple[torch.Tensor, float]:
    gmm = ss.GaussianMixture.random(6, 3, eig_min=1e-2, generator=torch.Generator().manual_seed(9))
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm, sde)
    x = gmm.sample(1, generator=torch.Generator().manual_seed(10))
    exact = float(ss.log_likelihood(oracle, sde, x).logp[0])
    # One point, n independent probes: each copy in the batch gets its own probe.
    g = torch.Generator().manual_seed(11)
    res = ss.log_likelihood(oracle, sde, x.expand(n, -1), generator=g, divergence=ss.Hutchinson(probe=probe))
    return res.logp, exact


@pytest.mark.slow
def test_hutchinson_unbiased_and_rademacher_lower_variance():
    rad, exact = _replicated_estimates("rademacher")
    gau, _ = _replicated_estimates("gaussian")
    for est in (rad, gau):
        se = float(est.std()) / math.sqrt(est.numel())
        assert abs(float(est.mean()) - exact) < 3 * se, (float(est.mean()), exact, se)
    assert float(rad.var()) < 0.8 * float(gau.var()), (float(rad.var()), float(gau.var()))


def test_hutchinson_probes_are_reproducible(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(12))
    runs = [
        ss.log_likelihood(
            oracle,
            sde,
            x,
            divergence="hutchinson",
            generator=torch.Generator().manual_seed(3),
            integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3),
        )
        for _ in range(2)
    ]
    # Bit equality: the same code run twice on this machine with the same generator seed.
    torch.testing.assert_close(runs[0].logp, runs[1].logp, rtol=0, atol=0)
    probes = draw_probes(x, 2, "gaussian", torch.Generator().manual_seed(3))
    explicit = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3),
        divergence=ss.Hutchinson(probes=probes),
    )
    assert explicit.logp.shape == (4,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (lambda: {"divergence": "trace"}, "unknown divergence"),
        (lambda: {"divergence": ss.Hutchinson(probe="uniform")}, "unknown probe"),
        (lambda: {"divergence": ss.Hutchinson(num_probes=0)}, "num_probes"),
        (lambda: {"integrator": ss.AdaptiveIntegrator(method="rk45")}, "unknown method"),
        (lambda: {"integrator": make_integrator("rk4")}, "needs steps"),
        (lambda: {"integrator": make_integrator("dopri5", steps=10)}, "steps is for fixed-step"),
        (lambda: {"options": ss.LikelihoodOptions(time_variable="sigma")}, "unknown time_variable"),
        (lambda: {"integrator": ss.AdaptiveIntegrator(norm="l1")}, "unknown norm"),
        (lambda: {"options": ss.LikelihoodOptions(eps_correction="exact")}, "unknown eps_correction"),
        (lambda: {"options": ss.LikelihoodOptions(eps_correction="discretized")}, "needs a Quantization"),
        (lambda: {"options": ss.LikelihoodOptions(draws=0)}, "draws"),
        (lambda: {"divergence": ss.Hutchinson(probes=torch.ones(2, 3, 2))}, "probes must have shape"),
        (lambda: {"integrator": ss.AdaptiveIntegrator(rtol=1e-300, atol=1e-300)}, "rtol=1e-300"),
    ],
)
def test_bad_options(gmm2d, kwargs, match):
    """Each bad setting is refused by the object that holds it (built inside ``raises``)."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        ss.log_likelihood(oracle, sde, x, **kwargs())


def test_bad_input(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(0))
    bad = x.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ss.log_likelihood(oracle, sde, bad)
    with pytest.raises(ValueError, match="shape"):
        ss.log_likelihood(oracle, sde, x[0])
    with pytest.raises(ValueError, match="features per sample"):
        ss.log_likelihood(oracle, sde, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="velocity"):
        ss.log_likelihood(lambda x, t: x, sde, x)
    with pytest.raises(ValueError, match="eps > 0"):
        ss.log_likelihood(
            ss.AnalyticScore(gmm2d, ss.VPSDE(eps=0.0)),
            None,
            x,
            options=ss.LikelihoodOptions(time_variable="log_sigma"),
        )
