"""Divergence estimators: forward mode equals reverse mode, batched Hutchinson, the control variate."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.flow.divergence import (
    ForwardModeUnsupported,
    GaussianControlVariate,
    divergence_exact,
    hutchinson_terms,
    jvp_divergence,
    velocity_and_divergence,
)
from scoresde.flow.likelihood import divergence_hutchinson, draw_probes


def _backward(f, x):
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = f(xg)
        return v.detach(), divergence_exact(v, xg).detach()


def _oracle(d: int, k: int = 3, seed: int = 0):
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture.random(d, k, eig_min=1e-2, generator=torch.Generator().manual_seed(seed))
    return sde, gmm, ss.AnalyticScore(gmm, sde)


@pytest.mark.parametrize("t", [1e-3, 0.3, 0.9])
def test_forward_mode_equals_backward_on_mixture(t):
    _sde, gmm, oracle = _oracle(6)
    x = gmm.sample(16, generator=torch.Generator().manual_seed(1))
    tt = torch.full((16,), t, dtype=x.dtype)

    def f(z):
        return oracle.velocity(z, tt)

    v_f, d_f = jvp_divergence(f, x)
    v_b, d_b = _backward(f, x)
    torch.testing.assert_close(v_f, v_b, rtol=0, atol=1e-12)
    torch.testing.assert_close(d_f, d_b, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_mode_equals_backward_on_mlp(dtype):
    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(dim=8, hidden=32, depth=2), ss.VPSDE(), prediction="eps").to(dtype).eval()
    x = torch.randn(10, 8, dtype=dtype)
    tt = torch.full((10,), 0.4, dtype=dtype)

    def f(z):
        return model.velocity(z, tt)

    v_f, d_f = jvp_divergence(f, x)
    v_b, d_b = _backward(f, x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(v_f, v_b, rtol=tol, atol=tol)
    torch.testing.assert_close(d_f, d_b, rtol=tol, atol=tol * float(d_b.abs().max()))


class _NoForward(torch.autograd.Function):
    """tanh with a backward formula but no forward-mode (jvp) rule."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


def test_forward_mode_unsupported_is_clear_and_auto_falls_back(monkeypatch):
    x = torch.randn(4, 3, dtype=torch.float64)

    def f(z):
        return _NoForward.apply(z)

    with pytest.raises(ForwardModeUnsupported, match="jacobian='backward'"):
        velocity_and_divergence(f, x, "forward")
    monkeypatch.setattr("scoresde.flow.divergence.FORWARD_MAX_DIM", 64)  # auto would pick forward
    _v, div = velocity_and_divergence(f, x, "auto")
    torch.testing.assert_close(div, (1 - torch.tanh(x) ** 2).sum(1))
    with pytest.raises(ValueError, match="unknown jacobian"):
        velocity_and_divergence(f, x, "reverse")


def test_batched_probes_forward_equals_backward_and_old_api():
    _sde, gmm, oracle = _oracle(5)
    x = gmm.sample(8, generator=torch.Generator().manual_seed(2))
    tt = torch.full((8,), 0.2, dtype=x.dtype)
    probes = draw_probes(x, 7, "rademacher", torch.Generator().manual_seed(3))

    def f(z):
        return oracle.velocity(z, tt)

    _, fwd = hutchinson_terms(f, x, probes, "forward")
    _, bwd = hutchinson_terms(f, x, probes, "backward")
    assert fwd.shape == (7, 8)
    torch.testing.assert_close(fwd, bwd, rtol=1e-12, atol=1e-9)
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        old = divergence_hutchinson(f(xg), xg, probes)
    torch.testing.assert_close(old, bwd.mean(0), rtol=1e-12, atol=1e-9)


def _terms(oracle, sde, x, t, probes, cv=None):
    tt = torch.full((x.shape[0],), t, dtype=x.dtype)
    _, terms = hutchinson_terms(lambda z: oracle.velocity(z, tt), x, probes)
    return terms if cv is None else cv.correct(sde, tt, probes, terms)


def test_control_variate_is_exact_for_gaussian_data():
    """One Gaussian component: the control variate is the model's own Jacobian, zero variance."""
    d = 6
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture.random(d, 1, eig_min=1e-2, generator=torch.Generator().manual_seed(4))
    oracle = ss.AnalyticScore(gmm, sde)
    cv = GaussianControlVariate(gmm.means[0].double(), gmm.covs[0].double())
    x = gmm.sample(5, generator=torch.Generator().manual_seed(5))
    probes = draw_probes(x, 50, "rademacher", torch.Generator().manual_seed(6))
    for t in (1e-3, 0.1, 0.7):
        tt = torch.full((5,), t, dtype=x.dtype)
        _, exact = _backward(lambda z, tt=tt: oracle.velocity(z, tt), x)
        est = _terms(oracle, sde, x, t, probes, cv)
        torch.testing.assert_close(est, exact.expand(50, 5), rtol=1e-9, atol=1e-7)
        torch.testing.assert_close(cv.trace(sde, tt), exact, rtol=1e-9, atol=1e-7)


