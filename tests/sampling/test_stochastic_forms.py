"""The stochastic steps written once for every linear SDE equal the paper's SMLD / DDPM forms."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.sampling.correctors import annealed_langevin_corrector, langevin_alpha, langevin_corrector
from scoresde.sampling.predictors import ancestral_step, reverse_diffusion_step
from scoresde.sampling.stochastic import dpm_solver_pp_2m_sde, heun_sde


class FixedNoise:
    """A noise source that returns pre-drawn tensors in order (to compare updates exactly)."""

    def __init__(self, *zs: torch.Tensor) -> None:
        self.zs = list(zs)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        return self.zs.pop(0)


T1, T0 = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.55, dtype=torch.float64)


def _setup(gmm2d, sde):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, generator=g, dtype=torch.float64)
    z = torch.randn(7, 2, generator=g, dtype=torch.float64)
    oracle = ss.AnalyticScore(gmm2d, sde)
    return oracle, x, z, oracle.score(x, T1)


def _ve_sigma2(sde: ss.VESDE, t: torch.Tensor) -> float:
    # SMLD noise scale (Song et al. 2021, App. B): sigma_min^2 ((sigma_max/sigma_min)^(2t) - 1).
    return sde.sigma_min**2 * ((sde.sigma_max / sde.sigma_min) ** (2 * float(t)) - 1)


def _vp_beta_abar(sde: ss.VPSDE, t: torch.Tensor, t_prev: torch.Tensor) -> tuple[float, float, float]:
    # DDPM: abar_i = exp(-int_0^t beta), beta_i = 1 - abar_i / abar_{i-1} (Ho et al. 2020).
    abar = math.exp(-float(sde.int_beta(t)))
    abar_prev = math.exp(-float(sde.int_beta(t_prev)))
    return 1 - abar / abar_prev, abar, abar_prev


def test_ancestral_ve_is_smld_update(gmm2d) -> None:
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    oracle, x, z, score = _setup(gmm2d, sde)
    s2, s2_prev = _ve_sigma2(sde, T1), _ve_sigma2(sde, T0)
    # Song et al. 2021, App. F, Eq. 47 (SMLD ancestral sampling).
    expected = x + (s2 - s2_prev) * score + math.sqrt(s2_prev * (s2 - s2_prev) / s2) * z
    got = ancestral_step(oracle, sde, x, T1, T0, noise=FixedNoise(z))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variance", ["transition", "posterior"])
def test_ancestral_vp_is_ddpm_update(gmm2d, variance: str) -> None:
    sde = ss.VPSDE()
    oracle, x, z, score = _setup(gmm2d, sde)
    beta, abar, abar_prev = _vp_beta_abar(sde, T1, T0)
    # Ho et al. 2020, Alg. 2: x_{t-1} = (x_t - beta / sqrt(1 - abar) eps) / sqrt(alpha) + sigma z,
    # with eps = -sqrt(1 - abar) score; sigma^2 = beta (the paper's App. F VP form) or beta_tilde.
    eps = -math.sqrt(1 - abar) * score
    mean = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
    var = beta if variance == "transition" else (1 - abar_prev) / (1 - abar) * beta
    expected = mean + math.sqrt(var) * z
    got = ancestral_step(oracle, sde, x, T1, T0, noise=FixedNoise(z), variance=variance)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # The App. F form written with the score: (x + beta s) / sqrt(1 - beta).
    torch.testing.assert_close(mean, (x + beta * score) / math.sqrt(1 - beta), rtol=1e-12, atol=1e-12)


def test_reverse_diffusion_ve_and_vp_forms(gmm2d) -> None:
    ve = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    oracle, x, z, score = _setup(gmm2d, ve)
    d2 = _ve_sigma2(ve, T1) - _ve_sigma2(ve, T0)
    # Song et al. 2021, App. E: x_i = x_{i+1} + (sigma_{i+1}^2 - sigma_i^2) s + sqrt(...) z.
    expected = x + d2 * score + math.sqrt(d2) * z
    torch.testing.assert_close(reverse_diffusion_step(oracle, ve, x, T1, T0, noise=FixedNoise(z)), expected)
    vp = ss.VPSDE()
    oracle, x, z, score = _setup(gmm2d, vp)
    beta, _, _ = _vp_beta_abar(vp, T1, T0)
    # App. E, VP: x_i = (2 - sqrt(1 - beta_{i+1})) x_{i+1} + beta_{i+1} s + sqrt(beta_{i+1}) z.
    expected = (2 - math.sqrt(1 - beta)) * x + beta * score + math.sqrt(beta) * z
    torch.testing.assert_close(reverse_diffusion_step(oracle, vp, x, T1, T0, noise=FixedNoise(z)), expected)


def test_langevin_corrector_alpha_and_step(gmm2d) -> None:
    ts = torch.stack([T1, T0])
    assert langevin_alpha(ss.VESDE(), ts, 1) == pytest.approx(1.0)
    beta, _, _ = _vp_beta_abar(ss.VPSDE(), T1, T0)
    assert langevin_alpha(ss.VPSDE(), ts, 1) == pytest.approx(1 - beta, rel=1e-12)  # Alg. 5
    sde = ss.VPSDE()
    oracle, x, z, _ = _setup(gmm2d, sde)
    score = oracle.score(x, T0)
    for norms in ("sample", "batch"):
        sn, zn = score.norm(dim=1), z.norm(dim=1)
        if norms == "batch":
            sn, zn = sn.mean(), zn.mean()
        eps = (2 * (1 - beta) * (0.2 * zn / sn) ** 2).reshape(-1, 1)
        expected = x + eps * score + torch.sqrt(2 * eps) * z
        got = langevin_corrector(oracle, sde, x, ts, 1, noise=FixedNoise(z), snr=0.2, norms=norms)
        torch.testing.assert_close(got, expected)


def test_ald_step_size(gmm2d) -> None:
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    oracle, x, z, _ = _setup(gmm2d, sde)
    ts = torch.tensor([0.8, 0.6, 0.1], dtype=torch.float64)
    alpha = 1e-3 * _ve_sigma2(sde, ts[1]) / _ve_sigma2(sde, ts[2])  # Song & Ermon 2019, Alg. 1
    expected = x + alpha * oracle.score(x, ts[1]) + math.sqrt(2 * alpha) * z
    got = annealed_langevin_corrector(oracle, sde, x, ts, 1, noise=FixedNoise(z), step_lr=1e-3)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "sde", [ss.VESDE(sigma_max=10.0), ss.VPSDE(), ss.SubVPSDE()], ids=["ve", "vp", "subvp"]
)
def test_dpm_solver_sde_first_step_is_ancestral_posterior(gmm2d, sde) -> None:
    oracle, x, z, _ = _setup(gmm2d, sde)
    ts = torch.stack([T1, T0])
    got = dpm_solver_pp_2m_sde(oracle, sde, x, ts, noise=FixedNoise(z))
    expected = ancestral_step(oracle, sde, x, T1, T0, noise=FixedNoise(z), variance="posterior")
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_edm_stochastic_without_churn_is_heun_in_sigma_hat(gmm2d) -> None:
    """S_churn = 0: EDM Alg. 1 in y = x / s with sigma_hat, written out here for the VP SDE."""
    sde = ss.VPSDE()
    oracle, x, _, _ = _setup(gmm2d, sde)
    ts = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    y = x / sde.marginal(ts[0])[0]
    for i in range(2):
        sh, sh_n = sde.sigma_hat(ts[i]), sde.sigma_hat(ts[i + 1])
        d = (y - oracle.denoise(y * sde.marginal(ts[i])[0], ts[i])) / sh
        y_e = y + (sh_n - sh) * d
        d2 = (y_e - oracle.denoise(y_e * sde.marginal(ts[i + 1])[0], ts[i + 1])) / sh_n
        y = y + (sh_n - sh) * (d + d2) / 2
    expected = y * sde.marginal(ts[-1])[0]
    got = heun_sde(oracle, sde, x, ts, noise=FixedNoise(), S_churn=0.0)
    torch.testing.assert_close(got, expected)


def test_edm_stochastic_churn_adds_noise_within_range(gmm2d) -> None:
    """With churn, exactly the steps whose sigma_hat lies in [S_tmin, S_tmax] draw noise."""
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    oracle, x, _, _ = _setup(gmm2d, sde)
    ts = ss.time_grid(sde, 6)
    sh = sde.sigma_hat(ts[:-1])
    draws = []

    def counting_noise(like: torch.Tensor) -> torch.Tensor:
        draws.append(1)
        return torch.zeros_like(like)

    heun_sde(oracle, sde, x, ts, noise=counting_noise, S_churn=3.0, S_tmin=0.05, S_tmax=2.0)
    assert len(draws) == int(((sh >= 0.05) & (sh <= 2.0)).sum())
