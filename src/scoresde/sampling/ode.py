"""Fixed-step solvers of the probability-flow ODE (Song et al. 2021, Eq. 13): Euler, Heun, DDIM.

Heun and DDIM work in the variables of Karras et al. 2022 (EDM), ``y = x / s(t)`` and
``sigma_hat(t) = sigma(t) / s(t)``: since ``y = x_0 + sigma_hat n``, the probability-flow ODE of
every linear SDE is ``dy / dsigma_hat = eps(x, t)`` (EDM, Eq. 4 with ``s = 1``), so the same code
serves VE, VP, sub-VP, EDM and straight-path SDEs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde._core.tensors import lincomb, scalar
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import fixed_times
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import grid_schedule
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["ddim", "euler", "heun"]


def euler(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Explicit Euler in ``t`` on the probability-flow ODE: ``x_{i+1} = x_i + u(x_i, t_i) dt``.

    ``u = f x - g^2 score / 2`` is the ODE's drift (``model.velocity``).  Order 1.
    """
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    dts = (ts[1:] - ts[:-1]).to(x.dtype).tolist()  # the steps as the time dtype rounds them
    for i in range(len(ts) - 1):
        # Euler step, x + dt u with u = a out + b x (the conversion folded into the step).
        out, a, b = at.linear("velocity", x, i)
        x = lincomb(1.0 + dts[i] * b, x, (dts[i] * a, out))
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def heun(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Heun's second-order method in ``(y, sigma_hat)`` (Karras et al. 2022, Alg. 1, deterministic).

    With ``y = x / s`` the ODE is ``dy/dsigma_hat = eps(x, t)``; each step is an Euler step
    followed by the trapezoidal correction, ``2`` NFE per step.  A step that ends at
    ``sigma_hat = 0`` stays an Euler step (the correction would evaluate the model at zero
    noise), so ``NFE = 2N`` or ``2N - 1``.  Order 2.

    Args:
        x: ``(B, *D)`` at ``ts[0]``.
        ts: decreasing times ``(N + 1,)``.
    """
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    s = [scalar(v, x.dtype) for v in sch.s]  # memoised 0-d tensors
    y_i = x / s[0]
    for i in range(sch.steps):
        ds = sch.sigma_hat[i + 1] - sch.sigma_hat[i]
        d_i = at.eps(x, i)
        # Euler step.
        y_next = torch.add(y_i, d_i, alpha=ds)
        if sch.sigma_hat[i + 1] > 0:
            # 2nd order correction.
            d_next = at.eps(y_next * s[i + 1], i + 1)
            y_next = lincomb(1.0, y_i, (0.5 * ds, d_i), (0.5 * ds, d_next))
        y_i = y_next
        x = y_i * s[i + 1]
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def ddim(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Deterministic DDIM (Song et al. 2021b, Eq. 12 with ``sigma_t = 0``), for any linear SDE.

    ``x_{i+1} = s_{i+1} x0_hat + sigma_{i+1} eps_hat``, with ``x0_hat`` the model's denoiser at
    ``(x_i, t_i)`` and ``eps_hat = (x_i - s_i x0_hat) / sigma_i``; i.e. the Euler step in
    ``(y, sigma_hat)`` and the first-order exponential integrator (DPM-Solver-1, Lu et al. 2022,
    Eq. 3.7).  Exact when the data is a single point.  1 NFE per step; order 1.
    """
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    for i in range(sch.steps):
        ratio = sch.sigma[i + 1] / sch.sigma[i]
        # x_{i+1} = (sigma_{i+1}/sigma_i) x_i + (s_{i+1} - s_i sigma_{i+1}/sigma_i) x0_hat, with
        # x0_hat = a out + b x_i (the conversion folded into the step).
        out, a, b = at.linear("x0", x, i)
        c = sch.s[i + 1] - sch.s[i] * ratio
        x = lincomb(ratio + c * b, x, (c * a, out))
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x