def _correlated_mixture(d: int = 8, spread: float = 0.3):
    """Three components sharing one correlated covariance, means close together: data whose
    Gaussian fit has most of the off-diagonal structure of the score's Jacobian."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.01 * torch.eye(d, dtype=torch.float64)
    means = spread * torch.randn(3, d, generator=g, dtype=torch.float64)
    gmm = ss.GaussianMixture([0.5, 0.3, 0.2], means, torch.stack([cov] * 3))
    sde = ss.VPSDE()
    return sde, gmm, ss.AnalyticScore(gmm, sde)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_control_variate_unbiased_and_lower_variance(probe):
    """Mixture data, Gaussian fit: the mean over many probes matches the exact divergence and the
    per-probe variance drops at every time."""
    sde, gmm, oracle = _correlated_mixture()
    cv = GaussianControlVariate.fit(gmm.sample(4000, generator=torch.Generator().manual_seed(8)))
    x = gmm.sample(4, generator=torch.Generator().manual_seed(9))
    n = 2000
    probes = draw_probes(x, n, probe, torch.Generator().manual_seed(10))
    for t in (1e-3, 0.05, 0.5):
        tt = torch.full((4,), t, dtype=x.dtype)
        _, exact = _backward(lambda z, tt=tt: oracle.velocity(z, tt), x)
        plain = _terms(oracle, sde, x, t, probes)
        with_cv = _terms(oracle, sde, x, t, probes, cv)
        for est in (plain, with_cv):
            se = est.std(0) / math.sqrt(n)
            assert bool(((est.mean(0) - exact).abs() <= 4 * se + 1e-9).all()), (est.mean(0), exact, se)
        assert bool((with_cv.var(0) < 0.3 * plain.var(0)).all()), (t, with_cv.var(0), plain.var(0))


def test_control_variate_unbiased_on_separated_mixture():
    """Well-separated components: the global Gaussian fit does not describe the local Jacobian,
    so it need not help, but the estimate stays unbiased."""
    sde, gmm, oracle = _oracle(6, k=3, seed=7)
    cv = GaussianControlVariate.fit(gmm.sample(2000, generator=torch.Generator().manual_seed(8)))
    x = gmm.sample(3, generator=torch.Generator().manual_seed(9))
    probes = draw_probes(x, 2000, "rademacher", torch.Generator().manual_seed(10))
    tt = torch.full((3,), 0.05, dtype=x.dtype)
    _, exact = _backward(lambda z: oracle.velocity(z, tt), x)
    est = _terms(oracle, sde, x, 0.05, probes, cv)
    assert bool(((est.mean(0) - exact).abs() <= 4 * est.std(0) / math.sqrt(2000)).all())


def test_control_variate_in_log_likelihood_lowers_probe_spread():
    sde, gmm, oracle = _correlated_mixture()
    x = gmm.sample(16, generator=torch.Generator().manual_seed(11))
    exact = oracle.log_prob(x, sde.eps)
    kw = dict(
        integrator=ss.AdaptiveIntegrator(rtol=1e-4, atol=1e-4),
        options=ss.LikelihoodOptions(prior_logp=lambda z: oracle.log_prob(z, sde.T)),
    )
    g = torch.Generator().manual_seed(12)
    plain = ss.log_likelihood(oracle, sde, x, generator=g, divergence=ss.Hutchinson(16), **kw)
    cv = GaussianControlVariate.fit(gmm.sample(4000, generator=torch.Generator().manual_seed(8)))
    with_cv = ss.log_likelihood(
        oracle,
        sde,
        x,
        generator=torch.Generator().manual_seed(12),
        divergence=ss.Hutchinson(16, control_variate=cv),
        **kw,
    )
    assert plain.logp_probes.shape == (1, 16, 16)
    v_plain, v_cv = plain.logp_probes[0].var(0), with_cv.logp_probes[0].var(0)
    assert float(v_cv.mean()) < 0.1 * float(v_plain.mean()), (float(v_cv.mean()), float(v_plain.mean()))
    for res in (plain, with_cv):  # unbiased: the error of the mean is within its standard error
        err = abs(float((res.logp - exact).mean()))
        assert err < 4 * res.mc_se + 1e-3, (err, res.mc_se)
    fitted = ss.log_likelihood(
        oracle,
        sde,
        x,
        generator=torch.Generator().manual_seed(12),
        divergence=ss.Hutchinson(16, control_variate="gaussian"),
        **kw,
    )
    # Fitted to the 16 points themselves: a noisier covariance, a smaller (but real) gain.
    assert float(fitted.logp_probes[0].var(0).mean()) < 0.6 * float(v_plain.mean())
    with pytest.raises(ValueError, match="unknown control_variate"):
        ss.log_likelihood(oracle, sde, x, divergence=ss.Hutchinson(control_variate="linear"))


def test_forward_jacobian_in_log_likelihood_same_answer(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(8, generator=torch.Generator().manual_seed(13))
    fwd = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.AdaptiveIntegrator(rtol=1e-4, atol=1e-4),
        divergence=ss.Exact(jacobian="forward"),
    )
    bwd = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.AdaptiveIntegrator(rtol=1e-4, atol=1e-4),
        divergence=ss.Exact(jacobian="backward"),
    )
    torch.testing.assert_close(fwd.logp, bwd.logp, rtol=0, atol=1e-9)
    assert fwd.nfe == bwd.nfe
    g = torch.Generator
    hf = ss.log_likelihood(
        oracle,
        sde,
        x,
        generator=g().manual_seed(1),
        divergence=ss.Hutchinson(num_probes=3, jacobian="forward"),
    )
    hb = ss.log_likelihood(
        oracle,
        sde,
        x,
        generator=g().manual_seed(1),
        divergence=ss.Hutchinson(num_probes=3, jacobian="backward"),
    )
    torch.testing.assert_close(hf.logp, hb.logp, rtol=0, atol=1e-8)
