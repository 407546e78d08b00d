"""Twisted SMC posterior sampling against closed-form Gaussian and exact mixture posteriors."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.guidance import Inpainting, MatrixOperator, compare_to_mixture, condition, smc_sample
from scoresde.guidance.smc import effective_sample_size, systematic_resample
from scoresde.models.base import ScoreFunction
from scoresde.sampling.grids import time_grid
from scoresde.sampling.predictors import ancestral_posterior


def _chain_marginal(oracle, sde, ts: torch.Tensor) -> tuple[float, float]:
    """Mean and variance of the ancestral chain's end point for 1-D Gaussian data, in closed form:
    the denoiser is affine and each kernel is ``N(p + q x, v)``, so the law stays Gaussian."""
    mean, var = 0.0, sde.prior_std() ** 2
    for i in range(len(ts) - 1):
        t, t1 = ts[i], ts[i + 1]
        pts = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        x0 = oracle.denoise(pts, t.expand(2))
        mu, v = ancestral_posterior(sde, pts, x0, t, t1, "posterior")
        p, q = float(mu[0, 0]), float(mu[1, 0] - mu[0, 0])
        mean, var = p + q * mean, q * q * var + v
    return mean, var


@pytest.mark.parametrize("proposal", ["tds", "tds-pigdm", "mcgdiff"])
@pytest.mark.parametrize("noise_std", [0.3, 0.0])
def test_gaussian_weights_evidence_and_ess(noise_std: float, proposal: str) -> None:
    """1-D Gaussian prior, y = 2 x + noise: the SMC evidence estimate (the product of mean
    weights, unbiased only if every weight is right), weighted posterior mean and variance match
    the closed form of the same chain, and the reported ESS is the ESS of the reported weights.
    ``tds``: the default (Tweedie-covariance) twist; ``tds-pigdm``: the PiGDM twist."""
    twist = {"twist_cov": "pigdm"} if proposal == "tds-pigdm" else {}
    proposal = proposal.split("-")[0]
    sde = ss.VPSDE()
    m0, v0, a, y_val = 0.3, 0.5, 2.0, 1.5
    oracle = ss.AnalyticScore(ss.GaussianMixture([1.0], [[m0]], v0), sde)
    op = MatrixOperator(torch.tensor([[a]], dtype=torch.float64))
    steps, b, k = 30, 32, 128
    res = smc_sample(
        oracle,
        op,
        torch.tensor([[y_val]], dtype=torch.float64),
        shape=(b, 1),
        noise_std=noise_std,
        particles=k,
        steps=steps,
        seed=0,
        dtype=torch.float64,
        proposal=proposal,
        **twist,
    )
    mc, vc = _chain_marginal(oracle, sde, res.times)
    c = a * a * vc + noise_std**2
    log_z = -0.5 * (y_val - a * mc) ** 2 / c - 0.5 * math.log(2 * math.pi * c)
    post_mean = mc + vc * a * (y_val - a * mc) / c
    post_var = vc - (vc * a) ** 2 / c
    lz = res.log_evidence
    assert abs(float(lz.mean()) - log_z) < 4 * float(lz.std()) / math.sqrt(b) + 0.01, (lz.mean(), log_z)
    pm = res.posterior_mean()[:, 0]
    assert abs(float(pm.mean()) - post_mean) < 4 * float(pm.std()) / math.sqrt(b) + 1e-6
    w = res.log_weights.exp()
    pv = (w * (res.particles[..., 0] - pm[:, None]) ** 2).sum(1)
    if noise_std > 0:
        assert abs(float(pv.mean()) / post_var - 1) < 0.1
    else:
        # Noise-free: the last step puts every particle on A x = y.
        torch.testing.assert_close(a * res.particles[..., 0], torch.full((b, k), y_val, dtype=torch.float64))
    torch.testing.assert_close(torch.logsumexp(res.log_weights, 1), torch.zeros(b, dtype=torch.float64))
    torch.testing.assert_close(res.ess[-1], effective_sample_size(res.log_weights))
    assert res.ess.shape == (steps, b) and res.resampled.shape == (steps, b)
    assert bool((res.ess >= 1 - 1e-9).all()) and bool((res.ess <= k + 1e-9).all())
    assert res.nfe == steps  # one (batched) evaluation per step but the exact last one, plus the first


def test_systematic_resampling_counts() -> None:
    """Each particle is copied floor or ceil of K w_k times."""
    w = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.05, 0.05, 0.1, 0.8]], dtype=torch.float64)
    for u in (0.01, 0.37, 0.99):
        idx = systematic_resample(w.log(), torch.full((2,), u))
        counts = torch.stack([torch.bincount(r, minlength=4) for r in idx]).double()
        kw = 4 * w
        assert bool(((counts >= kw.floor()) & (counts <= kw.ceil())).all()), (u, counts)


def _posterior_mean_rmse(k: int, proposal: str, noise_std: float) -> float:
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.0, -0.5]], [0.1, 0.05])
    oracle = ss.AnalyticScore(gmm, sde)
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    y_obs = torch.tensor([[0.1]], dtype=torch.float64)
    post = condition(gmm, op, y_obs, noise_std)
    exact = (post.weights[:, None] * post.means).sum(0)
    res = smc_sample(
        oracle,
        op,
        y_obs,
        shape=(24, 2),
        noise_std=noise_std,
        particles=k,
        steps=60,
        grid="logsnr",
        seed=1,
        dtype=torch.float64,
        proposal=proposal,
    )
    return float((res.posterior_mean() - exact).pow(2).sum(1).mean().sqrt())


@pytest.mark.parametrize(("proposal", "noise_std"), [("tds", 0.2), ("tds", 0.0), ("mcgdiff", 0.0)])
def test_error_falls_with_particle_count(proposal: str, noise_std: float) -> None:
    """The weighted posterior mean's error to the exact one (a bimodal posterior) falls from
    K = 4 to K = 64 by more than 2x (about 4x at the 1/sqrt(K) rate)."""
    e4, e64 = _posterior_mean_rmse(4, proposal, noise_std), _posterior_mean_rmse(64, proposal, noise_std)
    assert e64 < 0.5 * e4, (e4, e64)


def _mixture_problem() -> tuple:
    """A 2-D three-component prior observed through y = x_1 + x_2 = -0.5: a bimodal posterior."""
    gmm = ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.1, 0.04, 0.02])
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    return gmm, op, torch.tensor([[-0.5]], dtype=torch.float64)


def _floors(post, n: int, sw, seeds: range) -> tuple[float, float]:
    """Mean mode-weight error and sliced W2 of independent exact posterior sample sets."""
    sets = [post.sample(n, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return (
        sum(compare_to_mixture(post, f).weights for f in sets) / len(sets),
        sum(sw(f) for f in sets) / len(sets),
    )


@pytest.mark.parametrize("proposal", ["tds", "mcgdiff"])
def test_noise_free_mixture_posterior_near_the_mc_floor(proposal: str) -> None:
    """Noise-free y = A x on a 2-D mixture: 400 independent SMC draws (K = 64, 100 log-SNR steps)
    are on A x = y and have mode-weight error and sliced W2 to exact posterior samples within
    2.5x the Monte-Carlo floor (the same statistics of 400 exact samples, mean of 5 sets); the
    prior's own (unconditioned) samples miss by far more.  (At K = 16 the mode weights are 2-8x
    the floor: a finite-K bias of the single draw per run, which falls with K.)"""
    sde = ss.VPSDE()
    gmm, op, y_obs = _mixture_problem()
    post = condition(gmm, op, y_obs, 0.0)
    n = 400
    ref = post.sample(n, generator=torch.Generator().manual_seed(100))

    def sw(a: torch.Tensor) -> float:
        return ss.sliced_wasserstein(a, ref, generator=torch.Generator().manual_seed(0))

    floor_w, floor_sw = _floors(post, n, sw, range(1, 6))
    res = smc_sample(
        ss.AnalyticScore(gmm, sde),
        op,
        y_obs,
        shape=(n, 2),
        particles=64,
        steps=100,
        grid="logsnr",
        seed=0,
        dtype=torch.float64,
        proposal=proposal,
    )
    torch.testing.assert_close(op(res.x), y_obs.expand(n, 1))
    assert compare_to_mixture(post, res.x).weights <= 2.5 * floor_w + 1e-3
    assert sw(res.x) <= 2.5 * floor_sw
    prior = gmm.sample(n, generator=torch.Generator().manual_seed(7))
    assert sw(prior) > 5 * floor_sw


def _run_mode_weights(res, post) -> torch.Tensor:
    """The mode weights of a run's single draw, averaged over runs (Rao-Blackwellised: each run's
    weighted particles assigned to posterior components), ``(components,)``."""
    b, k = res.log_weights.shape
    flat = res.particles.reshape(b * k, -1)
    resp = post.perturbed_responsibilities(
        flat, torch.ones(b * k, dtype=flat.dtype), torch.full((b * k,), 1e-3, dtype=flat.dtype)
    )
    onehot = torch.nn.functional.one_hot(resp.argmax(1), post.n_components).to(flat.dtype)
    return (res.log_weights.exp()[..., None] * onehot.reshape(b, k, -1)).sum(1).mean(0)


def test_tweedie_twist_removes_the_mode_weight_bias_of_the_pigdm_twist() -> None:
    """Noise-free inpainting of an 8-D mixture (top row of a 2x4 image known) whose two modes
    agree on the observed pixels, so that their posterior weights (0.18 / 0.82, closed form) are
    decided by their covariances there.  The law of a run's single draw (K = 32, 60 log-SNR
    steps, 300 runs) has mode weights within 0.04 of the exact ones with the default twist (the
    model's Tweedie covariance); with PiGDM's unit-variance covariance it is off by about 0.08
    (the weights must move mass between modes late, docs/bench_guidance_smc.md)."""
    g = torch.Generator().manual_seed(2)
    gmm = ss.GaussianMixture.random(8, 3, eig_min=0.01, eig_max=0.25, generator=g)
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[:, :1] = True
    op = Inpainting(mask)
    means = gmm.means.clone()
    means[1] = means[1] + op.project((means[0] - means[1]).reshape(1, 1, 2, 4)).reshape(-1)
    gmm = ss.GaussianMixture(gmm.weights, means, gmm.covs)
    y_obs = op(means[0].reshape(1, 1, 2, 4))
    post = condition(gmm, op, y_obs, 0.0)
    assert 0.1 < float(post.weights[0]) < 0.3 and float(post.weights[2]) < 1e-6
    oracle = ss.AnalyticScore(gmm, ss.VPSDE())
    kw = {"shape": (300, 1, 2, 4), "particles": 32, "steps": 60, "seed": 0, "dtype": torch.float64}
    err = (_run_mode_weights(smc_sample(oracle, op, y_obs, **kw), post) - post.weights).abs().max()
    assert float(err) < 0.04, err
    res = smc_sample(oracle, op, y_obs, twist_cov="pigdm", **kw)
    assert float((_run_mode_weights(res, post) - post.weights).abs().max()) > 0.06


def test_per_sample_seeds_do_not_depend_on_batch_size() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(ss.GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.1), sde)
    op = MatrixOperator(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    kw = {"noise_std": 0.1, "particles": 8, "steps": 10, "seed": 7, "dtype": torch.float64}
    y2 = torch.tensor([[0.2], [-0.3]], dtype=torch.float64)
    y4 = torch.cat([y2, torch.tensor([[5.0], [0.0]], dtype=torch.float64)])
    r2 = smc_sample(oracle, op, y2, shape=(2, 2), **kw)
    r4 = smc_sample(oracle, op, y4, shape=(4, 2), **kw)
    torch.testing.assert_close(r4.particles[:2], r2.particles)
    torch.testing.assert_close(r4.x[:2], r2.x)


def test_default_grid_is_logsnr() -> None:
    """Without ``grid`` the times are equal steps in log-SNR (the better grid on the exact-mixture
    benchmark, docs/bench_guidance_smc.md), and ``grid="uniform"`` is still honoured."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(ss.GaussianMixture([1.0], [[0.0]], 0.1), sde)
    op = MatrixOperator(torch.tensor([[1.0]], dtype=torch.float64))
    kw = {"shape": (2, 1), "particles": 2, "steps": 7, "seed": 0, "dtype": torch.float64}
    res = smc_sample(oracle, op, torch.tensor([[0.2]], dtype=torch.float64), **kw)
    torch.testing.assert_close(res.times, time_grid(sde, 7, "logsnr"))
    lam = sde.lambda_t(res.times)
    torch.testing.assert_close(lam.diff(), torch.full((7,), float(lam[1] - lam[0]), dtype=torch.float64))
    res = smc_sample(oracle, op, torch.tensor([[0.2]], dtype=torch.float64), grid="uniform", **kw)
    torch.testing.assert_close(res.times, time_grid(sde, 7, "uniform"))


class _BiasedEps(ScoreFunction):
    """The exact noise prediction plus ``0.5 x``: a learned model's error, which the denoiser
    ``(x - sigma eps) / s`` multiplies by ``sigma / s`` (about 150 at ``T`` for the VP SDE)."""

    def __init__(self, oracle: ss.AnalyticScore) -> None:
        super().__init__(oracle.sde, "eps")
        self.oracle = oracle

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.oracle.eps(x, t) + 0.5 * x


def test_drift_clip_keeps_particles_in_range_under_denoiser_error() -> None:
    """With a denoiser that is far off at high noise, the unclipped twisted proposals throw the
    particles out of range (|x| > 1e3, or a non-finite model output); the default clip keeps them
    near the data, on A x = y, with either twist."""
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [0.1, 0.05])
    model = _BiasedEps(ss.AnalyticScore(gmm, sde))
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    y_obs = torch.tensor([[0.3]], dtype=torch.float64)
    for twist in ("pigdm", "tweedie"):
        kw = {"shape": (8, 2), "particles": 4, "steps": 50, "seed": 0, "dtype": torch.float64}
        res = smc_sample(model, op, y_obs, twist_cov=twist, **kw)
        assert bool(torch.isfinite(res.particles).all()) and float(res.particles.abs().max()) < 10
        torch.testing.assert_close(op(res.x), y_obs.expand(8, 1))
        try:  # unclipped: out of range (PiGDM), or on to a non-finite model output (Tweedie)
            wild = smc_sample(model, op, y_obs, twist_cov=twist, drift_clip=math.inf, **kw)
            assert not bool((wild.particles.abs() < 1e3).all()), twist
        except NonFiniteError:
            pass


