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

:func:`dps` is the sampler behind ``scoresde.sample(..., method="dps", operator=A, y_obs=y)``;
:func:`scoresde.guidance.dps_sample` is the same run with the measurement as arguments.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from scoresde._core.checks import check_state_finite
from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.predictors import ancestral_posterior, check_variance
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["Measurement", "dps"]


@runtime_checkable
class Measurement(Protocol):
    """What DPS needs of the measurement ``A``: :class:`scoresde.guidance.LinearOperator` is one.

    Declared here, below :mod:`scoresde.guidance` (which builds on sampling), so that this
    sampler never imports guidance.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``A x``: ``(B, *in_shape) -> (B, *out_shape)``."""
        ...

    def match_observations(self, y_obs: Tensor | None, x: Tensor) -> Tensor:
        """``y_obs`` checked and batched like ``x`` (one observation may serve the batch); a
        missing ``y_obs`` (``None``) raises."""
        ...


def _check_measurement(operator: object) -> Measurement:
    if isinstance(operator, Tensor) or not isinstance(operator, Measurement):
        raise TypeError(f"operator must be a LinearOperator, got {type(operator).__name__}")
    return operator


def _residual_step(
    model: ScoreFunction,
    operator: Measurement,
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


def dps(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    operator: Measurement | None = None,
    y_obs: Tensor | None = None,
    zeta: float = 1.0,
    variance: str = "posterior",
) -> Tensor:
    """DPS from ``x`` at ``ts[0]`` through ``ts`` given ``y_obs = A x + noise`` (Chung et al. 2023, Alg. 1).

    Args:
        model, sde, x, ts, noise, y, callback: the uniform sampler signature
            (:class:`~scoresde.sampling.types.SamplerFn`).
        operator: the measurement ``A`` (a :class:`~scoresde.guidance.LinearOperator`:
            :class:`~scoresde.guidance.Inpainting`, ...); required.
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch; required.
        zeta: Chung et al.'s step size ``zeta'`` (``zeta_i = zeta' / ||y - A x0_hat||``); 0 gives
            unconditional ancestral sampling.  The default 1 is their order of magnitude for
            256 x 256 images; since each correction has length about ``zeta``, the final residual
            settles near ``2 zeta``, so small problems want less (the values measured for the
            8 x 8 digits are in docs/guidance.md).
        variance: the ancestral step's variance (``posterior`` or ``transition``).

    Returns:
        The samples at ``ts[-1]`` (one network evaluation and one backward pass per step).

    Raises:
        TypeError: ``operator`` is not a ``LinearOperator``.
        ValueError: bad ``y_obs``, ``zeta`` or ``variance``, or samples that stop being finite.
    """
    operator = _check_measurement(operator)
    y_obs = operator.match_observations(y_obs, x)
    if not (float(zeta) >= 0 and float(zeta) < float("inf")):
        raise ValueError(f"zeta must be finite and >= 0, got {zeta}")
    check_variance(variance)
    n = len(ts) - 1
    for i in range(n):
        t, t_next = ts[i], ts[i + 1]
        t_b = t.to(x.dtype).expand(x.shape[0])
        x0, direction = _residual_step(model, operator, y_obs, x, t_b, y)
        # The unconditional ancestral step with the same x0_hat (posterior of the forward chain).
        mean, var = ancestral_posterior(sde, x, x0, t, t_next, variance)
        # The correction along the normalised residual gradient (Chung et al. 2023, Alg. 1, line 7).
        x = mean + var**0.5 * noise(x) - float(zeta) * direction
        check_state_finite(x, "DPS samples", f"step {i + 1} of {n}", t, f"lower zeta (now {zeta})")
        if callback is not None:
            callback(i, t_next, x)
    return x
