"""VP SDEs from noise schedules (tabulated ``alphas_cumprod``, continuous cosine) and the VE geometric kernel.

Definitions (VP identity, derivatives, log-SNR inverse, exact table values), checkpoint-style
config round trips, and exact oracles: the Gaussian-mixture oracle under these SDEs gives
samplers their declared orders and ``log_likelihood`` the exact density.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from tests.sampling.test_ode import ODE_METHODS, ORDER_STEPS, smooth_mixture

MULTISTEP = {"dpm_solver++_2m", "dpm_solver++_3m", "unipc"}

SCHEDULE_SDES = {
    "discrete_linear": lambda: ss.DiscreteVPSDE.from_schedule("linear"),
    "discrete_cos": lambda: ss.DiscreteVPSDE.from_schedule("squaredcos_cap_v2"),
    "cosine": lambda: ss.CosineVPSDE(),
}


@pytest.mark.parametrize("name", list(SCHEDULE_SDES))
def test_vp_definitions(name: str) -> None:
    sde = SCHEDULE_SDES[name]()
    t = torch.linspace(sde.eps, sde.T, 257, dtype=torch.float64)[1:-1] + 1e-4  # off the knots
    s, sigma = sde.marginal(t)
    torch.testing.assert_close(s**2 + sigma**2, torch.ones_like(s))
    # ds/dt and dsigma/dt from f and g against central differences.
    h = 1e-7
    ds, dsig = sde.marginal_derivatives(t)
    s_p, sig_p = sde.marginal(t + h)
    s_m, sig_m = sde.marginal(t - h)
    torch.testing.assert_close(ds, (s_p - s_m) / (2 * h), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dsig, (sig_p - sig_m) / (2 * h), rtol=1e-5, atol=1e-7)
    # lambda is decreasing and t_of_lambda inverts it.
    lam = sde.lambda_t(t)
    assert bool((lam[1:] < lam[:-1]).all())
    torch.testing.assert_close(sde.t_of_lambda(lam), t, rtol=0, atol=1e-12)
    assert sde.prior_std() == 1.0 and float(sde.marginal(torch.tensor(sde.T))[0]) < 1e-2


def test_discrete_table_is_exact_and_interpolation_linear_in_log_alpha() -> None:
    betas = ss.make_betas("linear", 1000)
    sde = ss.DiscreteVPSDE.from_betas(betas)
    abar = torch.cumprod(1 - betas, 0)
    n = torch.arange(1000)
    t_n = sde.time_of_timestep(n)
    # Bit equality: + and / are correctly rounded (IEEE 754) on every CPU, and it is the same formula.
    torch.testing.assert_close(t_n, (n + 1).double() / 1000, rtol=0, atol=0)
    torch.testing.assert_close(sde.marginal(t_n)[0] ** 2, abar, rtol=1e-13, atol=0)
    torch.testing.assert_close(sde.timestep(t_n), n.double())
    # Halfway between two knots log s is the mean of the knots' (DPM-Solver's 'discrete' schedule).
    mid = (t_n[:-1] + t_n[1:]) / 2
    torch.testing.assert_close(torch.log(sde.marginal(mid)[0]), 0.25 * (abar[:-1].log() + abar[1:].log()))
    # beta(t) between knots n-1 and n is -N log(1 - beta_n); t = 0 is the clean data.
    torch.testing.assert_close(sde.beta(mid), -1000 * torch.log1p(-betas[1:]))
    assert sde.marginal(torch.tensor(0.0, dtype=torch.float64)) == (1.0, 0.0)
    assert sde.eps == 1e-3 and sde.T == 1.0


def test_paper_ddpm_betas_are_the_vp_sde_discretisation() -> None:
    """Song et al. 2021, App. B: beta_i = beta_bar_i / N, the DDPM chain whose limit is VPSDE."""
    betas = ss.paper_ddpm_betas(0.1, 20.0, 1000)
    assert float(betas[0]) == pytest.approx(1e-4) and float(betas[-1]) == pytest.approx(2e-2)
    vp = ss.VPSDE()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    # log prod (1 - beta_i) = -B(t) + O(1/N): the gap in log s halves when N doubles.
    gaps = []
    for n in (1000, 2000):
        sde = ss.DiscreteVPSDE.from_betas(ss.paper_ddpm_betas(0.1, 20.0, n))
        gaps.append((sde.log_alpha(t) - torch.log(vp.marginal(t)[0])).abs().max())
    assert float(gaps[0]) < 0.05
    assert float(gaps[0] / gaps[1]) == pytest.approx(2.0, rel=0.05)


def test_config_round_trips_through_make_sde() -> None:
    for sde in (
        ss.DiscreteVPSDE.from_schedule("scaled_linear", 50, 8.5e-4, 1.2e-2, eps=1e-5),
        ss.CosineVPSDE(offset=0.01, eps=1e-4),
        ss.VESDE(0.01, 50.0, kernel="geometric"),
    ):
        again = ss.make_sde(sde.short_name, **sde.config())
        assert again.config() == sde.config()
        t = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)
        torch.testing.assert_close(again.marginal(t), sde.marginal(t))


def test_bad_schedules() -> None:
    with pytest.raises(ValueError, match="strictly decreasing"):
        ss.DiscreteVPSDE([0.9, 0.95])
    # A final 0 is zero terminal SNR, supported since issue 23 (s(T) = 0, sigma(T) = 1); a 0 before
    # the end still is not.
    s, sigma = ss.DiscreteVPSDE([0.9, 0.0]).marginal(torch.tensor([1.0]))
    assert float(s) == 0.0 and float(sigma) == 1.0
    with pytest.raises(ValueError, match="only the last entry may be 0: zero terminal SNR"):
        ss.DiscreteVPSDE([0.9, 0.0, 0.0])
    with pytest.raises(ValueError, match="unknown beta schedule"):
        ss.make_betas("sigmoid")
    with pytest.raises(ValueError, match="0 < T < 1"):
        ss.CosineVPSDE(T=1.0)
    with pytest.raises(ValueError, match="unknown VE kernel"):
        ss.VESDE(kernel="smld")
    with pytest.raises(ValueError, match="needs an SDE with a timestep table"):
        ss.ScoreModel(torch.nn.Identity(), ss.VPSDE(), time_input="timestep")


def test_ve_geometric_kernel_is_the_papers_noise_level() -> None:
    sde = ss.VESDE(0.01, 50.0, kernel="geometric")
    exact = ss.VESDE(0.01, 50.0)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    torch.testing.assert_close(sde.marginal(t)[1], 0.01 * (5000.0**t))
    torch.testing.assert_close(sde.diffusion(t), exact.diffusion(t))  # same SDE, other kernel
    torch.testing.assert_close(sde.t_of_lambda(sde.lambda_t(t)), t)
    # Its kernel is the exact one for data already carrying sigma_min noise.
    _, var_exact = exact.marginal(t)
    torch.testing.assert_close(sde.marginal(t)[1] ** 2, var_exact**2 + 0.01**2)


def test_time_inputs_map_t_to_the_network_input() -> None:
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, t):
            seen["t"] = t
            return torch.zeros_like(x)

    disc = ss.DiscreteVPSDE.from_schedule("linear", 100)
    x = torch.zeros(3, 2)
    t = torch.tensor([0.5, 0.506, 1.0])  # timesteps 49, 49.6, 99 (float32 times)
    cases = [
        (disc, "timestep", {}, torch.tensor([49.0, 49.6, 99.0])),
        (disc, "timestep_nearest", {}, torch.tensor([49.0, 50.0, 99.0])),
        (ss.VPSDE(), "scaled_t", {"time_scale": 999.0}, 999.0 * t),
        (ss.VPSDE(), "t", {}, t),
    ]
    for sde, kind, kw, want in cases:
        model = ss.ScoreModel(Probe(), sde, time_input=kind, **kw)
        model.eps(x, t)
        torch.testing.assert_close(seen["t"], want, rtol=1e-6, atol=1e-4 if kind == "timestep" else 0)
        assert ss.ScoreModel(Probe(), sde, **model.config()).config() == model.config()
    # Exactly the integer at the table's times, whatever float32 did to t.
    model = ss.ScoreModel(Probe(), disc, time_input="timestep")
    model.eps(x, disc.time_of_timestep(torch.tensor([0, 37, 99])).float())
    assert torch.equal(seen["t"], torch.tensor([0.0, 37.0, 99.0]))
    ve = ss.VESDE(0.01, 50.0, kernel="geometric")
    ss.ScoreModel(Probe(), ve, time_input="sigma").eps(x, t)
    torch.testing.assert_close(seen["t"], ve.marginal(t)[1])


def test_checkpoint_restores_schedule_and_time_input(tmp_path) -> None:
    sde = ss.DiscreteVPSDE.from_schedule("linear", 20)
    net = ss.MLP(dim=2)
    model = ss.ScoreModel(net, sde, prediction="v", time_input="timestep")
    ss.save_checkpoint(tmp_path / "c.safetensors", model)
    loaded = ss.load_checkpoint(tmp_path / "c.safetensors").model
    assert loaded.time_input == "timestep" and loaded.sde.config() == sde.config()
    x, t = torch.randn(4, 2), torch.full((4,), 0.37)
    torch.testing.assert_close(loaded.eps(x, t), model.eps(x, t))


# ------------------------------------------------------------------------------------------------ #
# Exact oracles under the new SDEs.
# ------------------------------------------------------------------------------------------------ #
_REFS: dict = {}
T_END = 1e-2


def reference(name: str):
    """``(oracle, x_T, x_ref)``.  The reference solves the probability-flow ODE very accurately: dopri5
    at rtol = atol = 1e-10 for the smooth cosine schedule; for tabulated schedules (``beta(t)`` jumps at
    every knot, which costs an adaptive solver in ``t`` 1e5 steps) UniPC on 2000 log-SNR steps (the ODE
    is smooth in lambda for every VP schedule; its error there is below 1e-8, 1000 times under the
    errors fitted below)."""
    if name not in _REFS:
        sde = SCHEDULE_SDES[name]()
        oracle = ss.AnalyticScore(smooth_mixture(), sde)
        x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        if name == "cosine":
            kw = {"method": "dopri5", "steps": 1, "rtol": 1e-10, "atol": 1e-10}
        else:
            kw = {"method": "unipc", "steps": 2000, "grid": "logsnr", "lower_order_final": False}
        ref = ss.sample(oracle, x_T=x_T, t_end=T_END, denoise=False, **kw)
        _REFS[name] = (oracle, x_T, ref.x)
    return _REFS[name]


def fitted_order(method: str, name: str, steps: list[int]) -> float:
    oracle, x_T, x_ref = reference(name)
    opts = {"lower_order_final": False} if method in MULTISTEP else {}
    errs = []
    for n in steps:
        x = ss.sample(
            oracle, x_T=x_T, method=method, steps=n, grid="logsnr", t_end=T_END, denoise=False, **opts
        ).x
        errs.append(float((x - x_ref).pow(2).mean().sqrt()))
    lx = torch.log(torch.tensor(steps, dtype=torch.float64))
    ly = torch.log(torch.tensor(errs, dtype=torch.float64))
    lx = lx - lx.mean()
    return -float((lx * (ly - ly.mean())).sum() / (lx**2).sum())


@pytest.mark.parametrize("name", ["discrete_linear", "cosine"])
@pytest.mark.parametrize("method", ODE_METHODS)
def test_order_of_convergence_under_schedules(method: str, name: str) -> None:
    """The solvers keep their declared orders (fitted slope within 0.3) under tabulated and cosine SDEs."""
    slope = fitted_order(method, name, ORDER_STEPS[method])
    assert abs(slope - ss.SAMPLERS[method].order) <= 0.3, f"{method} on {name}: slope {slope:.2f}"


@pytest.mark.parametrize("name", list(SCHEDULE_SDES))
def test_log_likelihood_matches_exact_density(name: str, gmm2d: ss.GaussianMixture) -> None:
    """``log_likelihood`` equals the mixture's exact ``log p_eps`` to 1e-4 nats.

    Integrated in ``log sigma`` (``time_variable="log_sigma"``): under a tabulated schedule the ODE's
    drift in ``t`` jumps at each of the 1000 knots, which an adaptive solver in ``t`` does not resolve
    at these tolerances (measured 1e-3 to 3e-3 nats off); in ``log sigma`` every VP schedule gives the
    same smooth ODE.
    """
    sde = SCHEDULE_SDES[name]()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(16, generator=torch.Generator().manual_seed(3)).double()
    res = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.AdaptiveIntegrator(rtol=1e-6, atol=1e-6),
        options=ss.LikelihoodOptions(
            time_variable="log_sigma", prior_logp=lambda z: oracle.log_prob(z, sde.T)
        ),
    )
    err = (res.logp - oracle.log_prob(x, sde.eps)).abs().max()
    assert float(err) <= 1e-4
    assert math.isfinite(float(res.bpd.mean())) if res.bpd is not None else True


def test_paper_likelihood_eps_is_a_named_option(gmm2d: ss.GaussianMixture) -> None:
    """Starting at the paper's eps = 1e-5 instead of timestep 0 (t = 1e-3) changes the density evaluated."""
    assert ss.PAPER_LIKELIHOOD_EPS == 1e-5
    base = ss.DiscreteVPSDE.from_schedule("linear")
    paper = ss.DiscreteVPSDE.from_schedule("linear", eps=ss.PAPER_LIKELIHOOD_EPS)
    x = gmm2d.sample(8, generator=torch.Generator().manual_seed(4)).double()
    lp = {}
    for key, sde in (("base", base), ("paper", paper)):
        oracle = ss.AnalyticScore(gmm2d, sde)
        res = ss.log_likelihood(
            oracle,
            sde,
            x,
            options=ss.LikelihoodOptions(
                time_variable="log_sigma", prior_logp=lambda z, o=oracle, s=sde: o.log_prob(z, s.T)
            ),
        )
        torch.testing.assert_close(res.logp, oracle.log_prob(x, sde.eps), rtol=0, atol=1e-3)
        lp[key] = res.logp
    assert float((lp["paper"] - lp["base"]).mean()) > 0  # a sharper density at the smaller time
