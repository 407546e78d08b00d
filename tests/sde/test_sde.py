"""SDE core: marginals against forward simulation, derived quantities, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from tests.conftest import SDE_IDS, all_sdes


def _simulate_forward(sde: ss.SDE, x0: torch.Tensor, t_end: float, steps: int, g: torch.Generator):
    """Euler-Maruyama on the forward SDE from t=0 with a fine grid (float64)."""
    x = x0.clone()
    ts = torch.linspace(0.0, t_end, steps + 1, dtype=torch.float64)
    for i in range(steps):
        dt = float(ts[i + 1] - ts[i])
        t = ts[i].expand(x.shape[0])
        f, G = sde.discretize(x, t, dt)
        x = x + f + G[:, None] * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x


@pytest.mark.parametrize("t_end", [0.1, 0.5, 1.0])
def test_marginal_matches_monte_carlo(sde: ss.SDE, t_end: float) -> None:
    """Mean and variance of simulated x_t match s(t) x0 and sigma(t)^2 (5-sigma MC bounds)."""
    g = torch.Generator().manual_seed(0)
    n = 20_000
    x0 = torch.full((n, 1), 1.5, dtype=torch.float64)
    x = _simulate_forward(sde, x0, t_end, 2000, g)
    s, sigma = sde.marginal(torch.tensor(t_end, dtype=torch.float64))
    mean, var = x.mean(), x.var()
    se_mean = sigma / math.sqrt(n)
    se_var = sigma**2 * math.sqrt(2 / (n - 1))
    # Euler-Maruyama's bias at 2000 steps is far below these bounds.
    assert abs(mean - s * 1.5) < 5 * se_mean + 2e-3 * abs(s * 1.5)
    assert abs(var - sigma**2) < 5 * se_var + 2e-3 * sigma**2


def test_marginal_derivatives_match_finite_differences(sde: ss.SDE) -> None:
    t = torch.linspace(0.05, 0.95, 9, dtype=torch.float64)
    h = 1e-6
    ds, dsig = sde.marginal_derivatives(t)
    s_p, sig_p = sde.marginal(t + h)
    s_m, sig_m = sde.marginal(t - h)
    torch.testing.assert_close(ds, (s_p - s_m) / (2 * h), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(dsig, (sig_p - sig_m) / (2 * h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "sde_", [*all_sdes(), ss.EDMSDE(), ss.StraightSDE()], ids=[*SDE_IDS, "edm", "straight"]
)
def test_lambda_inverse_round_trip(sde_: ss.SDE) -> None:
    t = torch.linspace(sde_.eps, sde_.T, 50, dtype=torch.float64)
    lam = sde_.lambda_t(t)
    assert bool((lam[1:] < lam[:-1]).all()), "lambda must decrease in t"
    torch.testing.assert_close(sde_.t_of_lambda(lam), t, rtol=1e-9, atol=1e-9)
    # log_snr and sigma_hat agree with lambda.
    torch.testing.assert_close(sde_.log_snr(t), 2 * lam)
    torch.testing.assert_close(sde_.sigma_hat(t), torch.exp(-lam))


def test_default_bisection_inverse_agrees_with_closed_form() -> None:
    sde = ss.VPSDE()
    lam = sde.lambda_t(torch.linspace(0.01, 1.0, 11, dtype=torch.float64))
    torch.testing.assert_close(ss.SDE.t_of_lambda(sde, lam), sde.t_of_lambda(lam), rtol=1e-10, atol=1e-10)


def test_transition_composes_to_marginal(sde: ss.SDE) -> None:
    """Chaining exact transitions 0 -> t1 -> t2 gives the marginal at t2."""
    t1, t2 = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    s1, sig1 = sde.marginal(t1)
    a, b = sde.transition(t1, t2)
    s2, sig2 = sde.marginal(t2)
    torch.testing.assert_close(a * s1, s2)
    torch.testing.assert_close(a**2 * sig1**2 + b**2, sig2**2)


def test_vp_transition_is_ddpm_chain() -> None:
    """For the VP SDE, transition(t_{i-1}, t_i) = (sqrt(1 - beta_i), sqrt(beta_i))."""
    sde = ss.VPSDE()
    a, b = sde.transition(torch.tensor(0.4, dtype=torch.float64), torch.tensor(0.41, dtype=torch.float64))
    torch.testing.assert_close(b**2, 1 - a**2)


def test_reverse_drift_and_probability_flow(sde: ss.SDE, gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(16, torch.Generator().manual_seed(1))
    t = torch.full((16,), 0.4, dtype=torch.float64)
    rev = sde.reverse(oracle.score_fn())
    ode = sde.reverse(oracle.score_fn(), probability_flow=True)
    g2 = sde.diffusion(t)[:, None] ** 2
    score = oracle.score(x, t)
    torch.testing.assert_close(rev.drift(x, t), sde.drift(x, t) - g2 * score)
    torch.testing.assert_close(ode.drift(x, t), sde.drift(x, t) - 0.5 * g2 * score)
    assert bool((ode.diffusion(t) == 0).all())
    # The PF-ODE drift equals the model's velocity prediction.
    torch.testing.assert_close(ode.drift(x, t), oracle.velocity(x, t))


def test_any_tensor_shape(sde: ss.SDE) -> None:
    x0 = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    n = torch.randn_like(x0)
    xt = sde.perturb(x0, t, n)
    s, sig = sde.marginal(t)
    torch.testing.assert_close(xt[1], s[1] * x0[1] + sig[1] * n[1])
    assert sde.drift(x0, t).shape == x0.shape
    z = sde.prior_sample((5, 3, 2), generator=torch.Generator().manual_seed(0))
    assert z.shape == (5, 3, 2)
    assert sde.prior_logp(z).shape == (5,)


def test_prior_logp_is_gaussian(sde: ss.SDE) -> None:
    z = torch.randn(7, 3, dtype=torch.float64)
    std = sde.prior_std()
    ref = torch.distributions.Normal(0.0, std).log_prob(z).sum(1)
    torch.testing.assert_close(sde.prior_logp(z), ref)


def test_bad_construction_and_times() -> None:
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        ss.VESDE(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        ss.VPSDE(beta_min=3.0, beta_max=1.0)
    with pytest.raises(ValueError, match="eps must lie"):
        ss.VPSDE(eps=2.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        ss.VPSDE().check_t(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="non-finite"):
        ss.VPSDE().check_t(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="unknown SDE"):
        ss.make_sde("vq")


def test_sdes_know_their_name_equality_and_json_form() -> None:
    from scoresde.sde import SDES, sde_from_dict

    examples = {"discrete": lambda: ss.DiscreteVPSDE.from_schedule("linear")}  # needs its table
    for name, cls in SDES.items():
        sde = examples[name]() if name in examples else cls()
        assert sde.short_name == name
        assert sde_from_dict(sde.to_dict()) == sde
        assert sde_from_dict({"name": name, **sde.config()}) == sde  # the older flat form
        assert hash(sde_from_dict(sde.to_dict())) == hash(sde)
    assert ss.VPSDE(beta_max=20.0) != ss.VPSDE(beta_max=10.0)
    assert ss.VPSDE() != ss.SubVPSDE()
    with pytest.raises(ValueError, match="unknown SDE"):
        sde_from_dict({"name": "nope"})
    with pytest.raises(ValueError, match="bad arguments"):
        sde_from_dict({"name": "vp", "kwargs": {"sigma_max": 3.0}})
