"""The analytic first step (``ss.sampling.analytic_first_step``) against the exact Gaussian-mixture oracle."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.sampling import AnalyticFirstStep, analytic_first_step


def _problem(dim: int = 8):
    """An anisotropic mixture with non-zero means (where ``D(x_T, T) = 0`` would be wrong)."""
    g = torch.Generator().manual_seed(0)
    k = 3
    means = torch.randn(k, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
    eig = torch.logspace(math.log10(3e-4), math.log10(0.5), dim, dtype=torch.float64)
    covs = q @ torch.diag_embed(eig.expand(k, dim)) @ q.transpose(-1, -2)
    gmm = ss.GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs)
    sde = ss.VPSDE()
    return ss.AnalyticScore(gmm, sde), sde


def _afs(oracle, dim: int = 8) -> AnalyticFirstStep:
    return analytic_first_step(oracle, (dim,), generator=torch.Generator().manual_seed(5), pilot=512)


def test_mean_is_the_denoiser_at_T_within_its_spread() -> None:
    oracle, sde = _problem()
    afs = _afs(oracle)
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = oracle.denoise(x, torch.full((256,), sde.T, dtype=torch.float64))
    got = afs.denoise(x, sde.T)
    # The posterior mean at T hardly depends on x_T: the stored mean is within 5 % of its scale
    # (the RMS of D is about the data mean's, ~1), far closer than D = 0 would be.
    err = float((got.double() - exact).pow(2).mean().sqrt())
    scale = float(exact.pow(2).mean().sqrt())
    assert err < 0.05 * scale, (err, scale)
    # Elsewhere it is the model's own prediction (same arithmetic: equal up to float64 rounding).
    t = torch.full((256,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(afs.denoise(x, t), oracle.denoise(x, t), rtol=1e-12, atol=1e-12)


def test_nfe_counts_only_network_evaluations_and_is_deterministic() -> None:
    oracle, _ = _problem()
    afs = _afs(oracle)
    x_T = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    for method, opts in (("unipc", {"order": 3}), ("deis", {}), ("dpm_solver++_2m", {})):
        a = ss.sample(afs, x_T=x_T, method=method, steps=6, t_end=1e-3, denoise=False, **opts)
        b = ss.sample(afs, x_T=x_T, method=method, steps=6, t_end=1e-3, denoise=False, **opts)
        assert a.nfe == 5, (method, a.nfe)
        assert torch.equal(a.x, b.x)  # the same code run twice


def test_six_steps_at_five_nfe_beat_five_steps() -> None:
    """The point of it: the free first step buys a sixth step at NFE 5 (here 0.14 against 0.18)."""
    oracle, _ = _problem()
    afs = _afs(oracle)
    x_T = torch.randn(256, 8, generator=torch.Generator().manual_seed(3))
    ref = ss.sample(
        oracle, x_T=x_T.double(), method="dopri5", steps=1, t_end=1e-3, denoise=False, rtol=1e-9, atol=1e-9
    ).x

    def rms(model, steps: int) -> tuple[float, int]:
        out = ss.sample(
            model, x_T=x_T, method="unipc", steps=steps, grid="uniform", t_end=1e-3, denoise=False, order=3
        )
        return float((out.x.double() - ref).pow(2).mean().sqrt()), out.nfe

    plain, nfe_plain = rms(oracle, 5)
    with_afs, nfe_afs = rms(afs, 6)
    assert nfe_plain == nfe_afs == 5
    assert with_afs < 0.9 * plain, (with_afs, plain)


def test_bad_inputs() -> None:
    oracle, sde = _problem()
    with pytest.raises(TypeError, match=r"explicit torch\.Generator"):
        analytic_first_step(oracle, (8,), generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pilot must be"):
        analytic_first_step(oracle, (8,), generator=torch.Generator(), pilot=0)
    afs = _afs(oracle)
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="does not take labels"):
        afs(x, torch.full((4,), sde.T), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        afs(torch.randn(4, 3), torch.full((4,), sde.T))
    assert afs.evaluations(sde.T) == 0 and afs.evaluations(0.5) == 1
