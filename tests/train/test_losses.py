"""Training objectives: DSM (the exact score minimises it), SMLD / DDPM / flow matching, and
importance-sampled t (Song et al. 2021c)."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.flow.bound import dsm_nll_bound
from scoresde.train.losses import (
    OBJECTIVES,
    DDPMLoss,
    DSMLoss,
    FlowMatchingLoss,
    SMLDLoss,
    ddpm_loss,
    ddpm_times,
    dsm_loss,
    flow_matching_loss,
    importance_time,
    make_objective,
    sample_time_importance,
    smld_loss,
    smld_sigmas,
)
from scoresde.train.times import lognormal_time


class PerturbedOracle(ss.ScoreFunction):
    """The exact score plus a fixed smooth perturbation."""

    def __init__(self, oracle: ss.AnalyticScore, delta: float) -> None:
        super().__init__(oracle.sde, "score")
        self.oracle, self.delta = oracle, delta

    def forward(self, x, t, y=None):
        return self.oracle.score(x, t) + self.delta * torch.sin(x)


@pytest.mark.parametrize("weighting", ["sigma2", "likelihood", "edm"])
def test_exact_score_has_lowest_loss(sde: ss.SDE, gmm2d: ss.GaussianMixture, weighting: str) -> None:
    oracle = ss.AnalyticScore(gmm2d, sde)
    g = torch.Generator().manual_seed(0)
    n = 50_000
    x0 = gmm2d.sample(n, g)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=g, dtype=torch.float64).clamp_min(0.01)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = ss.dsm_loss(oracle, x0, weighting, t=t, noise=noise)
    for delta in (0.05, -0.05, 0.2):
        worse = ss.dsm_loss(PerturbedOracle(oracle, delta), x0, weighting, t=t, noise=noise)
        # Paired comparison on the same (x0, t, noise): the difference is the (positive)
        # expected squared score error plus a zero-mean cross term; check it beats 4 SE.
        diff = worse.per_sample - exact.per_sample
        assert float(diff.mean()) > 4 * float(diff.std() / n**0.5)


def test_sigma2_weighting_is_eps_mse(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x0 = gmm2d.sample(64, torch.Generator().manual_seed(0))
    t = torch.full((64,), 0.5, dtype=torch.float64)
    noise = torch.randn_like(x0)
    out = ss.dsm_loss(oracle, x0, "sigma2", t=t, noise=noise)
    eps = oracle.eps(sde.perturb(x0, t, noise), t)
    torch.testing.assert_close(out.per_sample, ((eps - noise) ** 2).sum(1))


@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_edm_weighting_is_the_unit_variance_target_mse(gmm2d: ss.GaussianMixture, sigma_data: float) -> None:
    # EDM's lambda(sigma) on the denoiser's error (Karras et al. 2022, Eq. 8) is the epsilon-MSE
    # times 1 + sigma_hat^2 / sigma_data^2; for sigma_data = 1 under VP it is the v-MSE.
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    model = PerturbedOracle(oracle, 0.1)
    model.sigma_data = sigma_data
    g = torch.Generator().manual_seed(0)
    x0 = gmm2d.sample(64, g)
    t = 0.02 + 0.96 * torch.rand(64, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    out = ss.dsm_loss(model, x0, "edm", t=t, noise=noise)
    s, sigma = sde.marginal(t)
    x_t = sde.perturb(x0, t, noise)
    d = (x_t - sigma[:, None] * model.eps(x_t, t)) / s[:, None]  # the model's denoiser
    sh = sigma / s
    lam = (sh**2 + sigma_data**2) / (sh * sigma_data) ** 2
    torch.testing.assert_close(out.per_sample, lam * ((d - x0) ** 2).sum(1), rtol=1e-10, atol=0)
    if sigma_data == 1.0:
        v = s[:, None] * model.eps(x_t, t) - sigma[:, None] * d
        v_true = s[:, None] * noise - sigma[:, None] * x0
        torch.testing.assert_close(out.per_sample, ((v - v_true) ** 2).sum(1), rtol=1e-10, atol=0)


@pytest.mark.parametrize("sde", [ss.VPSDE(), ss.VESDE(sigma_min=0.01, sigma_max=50.0), ss.CosineVPSDE()])
def test_lognormal_times_give_lognormal_noise_levels(sde: ss.SDE) -> None:
    # Karras et al. 2022, Table 1: ln sigma_hat ~ N(p_mean, p_std^2), clipped to the SDE's range.
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = lognormal_time(sde, u, p_mean=-0.5, p_std=0.8)
    assert t.dtype == torch.float64 and float(t.min()) >= sde.eps and float(t.max()) <= sde.T
    log_sigma = torch.log(sde.sigma_hat(t))
    lo, hi = (
        float(torch.log(sde.sigma_hat(torch.tensor(sde.eps, dtype=torch.float64)))),
        float(torch.log(sde.sigma_hat(torch.tensor(sde.T, dtype=torch.float64)))),
    )
    inside = (log_sigma > lo + 1e-6) & (log_sigma < hi - 1e-6)
    assert float(inside.double().mean()) > 0.99  # these ranges cut off under 1% of the normal
    # The quantiles of the noise level are the normal's: exact up to the inversion's precision.
    for q in (0.1, 0.5, 0.9):
        expected = -0.5 + 0.8 * math.sqrt(2) * float(
            torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64))
        )
        got = float(
            torch.log(sde.sigma_hat(lognormal_time(sde, torch.tensor([q], dtype=torch.float64), -0.5, 0.8)))
        )
        assert abs(got - expected) < 1e-6
    # Monotone in u: a larger u gives a noisier time.
    grid = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert bool((lognormal_time(sde, grid).diff() > 0).all())


def test_time_sampling_errors() -> None:
    with pytest.raises(ValueError, match="unknown time_sampling"):
        DSMLoss(time_sampling="beta")
    with pytest.raises(ValueError, match="importance sampling"):
        DSMLoss("likelihood", True, "lognormal")
    with pytest.raises(ValueError, match="importance sampling"):
        ss.dsm_loss(
            ss.AnalyticScore(ss.GaussianMixture.ring(k=4), ss.VPSDE()),
            torch.zeros(4, 2),
            "edm",
            importance=True,
        )
    with pytest.raises(ValueError, match="p_std > 0"):
        DSMLoss(time_sampling="lognormal", p_std=0.0)
    with pytest.raises(ValueError, match="unknown time option"):
        make_objective("dsm", time_sampling="lognormal", time_options={"p_men": 0.0})
    with pytest.raises(ValueError, match="lognormal' only"):
        make_objective("dsm", time_options={"p_mean": 0.0})
    with pytest.raises(ValueError, match="dsm loss only"):
        make_objective("ddpm", time_sampling="lognormal")
    assert make_objective("dsm", "edm", time_sampling="lognormal", time_options={"p_std": 2}) == DSMLoss(
        "edm", False, "lognormal", -1.2, 2.0
    )


def test_loss_is_differentiable_and_rejects_bad_input() -> None:
    sde = ss.VPSDE()
    model = ss.ScoreModel(ss.MLP(2, hidden=16, depth=1), sde)
    x0 = torch.randn(8, 2)
    out = ss.dsm_loss(model, x0, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="unknown weighting"):
        ss.dsm_loss(model, x0, "uniform")
    with pytest.raises(ValueError, match="non-finite"):
        ss.dsm_loss(model, torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, \*D\)"):
        ss.dsm_loss(model, torch.randn(8))
    with pytest.raises(ValueError, match=r"MLP expects x of shape \(B, 2\)"):
        ss.dsm_loss(model, torch.randn(8, 3))


class Shifted(ss.ScoreFunction):
    """The exact model plus a fixed smooth perturbation of its prediction."""

    def __init__(self, oracle: ss.AnalyticScore, kind: str, delta: float) -> None:
        super().__init__(oracle.sde, kind)
        self.oracle, self.kind, self.delta = oracle, kind, delta

    def forward(self, x, t, y=None):
        return self.oracle.predict(self.kind, x, t) + self.delta * torch.sin(x)


def _beats(exact, worse, n: int) -> bool:
    diff = worse.per_sample - exact.per_sample
    return float(diff.mean()) > 4 * float(diff.std() / math.sqrt(n))


@pytest.mark.parametrize("sde", [ss.VPSDE(), ss.VESDE(sigma_min=0.01, sigma_max=10.0), ss.StraightSDE()])
def test_importance_time_follows_its_cdf(sde: ss.SDE) -> None:
    """Empirical CDF of t ~ p(t) ∝ g^2/sigma^2 against the closed form (KS < 1.63/sqrt(n), 1% level)."""
    n = 20_000
    t = sample_time_importance(sde, n, torch.Generator().manual_seed(0), dtype=torch.float64).sort().values
    lam = sde.lambda_t
    cdf = (lam(torch.tensor(sde.eps, dtype=torch.float64)) - lam(t)) / (
        lam(torch.tensor(sde.eps, dtype=torch.float64)) - lam(torch.tensor(sde.T, dtype=torch.float64))
    )
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((cdf - emp).abs().max()) < 1.63 / math.sqrt(n)
    assert float(t.min()) >= sde.eps and float(t.max()) <= sde.T


def test_importance_density_is_g2_over_sigma2() -> None:
    """d CDF / dt matches g^2 / (sigma^2 Z) by finite differences (VP SDE)."""
    sde = ss.VPSDE()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    lam = sde.lambda_t
    z = 2 * float(
        lam(torch.tensor(sde.eps, dtype=torch.float64)) - lam(torch.tensor(sde.T, dtype=torch.float64))
    )
    dens = -2 * (lam(t + h) - lam(t - h)) / (2 * h) / z
    _, sigma = sde.marginal(t)
    torch.testing.assert_close(dens, sde.diffusion(t) ** 2 / sigma**2 / z, rtol=1e-5, atol=0)
    torch.testing.assert_close(importance_time(sde, torch.tensor([0.0, 1.0])), torch.tensor([sde.eps, sde.T]))


def test_importance_sampling_is_unbiased_and_reduces_variance(gmm2d: ss.GaussianMixture) -> None:
    """Likelihood-weighted DSM of the exact score: same mean with uniform and importance t, lower variance."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    n = 40_000
    g = torch.Generator().manual_seed(0)
    x0 = gmm2d.sample(n, g)
    uni = dsm_loss(oracle, x0, "likelihood", generator=g)
    imp = dsm_loss(oracle, x0, "likelihood", generator=g, importance=True)
    se = math.sqrt(float(uni.per_sample.var()) / n + float(imp.per_sample.var()) / n)
    assert abs(float(uni.loss) - float(imp.loss)) < 4 * se
    assert float(imp.per_sample.var()) < 0.2 * float(uni.per_sample.var())