def test_bad_arguments() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(ss.GaussianMixture([1.0], [[0.0]], 0.1), sde)
    op = MatrixOperator(torch.tensor([[1.0]], dtype=torch.float64))
    y_obs = torch.tensor([[0.0]])
    for kw, match in (
        ({"particles": 0}, "particles"),
        ({"resample_threshold": 1.5}, "resample_threshold"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"twist_var_scale": 0.0}, "twist_var_scale"),
        ({"drift_clip": 0.0}, "drift_clip"),
        ({"twist_cov": "diag"}, "twist_cov"),
    ):
        with pytest.raises(ValueError, match=match):
            smc_sample(oracle, op, y_obs, shape=(1, 1), **kw)
    with pytest.raises(ValueError, match="shape"):
        smc_sample(oracle, op, y_obs)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["2-D", "4-D, random A (2x4)"])
def test_exact_mixture_posterior_within_twice_the_mc_floor(problem: str) -> None:
    """Noisy measurements (s_y = 0.05): with K = 32 particles and 300 steps, 1000 independent SMC
    draws have mode-weight error and sliced W2 to exact posterior samples within 2x the
    Monte-Carlo floor (the same statistics of 1000 exact posterior samples, averaged over 3 seeds).
    Uniform grid (the default is log-SNR); docs/bench_guidance_smc.md has the particles x steps
    trade-off on a log-SNR grid and the two grids side by side."""
    sde = ss.VPSDE()
    g = torch.Generator().manual_seed(0)
    if problem == "2-D":
        gmm = ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.1, 0.04, 0.02])
        op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
        y_obs = torch.tensor([[0.5]], dtype=torch.float64)
    else:
        gmm = ss.GaussianMixture.random(4, 3, eig_min=0.01, eig_max=0.25, generator=g)
        op = MatrixOperator(torch.randn(2, 4, generator=g, dtype=torch.float64))
        y_obs = op(gmm.means[:1])
    s_y, n = 0.05, 1000
    post = condition(gmm, op, y_obs, s_y)
    oracle = ss.AnalyticScore(gmm, sde)
    res = smc_sample(
        oracle,
        op,
        y_obs,
        shape=(n, gmm.dim),
        noise_std=s_y,
        particles=32,
        steps=300,
        grid="uniform",
        seed=0,
        dtype=torch.float64,
    )
    ref = post.sample(n, generator=torch.Generator().manual_seed(100))

    def sw(a: torch.Tensor) -> float:
        return ss.sliced_wasserstein(a, ref, generator=torch.Generator().manual_seed(0))

    floors = [post.sample(n, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    floor_w = sum(compare_to_mixture(post, f).weights for f in floors) / 3
    floor_sw = sum(sw(f) for f in floors) / 3
    assert compare_to_mixture(post, res.x).weights <= 2 * floor_w + 1e-3
    assert sw(res.x) <= 2 * floor_sw


def test_proposal_objects_carry_their_own_options() -> None:
    """A proposal object is the same run as its name plus options; an option of another proposal
    (or one given beside an object) is an error that names it and where it belongs."""
    from scoresde.guidance import MCGdiffProposal, TwistedProposal

    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(ss.GaussianMixture([0.6, 0.4], [[-0.5, 0.2], [0.7, -0.3]], 0.05), sde)
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    y_obs = torch.tensor([[0.3]], dtype=torch.float64)
    kw = {"shape": (2, 2), "particles": 4, "steps": 6, "seed": 0, "dtype": torch.float64}
    by_name = smc_sample(oracle, op, y_obs, proposal="tds", twist_cov="pigdm", drift_clip=2.0, **kw)
    by_obj = smc_sample(oracle, op, y_obs, proposal=TwistedProposal(twist_cov="pigdm", drift_clip=2.0), **kw)
    assert torch.equal(by_name.particles, by_obj.particles) and by_name.nfe == by_obj.nfe
    m1 = smc_sample(oracle, op, y_obs, proposal="mcgdiff", **kw)
    m2 = smc_sample(oracle, op, y_obs, proposal=MCGdiffProposal(), **kw)
    assert torch.equal(m1.particles, m2.particles)
    with pytest.raises(ValueError, match=r"proposal='mcgdiff' does not take twist_cov= .*'tds' only"):
        smc_sample(oracle, op, y_obs, proposal="mcgdiff", twist_cov="pigdm", **kw)
    with pytest.raises(ValueError, match="give them to the TwistedProposal itself"):
        smc_sample(oracle, op, y_obs, proposal=TwistedProposal(), drift_clip=1.0, **kw)
    with pytest.raises(ValueError, match="drift_clip"):
        TwistedProposal(drift_clip=0.0)
    with pytest.raises(TypeError):
        MCGdiffProposal(twist_cov="pigdm")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"smc_sample does not take x_T="):
        smc_sample(oracle, op, y_obs, x_T=torch.zeros(2, 2), **kw)
