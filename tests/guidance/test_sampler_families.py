"""Guidance wrappers with every sampler family: exact oracle, class-conditional reproduction.

One fast check per family (second-order ODE: ``heun``; multistep exponential integrator:
``dpm_solver++_2m``; ancestral DDPM: ``ancestral``; predictor-corrector: ``pc``): exact
classifier guidance at scale 1 and classifier-free guidance at ``w = 0`` with the exact class
scores both target ``p(x | y)``.  Tolerances: with n = 1500 samples per class the Monte-Carlo
error of a mean is about 0.3 / sqrt(1500) = 0.008 (largest class std 0.32) and of a covariance
entry about 0.004; the bounds below leave room for the discretisation error at these step
counts.  Also: projection conditioning (``conditional_sample``) with a multistep solver, which
restarts after each projection.
"""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.guidance import (
    AnalyticClassifier,
    ClassConditionalScore,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Inpainting,
    class_mixture,
    compare_to_mixture,
    conditional_sample,
)

F64 = torch.float64

FAMILIES = {
    # method: (steps, grid, options)
    "heun": (25, "edm", {}),
    "dpm_solver++_2m": (20, "logsnr", {}),
    "ancestral": (200, "uniform", {}),
    "pc": (100, "uniform", {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16}),
}


def _check_classes(gmm: ss.GaussianMixture, x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> None:
    for k in classes:
        err = compare_to_mixture(class_mixture(gmm, k), x[y == k])
        assert err.means < 0.04 and err.covs < 0.015, (k, err)


@pytest.mark.parametrize("method", sorted(FAMILIES))
def test_exact_classifier_guidance_with_each_family(gmm2d: ss.GaussianMixture, method: str) -> None:
    steps, grid, options = FAMILIES[method]
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    guided = ClassifierGuidance(oracle, AnalyticClassifier(oracle), scale=1.0)
    y = torch.tensor([0, 2]).repeat_interleave(1500)
    res = ss.sample(
        guided, shape=(3000, 2), method=method, steps=steps, grid=grid, seed=0, y=y, dtype=F64, **options
    )
    assert torch.isfinite(res.x).all()
    _check_classes(gmm2d, res.x, y, [0, 2])


@pytest.mark.parametrize("method", sorted(FAMILIES))
def test_cfg_at_zero_weight_with_each_family(gmm2d: ss.GaussianMixture, method: str) -> None:
    steps, grid, options = FAMILIES[method]
    plain = ClassConditionalScore(gmm2d, ss.VPSDE())
    cfg = ClassifierFreeGuidance(plain, scale=0.0, null_label=3)
    y = torch.tensor([1, 2]).repeat_interleave(1500)
    kw = {"shape": (3000, 2), "method": method, "steps": steps, "grid": grid, "seed": 0, "y": y, "dtype": F64}
    res = ss.sample(cfg, **kw, **options)
    ref = ss.sample(plain, **kw, **options)
    assert res.nfe == 2 * ref.nfe  # a conditional and an unconditional evaluation per model call
    # w = 0 is the conditional score itself: the same samples up to round-off...
    torch.testing.assert_close(res.x, ref.x, atol=1e-9, rtol=1e-9)
    # ...which reproduce each class.
    _check_classes(gmm2d, res.x, y, [1, 2])


def test_conditional_sample_restarts_multistep_solvers() -> None:
    """``conditional_sample`` runs the sampler one grid interval at a time (projection after each
    step invalidates a multistep solver's history), so ``dpm_solver++_2m`` takes its first-order
    start step every time: exactly DDIM (DPM-Solver++(1) = DDIM, Lu et al. 2022b, Sec. 4)."""
    g = torch.Generator().manual_seed(0)
    prior = ss.GaussianMixture.random(6, 2, eig_min=0.05, eig_max=0.3, generator=g)
    op = Inpainting(torch.tensor([True, False, True, False, False, True]))
    y_obs = op(prior.sample(1, generator=g))
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    kw = {"shape": (200, 6), "steps": 15, "grid": "logsnr", "seed": 3, "dtype": F64}
    multi = conditional_sample(oracle, op, y_obs, method="dpm_solver++_2m", **kw)
    ddim = conditional_sample(oracle, op, y_obs, method="ddim", **kw)
    torch.testing.assert_close(multi.x, ddim.x, atol=1e-8, rtol=1e-8)
    assert multi.nfe == ddim.nfe == 16
    # Second-order single-step solvers keep their order inside each interval.
    heun = conditional_sample(oracle, op, y_obs, method="heun", **kw)
    assert torch.isfinite(heun.x).all() and heun.nfe > multi.nfe
    torch.testing.assert_close(op(heun.x), y_obs.expand(200, 3))
