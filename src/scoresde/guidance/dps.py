"""Diffusion posterior sampling as its paper runs it (Chung et al. 2023, Algorithm 1).

Each step is an unconditional ancestral step from ``x_i`` (the DDPM step for VP, Ho et al.
2020, Alg. 2; the same posterior step for every linear SDE, see
:func:`~scoresde.sampling.predictors.ancestral_step`) followed by a correction along the
gradient of the measurement residual through the Tweedie denoiser:

    x0_hat = E[x_0 | x_i]                      (one network evaluation)
    x'     = ancestral step from x_i with x0_hat
    x_{i-1} = x' - zeta_i grad_{x_i} ||y - A x0_hat(x_i)||^2,    zeta_i = zeta / ||y - A x0_hat||

The step size ``zeta_i`` is Chung et al.'s normalisation (their App. C.2): dividing by the
residual's norm makes the correction's length independent of how far the sample is from the
observation, which breaks the feedback loop that makes the unnormalised score-space version
(:class:`~scoresde.guidance.DPSGuidance`) diverge on imperfect networks, whose denoiser has a
Jacobian of order ``1 / s(t)`` near ``T``.  The residual and its norm are per sample.

Like :class:`~scoresde.guidance.DPSGuidance` this is an approximation of the posterior (it
replaces ``p(x_0 | x_t)`` by a point mass at its mean), and ``zeta`` is a step size, not a
likelihood weight: it is tuned, not derived (Chung et al. use 0.1 to 1 on 256 x 256 images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from scoresde._checks import check_state_finite
from scoresde._utils import append_dims
from scoresde.guidance.operators import LinearOperator
from scoresde.guidance.projection import start_inverse_problem
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.progress import make_progress
from scoresde.sampling.predictors import ancestral_posterior, check_variance
from scoresde.sampling.types import Callback, SampleResult
from scoresde.sde.base import SDE

__all__ = ["dps_sample"]


def _residual_step(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    x: Tensor,
    t: Tensor,
    y: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """``(x0_hat, grad_x ||r||^2 / ||r||)`` per sample, with ``r = y_obs - A x0_hat(x)``."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        x0 = model.denoise(x_in, t, y)
        resid = (y_obs - operator.forward(x0)).reshape(x.shape[0], -1)
        sq = resid.pow(2).sum(1)
        (grad,) = torch.autograd.grad(sq.sum(), x_in)
    norm = sq.detach().sqrt()
    # ||r|| = 0 means the observation is already met: no correction (not 0 / 0).
    scaled = grad / append_dims(norm.clamp_min(torch.finfo(norm.dtype).tiny), x.ndim)
    return x0.detach(), scaled


@torch.no_grad()
def dps_sample(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    *,
    zeta: float = 1.0,
    steps: int = 1000,
    grid: str | Tensor = "uniform",
    variance: str = "posterior",
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool | str = False,
) -> SampleResult:
    """Sample ``x`` given ``y_obs = A x + noise`` by DPS (Chung et al. 2023, Algorithm 1).

    Args:
        model: the unconditional (or, with ``y``, class-conditional) score model.
        operator: the measurement ``A`` (:class:`~scoresde.guidance.Inpainting`, ...).
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        sde: the forward SDE (default ``model.sde``).
        shape: ``(B, *D)`` when ``x_T`` is not given.
        zeta: Chung et al.'s step size ``zeta'`` (``zeta_i = zeta' / ||y - A x0_hat||``); 0 gives
            unconditional ancestral sampling.  The default 1 is their order of magnitude for
            256 x 256 images; since each correction has length about ``zeta``, the final residual
            settles near ``2 zeta``, so small problems want less (the values measured for the
            8 x 8 digits are in docs/guidance.md).
        steps, grid: the time grid from ``T`` to ``eps`` (Chung et al. use 1000 DDPM steps).
        variance: the ancestral step's variance (``posterior`` or ``transition``).
        denoise: return the Tweedie denoiser ``E[x_0 | x_eps]`` of the last state (one more NFE).
        x_T, generator, seed, y, callback, device, dtype, progress: as for :func:`scoresde.sample`.

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult` (one network evaluation and one backward
        pass per step).

    Raises:
        ValueError: bad arguments, or samples that stop being finite (with the step at which).
    """
    if not (float(zeta) >= 0 and float(zeta) < float("inf")):
        raise ValueError(f"zeta must be finite and >= 0, got {zeta}")
    check_variance(variance)
    sde, ts, noise, x, y_obs = start_inverse_problem(
        model, operator, y_obs, sde, shape, steps, grid, x_T, generator, seed, y, device, dtype
    )
    counted = CountingModel(model, label="dps_sample", steps=len(ts) - 1)
    ts_dev = ts.to(x.device)
    bar = make_progress(progress, len(ts) - 1, "dps")
    for i in range(len(ts) - 1):
        t, t_next = ts_dev[i], ts_dev[i + 1]
        t_b = t.to(x.dtype).expand(x.shape[0])
        counted.step = i + 1
        x0, direction = _residual_step(counted, operator, y_obs, x, t_b, y)
        # The unconditional ancestral step with the same x0_hat (posterior of the forward chain).
        mean, var = ancestral_posterior(sde, x, x0, t, t_next, variance)
        x = mean + var**0.5 * noise(x) - float(zeta) * direction
        check_state_finite(x, "DPS samples", f"step {i + 1} of {len(ts) - 1}", t, f"lower zeta (now {zeta})")
        bar.update(1, nfe=counted.nfe)
        if callback is not None:
            callback(i, t_next, x)
    bar.close()
    if denoise:
        counted.step = "the final denoising step"
        x = counted.denoise(x, ts_dev[-1].to(x.dtype).expand(x.shape[0]), y)
    return SampleResult(x=x, nfe=counted.nfe, times=ts)
