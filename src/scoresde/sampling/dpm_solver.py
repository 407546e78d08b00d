"""DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b): exponential integrators.

In ``lambda = log(s / sigma)`` the probability-flow ODE of any linear SDE has the exact solution
(Lu et al. 2022, Eq. 3.4; Lu et al. 2022b, Eq. 9)

    x_t = (s_t / s_u) x_u - s_t int e^{-lambda} eps(x_lambda) dlambda
        = (sigma_t / sigma_u) x_u + s_t int e^{-(lambda_t - lambda)} x0(x_lambda) dlambda,

so only the network's prediction is approximated.  The singlestep solvers approximate ``eps``
with intermediate evaluations; the multistep ones approximate ``x0`` from past evaluations.  All
coefficients come from ``sde.marginal``, ``sde.lambda_t`` and ``sde.t_of_lambda`` in float64.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from scoresde._core.tensors import lincomb
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import FixedTimes, fixed_times
from scoresde.models.parameterization import apply_conversion
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import GridSchedule, grid_schedule, intermediate_times, phi
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = [
    "LOWER_ORDER_FINAL_BELOW",
    "dpm_solver_2s",
    "dpm_solver_3s",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_3m",
]

LOWER_ORDER_FINAL_BELOW = 15
"""Multistep solvers lower their order over the last steps on grids of fewer steps than this."""


def _first_order(x: Tensor, x0: Tensor, sch: GridSchedule, i: int) -> Tensor:
    """DDIM / DPM-Solver-1 step from ``t_i`` to ``t_{i+1}`` given the denoiser ``x0`` at ``x_i``."""
    ratio = sch.sigma[i + 1] / sch.sigma[i]
    return lincomb(ratio, x, (sch.s[i + 1] - sch.s[i] * ratio, x0))


def dpm_solver_2s(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Singlestep DPM-Solver-2 with ``r_1 = 1/2`` (Lu et al. 2022, Alg. 1), noise prediction.

    ``u = (s_m / s_i) x_i - sigma_m (e^{r_1 h} - 1) eps_i`` at ``lambda_m = lambda_i + r_1 h``, then
    ``x_{i+1} = (s_{i+1}/s_i) x_i - sigma_{i+1} (e^h - 1) eps_i - sigma_{i+1} (e^h - 1)
    (eps(u, t_m) - eps_i) / (2 r_1)``.  2 NFE per step (1 for a final step to ``sigma = 0``,
    which is a DDIM step).  Order 2.
    """
    r1 = 0.5
    sch = grid_schedule(sde, ts)
    mid = intermediate_times(sde, sch, r1)
    at, at_mid = fixed_times(model, ts, x, y), _midpoints(model, mid, x, y)
    t_out = ts.unbind()
    for i in range(sch.steps):
        h = sch.h(i)
        if not math.isfinite(h):
            x = _first_order(x, at.denoise(x, i), sch, i)
        else:
            eps_i = at.eps(x, i)
            a = sch.sigma[i + 1] * math.expm1(h)
            u = lincomb(mid.s[i] / sch.s[i], x, (-mid.sigma[i] * math.expm1(r1 * h), eps_i))
            eps_m = at_mid.eps(u, i)
            x = lincomb(sch.s[i + 1] / sch.s[i], x, (a / (2 * r1) - a, eps_i), (-a / (2 * r1), eps_m))
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def dpm_solver_3s(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Singlestep DPM-Solver-3 with ``r_1 = 1/3, r_2 = 2/3`` (Lu et al. 2022, Alg. 2), noise prediction.

    3 NFE per step (1 for a final step to ``sigma = 0``, which is a DDIM step).  Order 3.
    """
    r1, r2 = 1.0 / 3.0, 2.0 / 3.0
    sch = grid_schedule(sde, ts)
    m1, m2 = intermediate_times(sde, sch, r1), intermediate_times(sde, sch, r2)
    at, at1, at2 = fixed_times(model, ts, x, y), _midpoints(model, m1, x, y), _midpoints(model, m2, x, y)
    t_out = ts.unbind()
    for i in range(sch.steps):
        h = sch.h(i)
        if not math.isfinite(h):
            x = _first_order(x, at.denoise(x, i), sch, i)
        else:
            eps_i = at.eps(x, i)
            s_i = sch.s[i]
            u1 = (m1.s[i] / s_i) * x - (m1.sigma[i] * math.expm1(r1 * h)) * eps_i
            d1 = at1.eps(u1, i) - eps_i
            e2 = math.expm1(r2 * h)
            u2 = (
                (m2.s[i] / s_i) * x
                - (m2.sigma[i] * e2) * eps_i
                - (m2.sigma[i] * r2 / r1 * (e2 / (r2 * h) - 1.0)) * d1
            )
            d2 = at2.eps(u2, i) - eps_i
            e = math.expm1(h)
            sig = sch.sigma[i + 1]
            x = (sch.s[i + 1] / s_i) * x - (sig * e) * eps_i - (sig / r2 * (e / h - 1.0)) * d2
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def _midpoints(model: ScoreFunction, mid: GridSchedule, x: Tensor, y: Tensor | None) -> FixedTimes:
    """The model at the intermediate times ``mid`` of every step (a ``nan`` time, of a step that
    ends at ``sigma = 0`` and is never evaluated, taken as the time ``0``)."""
    t = torch.tensor(mid.t, dtype=x.dtype, device=x.device)
    return fixed_times(model, torch.nan_to_num(t, nan=0.0), x, y)


def multistep_order(i: int, steps: int, order: int, h: float, lower_order_final: bool) -> int:
    """Order of step ``i`` of a multistep solver of nominal ``order``.

    Warm-up: step ``i`` has only ``i + 1`` evaluations, so order ``min(order, i + 1)``.  With
    ``lower_order_final`` on a grid of fewer than :data:`LOWER_ORDER_FINAL_BELOW` steps the last
    steps use order ``min(order, steps - i)`` (Lu et al. 2022b, Sec. 5; it stabilises few-step
    sampling where the last steps are long in ``lambda``).  A step to ``sigma = 0`` is order 1.
    """
    k = min(order, i + 1)
    if lower_order_final and steps < LOWER_ORDER_FINAL_BELOW:
        k = min(k, steps - i)
    return k if math.isfinite(h) else 1


def _check_flag(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")


def scaled_prediction(out: Tensor, x: Tensor, a: float, b: float) -> tuple[Tensor, float]:
    """``(u, k)`` with the prediction ``a out + b x`` of :meth:`FixedTimes.linear
    <scoresde.models.fixed_times.FixedTimes.linear>` equal to ``k u``, in at most one tensor
    operation: ``u = x + (a / b) out`` and ``k = b`` (the sum rounded once at the scale of ``x``,
    as :func:`~scoresde.models.parameterization.apply_conversion` rounds it), or ``(out, a)``
    where ``b = 0``.  A multistep solver keeps its history as such pairs and folds ``k`` into
    the coefficient of ``u`` (one tensor operation per evaluation instead of two)."""
    if b == 0.0:
        return out, a
    return torch.add(x, out, alpha=a / b), b


def x0_at(at: FixedTimes, x: Tensor, i: int) -> tuple[Tensor, float]:
    """The data prediction at ``x`` and the ``i``-th time as :func:`scaled_prediction`'s ``(u, k)``."""
    out, a, b = at.linear("x0", x, i)
    return scaled_prediction(out, x, a, b)


@lru_cache(maxsize=64)
def _pp_2m_plan(
    s: tuple[float, ...], sigma: tuple[float, ...], lam: tuple[float, ...], lower_order_final: bool
) -> tuple[tuple[float, float, float], ...]:
    """The coefficients ``(ratio, c_0, c_1)`` of every DPM-Solver++(2M) step on a grid:
    ``x_{i+1} = ratio x_i + c_0 x0_i + c_1 x0_{i-1}`` (``c_1 = 0`` on a first-order step).
    Memoised: a run of the same grid reuses them."""
    steps = len(s) - 1
    plan = []
    for i in range(steps):
        h = lam[i + 1] - lam[i]
        k = multistep_order(i, steps, 2, h, lower_order_final)
        ratio = sigma[i + 1] / sigma[i]
        c = s[i + 1] * -math.expm1(-h)
        if k == 1:
            plan.append((ratio, c, 0.0))
        else:
            r = (lam[i] - lam[i - 1]) / h
            plan.append((ratio, c * (1 + 0.5 / r), -c * 0.5 / r))
    return tuple(plan)


def dpm_solver_pp_2m(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    lower_order_final: bool = True,
) -> Tensor:
    """Multistep DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), data prediction.

    With ``r = h_{i-1} / h_i`` and ``D = (1 + 1/(2r)) x0_i - x0_{i-1} / (2r)``:
    ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i + s_{i+1} (1 - e^{-h_i}) D``.  The first step is
    first order (one past evaluation); see :func:`multistep_order` for ``lower_order_final``.
    1 NFE per step.  Order 2.
    """
    _check_flag("lower_order_final", lower_order_final)
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    plan = _pp_2m_plan(tuple(sch.s), tuple(sch.sigma), tuple(sch.lam), lower_order_final)
    steps = sch.steps
    # The step in the network's own output: with x0_i = a out + b x_i (FixedTimes.linear),
    # x_{i+1} = (ratio + c_0 b) x_i + c_0 a out + c_1 x0_{i-1}, and the last term is kept
    # pre-scaled from the step before (the step's result differs from the written form by
    # float rounding; two tensor operations for the step, two for the history term).
    past: Tensor | None = None  # c_1 x0_{i-1}, the history term of step i
    for i in range(steps):
        ratio, c0, _ = plan[i]
        out, a, b = at.linear("x0", x, i)
        if past is None:
            x_next = lincomb(ratio + c0 * b, x, (c0 * a, out))
        else:
            x_next = torch.add(past, x, alpha=ratio + c0 * b).add_(out, alpha=c0 * a)
        c1 = plan[i + 1][2] if i + 1 < steps else 0.0
        past = apply_conversion(out, x, c1 * a, c1 * b) if c1 != 0.0 else None
        x = x_next
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


@lru_cache(maxsize=64)
def _pp_3m_plan(
    s: tuple[float, ...], sigma: tuple[float, ...], lam: tuple[float, ...], lower_order_final: bool
) -> tuple[tuple[int, float, float, float, float], ...]:
    """The coefficients ``(k, ratio, c, w_0, w_1)`` of every DPM-Solver++(3M) step on a grid, of
    order ``k``: ``x_{i+1} = ratio x_i + c x0_i`` (``k = 1``), ``+ w_0 x0_{i-1}`` (``k = 2``),
    or ``+ w_0 D_0 + w_1 D_1`` with the differences ``D_0 = x0_i - x0_{i-1}``, ``D_1 = x0_{i-1}
    - x0_{i-2}`` (``k = 3``); for step 0, ``w_1`` holds the weight of its correction.  Memoised:
    a run of the same grid reuses them."""
    steps = len(s) - 1
    plan = []
    for i in range(steps):
        h = lam[i + 1] - lam[i]
        k = multistep_order(i, steps, 3, h, lower_order_final)
        ratio = sigma[i + 1] / sigma[i]
        s1 = s[i + 1]
        if k == 1:
            plan.append((1, ratio, s1 * phi(h, 0), 0.0, 0.5 * s1 * phi(h, 0)))
        elif k == 2:
            # Linear interpolation: D_1 = (x0_i - x0_{i-1}) / r_0, with the DPM-Solver++(2M) weight.
            r0 = (lam[i] - lam[i - 1]) / h
            c = s1 * phi(h, 0)
            plan.append((2, ratio, c * (1 + 0.5 / r0), -c * 0.5 / r0, 0.0))
        else:
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            # With D0 = x0_i - x0_{i-1}, D1 = x0_{i-1} - x0_{i-2}: d1_0 = D0 / r0, d1_1 = D1 / r1,
            # f2 = (d1_0 - d1_1) / (r0 + r1) (second divided difference: x0'' h^2 / 2) and
            # d1 = d1_0 + r0 f2 (h x0' at u = 0); the step's c1 d1 + c2 f2 gathered per difference
            # (gathered per evaluation, the small differences would round at the scale of x0).
            c1, c2, rs = s1 * phi(h, 1), 2 * s1 * phi(h, 2), r0 + r1
            w0 = c1 * (1.0 / r0 + 1.0 / rs) + c2 / (r0 * rs)
            w1 = -(c1 * r0 + c2) / (r1 * rs)
            plan.append((3, ratio, s1 * phi(h, 0), w0, w1))
    return tuple(plan)


def dpm_solver_pp_3m(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    lower_order_final: bool = True,
) -> Tensor:
    """Multistep DPM-Solver++(3M) (Lu et al. 2022b, Sec. 4 and App. B), data prediction.

    The data prediction is interpolated through the last three evaluations (Newton form in
    ``u = (lambda - lambda_i) / h_i``) and the Taylor terms are integrated exactly:
    ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i + s_{i+1} [phi_0 x0_i + phi_1 D_1 + phi_2 D_2]`` with
    ``D_1 ~ h x0'``, ``D_2 ~ h^2 x0''`` and ``phi_j`` from :func:`~scoresde.sampling.schedule.phi`.
    Steps 0 and 1 are warm-up steps of order 1 and 2 (see :func:`multistep_order`); step 0 is
    corrected with the next step's evaluation (as in UniPC's corrector), since a plain first-order
    first step limits the global order to 2.
    1 NFE per step.  Order 3 (tests/sampling/test_ode.py fits the slope).

    Note: the ``x0''`` term carries weight ``phi_2 h^2 x0'' = 2 phi_2 f_2`` with ``f_2`` the second
    divided difference; weighting ``f_2`` by ``phi_2`` alone (as diffusers 0.42 and
    k-diffusion 0.1.1 do in their third-order multistep updates) leaves a second-order method.
    """
    _check_flag("lower_order_final", lower_order_final)
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    plan = _pp_3m_plan(tuple(sch.s), tuple(sch.sigma), tuple(sch.lam), lower_order_final)
    steps = sch.steps
    # The data predictions as scaled_prediction's (u, k) with x0 = k u, and the differences
    # D = x0_i - x0_{i-1} as (d, k_i) with D = k_i d, d = u_i - (k_{i-1} / k_i) u_{i-1} (formed
    # before scaling, in one tensor operation, as the difference form needs).
    cur = x0_at(at, x, 0)  # x0_i
    hist: list[tuple[Tensor, float]] = []  # x0 at t_{i-1}, t_{i-2}
    d_prev: tuple[Tensor, float] | None = None  # x0_{i-1} - x0_{i-2}, where the step before took it
    for i in range(steps):
        order, ratio, c, w0, w1 = plan[i]
        u, k = cur
        d0: tuple[Tensor, float] | None = None
        if order == 1:
            x_next = lincomb(ratio, x, (c * k, u))
        elif order == 2:
            x_next = lincomb(ratio, x, (c * k, u), (w0 * hist[0][1], hist[0][0]))
        else:
            (u1, k1), (u2, k2) = hist
            d0 = torch.sub(u, u1, alpha=k1 / k), k
            d1 = d_prev if d_prev is not None else (torch.sub(u1, u2, alpha=k2 / k1), k1)
            x_next = lincomb(ratio, x, (c * k, u), (w0 * k, d0[0]), (w1 * d1[1], d1[0]))
        if i + 1 < steps:
            nxt = x0_at(at, x_next, i + 1)
            if i == 0:
                # Corrected warm-up: the first-order first step alone would leave an O(h^2) global
                # error; the trapezoidal correction with the evaluation the next step needs anyway
                # (UniC-1, Zhao et al. 2023) makes it second order locally, at no extra NFE.
                x_next = lincomb(1.0, x_next, (w1 * nxt[1], nxt[0]), (-w1 * k, u))
            hist = [cur, *hist[:1]]
            cur = nxt
        d_prev = d0
        x = x_next
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x
