"""Adaptive black-box solving of the probability-flow ODE with torchdiffeq (Chen et al. 2018).

Song et al. 2021 (Sec. 4.3, App. D) sample and compute likelihoods with an adaptive RK45 solver;
here Dormand-Prince 5(4) from ``torchdiffeq.odeint`` integrates ``dx/dt = f x - g^2 score / 2``,
through the library's one route to torchdiffeq (:class:`scoresde.flow.integrators.Torchdiffeq`).
"""

from __future__ import annotations

import math

from torch import Tensor

from scoresde.flow.integrators import Torchdiffeq
from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["dopri5"]


def _check_tol(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def dopri5(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Dormand-Prince 5(4) with adaptive steps (``torchdiffeq.odeint``, method ``dopri5``).

    Only the ends ``ts[0]`` and ``ts[-1]`` of the grid are used: the solver picks its own steps
    to meet ``rtol``/``atol``, and its true number of model evaluations is what the counting
    model reports.  ``callback`` is called once, at the end.  Order 5.

    Args:
        rtol, atol: relative and absolute error tolerances per step (default ``1e-5``).
    """
    rtol, atol = _check_tol("rtol", rtol), _check_tol("atol", atol)
    if not math.isfinite(float(ts[-1])) or float(ts[-1]) >= float(ts[0]):
        raise ValueError("dopri5 needs a decreasing grid")
    t0, t1 = (float(v) for v in ts[[0, -1]].to(x.dtype))

    lo, hi = min(t0, t1), max(t0, t1)

    def velocity(t: Tensor, state: tuple[Tensor]) -> tuple[Tensor]:
        # torchdiffeq's initial step-size probe evaluates at t0 + h0 with h0 ~ |x| / |v|, far
        # outside [t1, t0] where the velocity at T is tiny (VP: p_T ~ N(0, I)); the probe only
        # sizes the first step, so its time is clamped to the solve's interval.
        return (model.velocity(state[0], t.clamp(lo, hi), y),)

    # One step size for the batch, torchdiffeq's RMS error norm over the whole batch.
    (x,) = Torchdiffeq("dopri5", rtol=rtol, atol=atol, norm="batch").solve(velocity, (x,), t0, t1)
    if callback is not None:
        callback(len(ts) - 2, ts[-1], x)
    return x
