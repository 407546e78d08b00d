"""The exact oracles: Gaussian mixtures, perturbed scores, the funnel."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss


@pytest.mark.parametrize("t", [None, 0.01, 0.3, 0.7, 1.0])
def test_score_is_gradient_of_log_density(sde: ss.SDE, gmm2d: ss.GaussianMixture, t) -> None:
    """AnalyticScore.score equals autograd of AnalyticScore.log_prob, near eps and T included."""
    t = sde.eps if t is None else t
    oracle = ss.AnalyticScore(gmm2d, sde)
    s, _ = sde.marginal(torch.tensor(t, dtype=torch.float64))
    x = (s * gmm2d.sample(64, torch.Generator().manual_seed(0))).requires_grad_(True)
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x.detach().requires_grad_(True)
    lp = oracle.log_prob(x, t)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    torch.testing.assert_close(oracle.score(x.detach(), t), grad, rtol=1e-7, atol=1e-7)


def test_log_prob_matches_torch_distributions(gmm2d: ss.GaussianMixture) -> None:
    x = torch.randn(32, 2, dtype=torch.float64)
    comps = torch.distributions.MultivariateNormal(gmm2d.means, gmm2d.covs)
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gmm2d.weights), comps)
    torch.testing.assert_close(gmm2d.log_prob(x), mix.log_prob(x))


def test_perturbed_density_is_the_convolution(sde: ss.SDE, gmm2d: ss.GaussianMixture) -> None:
    t = torch.tensor(0.35, dtype=torch.float64)
    s, sigma = sde.marginal(t)
    oracle = ss.AnalyticScore(gmm2d, sde)
    covs = s**2 * gmm2d.covs + sigma**2 * torch.eye(2, dtype=torch.float64)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(gmm2d.weights),
        torch.distributions.MultivariateNormal(s * gmm2d.means, covs),
    )
    x = torch.randn(32, 2, dtype=torch.float64)
    torch.testing.assert_close(oracle.log_prob(x, t), mix.log_prob(x))


def test_sample_moments(gmm2d: ss.GaussianMixture) -> None:
    x, labels = gmm2d.sample(200_000, torch.Generator().manual_seed(0), return_labels=True)
    freq = torch.bincount(labels, minlength=3).double() / len(labels)
    torch.testing.assert_close(freq, gmm2d.weights, atol=5e-3, rtol=0)
    for k in range(3):
        xk = x[labels == k]
        torch.testing.assert_close(xk.mean(0), gmm2d.means[k], atol=5e-3, rtol=0)
        torch.testing.assert_close(torch.cov(xk.T), gmm2d.covs[k], atol=3e-3, rtol=0)


def test_denoiser_is_posterior_mean_monte_carlo(gmm2d: ss.GaussianMixture) -> None:
    """E[x0 | x_t] by importance weighting samples of x0 agrees with the closed form."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    t = torch.tensor(0.3, dtype=torch.float64)
    s, sigma = sde.marginal(t)
    x0 = gmm2d.sample(400_000, torch.Generator().manual_seed(3))
    xt = torch.tensor([[0.2, 0.3]], dtype=torch.float64)
    logw = -0.5 * ((xt - s * x0) ** 2).sum(1) / sigma**2
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * x0).sum(0)
    torch.testing.assert_close(oracle.denoise(xt, t)[0], mc, atol=5e-3, rtol=0)


def test_image_shaped_inputs(gmm2d: ss.GaussianMixture) -> None:
    gmm = ss.GaussianMixture([1.0, 1.0], torch.randn(2, 8, dtype=torch.float64), 0.1)
    oracle = ss.AnalyticScore(gmm, ss.VPSDE())
    x = torch.randn(4, 2, 2, 2, dtype=torch.float64)
    out = oracle.score(x, 0.5)
    assert out.shape == x.shape
    torch.testing.assert_close(out.reshape(4, 8), oracle.score(x.reshape(4, 8), 0.5))
    with pytest.raises(ValueError, match="mixture has dimension 8"):
        oracle.score(torch.randn(4, 3, dtype=torch.float64), 0.5)


def test_random_mixture_spectrum() -> None:
    gmm = ss.GaussianMixture.random(
        16, 4, eig_min=1e-4, eig_max=0.25, generator=torch.Generator().manual_seed(0)
    )
    assert gmm.dim == 16 and gmm.n_components == 4
    assert float(gmm.evals.min()) == pytest.approx(1e-4, rel=1e-6)
    assert float(gmm.evals.max()) == pytest.approx(0.25, rel=1e-6)


def test_bad_mixtures() -> None:
    with pytest.raises(ValueError, match=r"means must have shape \(K, D\)"):
        ss.GaussianMixture([1.0], [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="weights must have shape"):
        ss.GaussianMixture([1.0, 1.0], [[0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="covs must be"):
        ss.GaussianMixture([1.0], [[0.0, 0.0]], torch.ones(3, 3))
    with pytest.raises(ValueError, match="positive semi-definite"):
        ss.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, -1.0]]])
    with pytest.raises(ValueError, match="non-finite"):
        ss.GaussianMixture([1.0], [[0.0, float("nan")]], 1.0)


def test_funnel_score_and_sampling() -> None:
    f = ss.Funnel(dim=3, scale=1.5)
    x = f.sample(50, torch.Generator().manual_seed(0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(f.log_prob(x).sum(), x)
    torch.testing.assert_close(f.score(x.detach()), grad)
    big = f.sample(200_000, torch.Generator().manual_seed(1))
    assert abs(float(big[:, 0].std()) - 1.5) < 0.02
    # x_i | v has variance exp(v): E[x_i^2] = E[exp(v)] = exp(scale^2 / 2).
    assert abs(float((big[:, 1] ** 2).mean()) / torch.exp(torch.tensor(1.125)) - 1) < 0.05
    with pytest.raises(ValueError, match="dim >= 2"):
        ss.Funnel(dim=1)