def test_smld_levels_and_exact_score_minimises(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    sigmas = smld_sigmas(0.01, 10.0, 10)
    torch.testing.assert_close(sigmas[0], torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(
        sigmas[1:] / sigmas[:-1], torch.full((9,), 1000 ** (-1 / 9), dtype=torch.float64)
    )
    oracle = ss.AnalyticScore(gmm2d, sde)
    n = 40_000
    g = torch.Generator().manual_seed(1)
    x0 = gmm2d.sample(n, g)
    index = torch.randint(0, 10, (n,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = smld_loss(oracle, x0, sigmas=sigmas, index=index, noise=noise)
    # The network is queried where the marginal noise level equals sigma_i (Song & Ermon 2019).
    torch.testing.assert_close(sde.sigma_hat(exact.t), sigmas[index], rtol=1e-6, atol=0)
    for delta in (0.05, -0.1):
        worse = smld_loss(Shifted(oracle, "score", delta), x0, sigmas=sigmas, index=index, noise=noise)
        assert _beats(exact, worse, n)
    with pytest.raises(ValueError, match="noise levels"):
        smld_loss(oracle, x0[:4], sigmas=torch.tensor([100.0]))


def test_ddpm_times_match_ddpm_betas_and_exact_eps_minimises(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.VPSDE()
    # DDPM's linear betas 1e-4..0.02 (N = 1000) are the VP SDE on t_i = i / N (Song et al. 2021, App. B).
    t = ddpm_times(sde, betas=torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    grid = ddpm_times(sde, 1000)
    torch.testing.assert_close(grid, torch.arange(1, 1001, dtype=torch.float64) / 1000)
    assert float((t - grid).abs().max()) < 5e-3
    oracle = ss.AnalyticScore(gmm2d, sde)
    n = 40_000
    g = torch.Generator().manual_seed(2)
    x0 = gmm2d.sample(n, g)
    index = torch.randint(0, 1000, (n,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = ddpm_loss(oracle, x0, index=index, noise=noise)
    assert _beats(exact, ddpm_loss(Shifted(oracle, "eps", 0.05), x0, index=index, noise=noise), n)


def test_flow_matching_target_and_exact_velocity_minimises(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.StraightSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    n = 40_000
    g = torch.Generator().manual_seed(3)
    x0 = gmm2d.sample(n, g)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = flow_matching_loss(oracle, x0, t=t, noise=noise)
    # Straight path: the regression target is n - x0 (Lipman et al. 2023; Liu et al. 2023).
    x_t = (1 - t)[:, None] * x0 + t[:, None] * noise
    v = oracle.velocity(x_t, t)
    torch.testing.assert_close(exact.per_sample, ((v - (noise - x0)) ** 2).sum(1))
    assert _beats(exact, flow_matching_loss(Shifted(oracle, "velocity", 0.05), x0, t=t, noise=noise), n)


@pytest.mark.parametrize(
    ("name", "options", "sde", "prediction"),
    [
        ("dsm", {}, ss.VPSDE(), "eps"),
        ("dsm", {"weighting": "likelihood", "importance": True}, ss.VPSDE(), "eps"),
        ("dsm", {"weighting": "edm"}, ss.VPSDE(), "v"),
        ("dsm", {"time_sampling": "lognormal"}, ss.VPSDE(), "v"),
        ("smld", {}, ss.VESDE(sigma_min=0.01, sigma_max=5.0), "eps"),
        ("ddpm", {}, ss.VPSDE(), "eps"),
        ("flow_matching", {}, ss.StraightSDE(), "velocity"),
    ],
)
def test_each_objective_decreases_on_a_tiny_problem(name, options, sde, prediction, gmm2d) -> None:
    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(2, hidden=32, depth=2), sde, prediction=prediction)
    objective = make_objective(name, **options)
    data = gmm2d.sample(2048, torch.Generator().manual_seed(4)).float()
    ge = torch.Generator().manual_seed(5)
    u_eval, noise_eval = torch.rand(2048, generator=ge), torch.randn(data.shape, generator=ge)

    def held() -> float:
        with torch.no_grad():
            return float(objective(model, data, None, u_eval, noise_eval).loss)

    before = held()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(6)
    for _ in range(120):
        idx = torch.randint(0, 2048, (128,), generator=g)
        out = objective(
            model, data[idx], None, torch.rand(128, generator=g), torch.randn(128, 2, generator=g)
        )
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    # The exact score attains the objective's floor; training must close most of the gap to it
    # (a plain ratio to the initial loss would depend on how large the irreducible part is).
    with torch.no_grad():
        floor = float(
            objective(ss.AnalyticScore(gmm2d, sde), data.double(), None, u_eval, noise_eval.double()).loss
        )
    assert held() - floor < 0.6 * (before - floor)


def test_objective_errors() -> None:
    assert set(OBJECTIVES) == {"dsm", "smld", "ddpm", "flow_matching"}
    with pytest.raises(ValueError, match="unknown loss"):
        make_objective("score_matching")
    with pytest.raises(ValueError, match="dsm loss only"):
        make_objective("ddpm", importance=True)
    with pytest.raises(ValueError, match="betas"):
        ddpm_times(ss.VPSDE(), betas=torch.tensor([0.5, 1.5]))


@pytest.mark.parametrize("sde", [ss.VPSDE(eps=1e-5), ss.SubVPSDE(eps=1e-5)], ids=["vp", "subvp"])
def test_nll_bound_of_exact_score_is_the_entropy(sde: ss.SDE, gmm2d: ss.GaussianMixture) -> None:
    """Song et al. 2021c, Thm. 3: with the true score the mean bound is H(p) + KL(p_T || pi) ~ H(p)."""
    g = torch.Generator().manual_seed(7)
    n = 20_000
    x0 = gmm2d.sample(n, g)
    oracle = ss.AnalyticScore(gmm2d, sde)
    bound = dsm_nll_bound(oracle, x0, num_samples=4, generator=g)
    entropy = float(-gmm2d.log_prob(x0).mean())
    se = float(bound.std()) / math.sqrt(n)
    assert abs(float(bound.mean()) - entropy) < 4 * se + 0.01
    g2 = torch.Generator().manual_seed(7)
    gmm2d.sample(n, g2)  # same draws of (t, n) for a paired comparison
    worse = dsm_nll_bound(Shifted(oracle, "eps", 0.3), x0, num_samples=4, generator=g2)
    assert _beats(types_ns(bound), types_ns(worse), n)


def types_ns(per_sample):
    """Wrap a tensor so that ``_beats`` can read ``.per_sample``."""
    from types import SimpleNamespace

    return SimpleNamespace(per_sample=per_sample)


class NaNModel(ss.ScoreFunction):
    """A model whose every output is NaN."""

    def __init__(self, sde: ss.SDE) -> None:
        super().__init__(sde, "eps")

    def forward(self, x, t, y=None):
        return torch.full_like(x, float("nan"))


@pytest.mark.parametrize(
    ("loss", "sde"),
    [
        (ss.dsm_loss, ss.VPSDE()),
        (ss.smld_loss, ss.VESDE(sigma_min=0.01, sigma_max=5.0)),
        (ss.ddpm_loss, ss.VPSDE()),
        (ss.flow_matching_loss, ss.StraightSDE()),
    ],
)
def test_a_model_returning_nan_raises_non_finite_error(loss, sde) -> None:
    """Issue 24: the losses raise ``NonFiniteError`` for such a model, as the samplers do."""
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteError, match=f"{loss.__name__}: the model output stopped being finite"):
        loss(NaNModel(sde), x0, generator=torch.Generator().manual_seed(1))
    # The trainer's objects do not check (no per-step device sync); its guard skips such steps.
    u, noise = torch.rand(4), torch.randn(4, 2)
    assert torch.isnan(make_objective("dsm")(NaNModel(ss.VPSDE()), x0, None, u, noise).loss)


def test_loss_objects_carry_their_parameters() -> None:
    assert make_objective("dsm", "likelihood", True) == DSMLoss("likelihood", True)
    assert make_objective("smld") == SMLDLoss(10) and make_objective("ddpm", num_scales=50) == DDPMLoss(50)
    assert make_objective("flow_matching") == FlowMatchingLoss()
    with pytest.raises(ValueError, match="num_scales must be >= 2"):
        SMLDLoss(1)
    with pytest.raises(ValueError, match="num_steps must be >= 2"):
        DDPMLoss(1)
    with pytest.raises(ValueError, match="unknown weighting"):
        DSMLoss("sigma")
