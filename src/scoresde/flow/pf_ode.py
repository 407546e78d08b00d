"""Integrating the probability-flow ODE with torchdiffeq: clocks, per-sample error control.

The probability-flow ODE ``dx/dt = v(x, t)`` (Song et al. 2021, Eq. 13) can be integrated in
any strictly monotone re-parameterisation ``u(t)`` of time: ``dx/du = v(x, t(u)) dt/du`` has
the same solution at the same times, and so has the divergence integral of the instantaneous
change of variables (``int div v dt = int div v (dt/du) du``).  A :class:`Clock` supplies
``t(u)`` and ``dt/du``; the ``log_sigma`` clock (``u = log sigma_hat = -lambda``, the variable
of DPM-Solver, Lu et al. 2022) spreads the steps evenly over noise scales.  On the paper's VP
SDE it takes more steps than ``t`` (it puts many steps at high noise, where ``x`` decays like
``s(t)``), so ``t`` stays the default; the measurements are in ``docs/likelihood.md``.

torchdiffeq's adaptive solvers take one step size for the whole batch.  Its default error norm
is an RMS over *all* entries, so a sample's accuracy (and result) would depend on its batch
(``norm="batch"``); :func:`per_sample_norm` (``norm="per_sample"``) takes the RMS over each
sample's own entries, then the maximum over samples, so every sample meets ``rtol``/``atol``
whatever else is in the batch -- but all samples still share the steps the hardest one needs.

:func:`odeint_per_sample` (``norm="independent"``) goes one step further: a
Dormand-Prince 5(4) integrator whose step size, time and accept/reject decision are *per
sample*.  Each stage is one batched model call with a per-sample time vector; samples that
have arrived are frozen, and with ``compact=True`` (what :func:`~scoresde.log_likelihood`,
:func:`~scoresde.encode` and :func:`~scoresde.decode` use) left out of the calls.
A sample's trajectory is exactly the one it would follow alone (provided the model's output for a
sample does not depend on the batch size to the last bit: float32 matrix products can, and a
tipped step-size decision then moves the result within the tolerance), and the batched
evaluations number ``2 + 6 * (attempted steps of the hardest sample)``.  Easy samples no longer
ride along on the hardest one's small steps, so fewer evaluations are needed and each sample is
exactly as accurate as the tolerance asks, no more; that is why it is not the default.  The
evaluation counts and errors against ``per_sample`` are measured in ``docs/likelihood.md``
(``benchmarks/likelihood.py``).

The parts of this integrator live apart (as in diffrax): the tableau in
:mod:`scoresde.flow.tableau`, the step-size controller in :mod:`scoresde.flow.controller`, the
error norm in :mod:`scoresde.flow.norm`; :mod:`scoresde.flow.integrators` wraps the choice of
integrator as an object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from scoresde.flow.controller import PIController
from scoresde.flow.integrators import ADAPTIVE_METHODS, FIXED_METHODS
from scoresde.flow.norm import error_scale, per_sample_norm, per_sample_rms
from scoresde.flow.tableau import DOPRI5, ButcherTableau
from scoresde.sde.base import SDE

if TYPE_CHECKING:
    from scoresde.flow.integrators import Integrator

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "TIME_VARIABLES",
    "Clock",
    "check_solver",
    "default_time_variable",
    "odeint_per_sample",
    "odeint_state",
    "per_sample_norm",
]

TIME_VARIABLES = ("t", "log_sigma")


def default_time_variable(sde: SDE) -> str:
    """The one default integration variable of the probability-flow ODE, for likelihoods and
    latents alike: the SDE's ``pf_ode_clock`` (``t`` for the continuous SDEs, ``log_sigma`` for
    tabulated ones)."""
    return getattr(sde, "pf_ode_clock", "t")


class Clock:
    """Maps the integration variable ``u`` to time ``t`` and gives ``dt/du``.

    Args:
        sde: the forward SDE.
        variable: ``t`` (the paper's choice) or ``log_sigma`` (``u = log(sigma/s) = -lambda(t)``).
    """

    def __init__(self, sde: SDE, variable: str = "t") -> None:
        if variable not in TIME_VARIABLES:
            raise ValueError(f"unknown time_variable {variable!r}; choose one of {list(TIME_VARIABLES)}")
        self.sde = sde
        self.variable = variable

    def u_of_t(self, t: float) -> float:
        """The integration variable at time ``t``."""
        t64 = torch.tensor(t, dtype=torch.float64)
        return float(t64) if self.variable == "t" else float(-self.sde.lambda_t(t64))

    def __call__(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(t(u), dt/du(u))`` as float64 scalars.

        Times beyond ``[eps, T]`` are clamped to it: torchdiffeq's initial step-size probe
        evaluates the field at ``u0 + h0``, which can overshoot ``T`` (or ``eps`` when
        integrating down); the probe only sets the first step size, and the model is never
        asked for a time outside the interval every solve here runs on.
        """
        u64 = u.detach().to(torch.float64)
        if self.variable == "t":
            return u64.clamp(self.sde.eps, self.sde.T), torch.ones_like(u64)
        t = self.sde.t_of_lambda(-u64).clamp(self.sde.eps, self.sde.T)
        # dlambda/dt = s'/s - sigma'/sigma, and u = -lambda.
        s, sigma = self.sde.marginal(t)
        ds, dsigma = self.sde.marginal_derivatives(t)
        du_dt = dsigma / sigma - ds / s
        return t, 1.0 / du_dt


def check_solver(method: str, steps: int | None) -> None:
    """Validate a torchdiffeq method name and the number of fixed steps."""
    if method in ADAPTIVE_METHODS:
        if steps is not None:
            raise ValueError(f"steps is for fixed-step methods {list(FIXED_METHODS)}, not {method!r}")
    elif method in FIXED_METHODS:
        if steps is None or int(steps) < 1:
            raise ValueError(f"fixed-step method {method!r} needs steps >= 1, got {steps}")
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {list(ADAPTIVE_METHODS + FIXED_METHODS)}")


def odeint_state(
    func: Callable[..., tuple[Tensor, ...]],
    state: tuple[Tensor, ...],
    u0: float,
    u1: float,
    *,
    method: str = "dopri5",
    rtol: float | tuple[float, ...] = 1e-5,
    atol: float | tuple[float, ...] = 1e-5,
    steps: int | None = None,
    norm: str = "per_sample",
    compact: bool = False,
    integrator: Integrator | None = None,
) -> tuple[Tensor, ...]:
    """Integrate ``d state/du = func(u, state)`` from ``u0`` to ``u1``.

    Args:
        func: the vector field on a tuple of ``(B, ...)`` tensors.
        state: initial state.
        u0, u1: integration limits.
        integrator: how to integrate (:class:`~scoresde.flow.integrators.Torchdiffeq`,
            :class:`~scoresde.flow.integrators.PerSample`); when given, the keyword flags
            below are not used.
        method, rtol, atol, steps, norm, compact: the older flags, read by
            :func:`~scoresde.flow.integrators.make_integrator`: ``norm="independent"`` is
            :class:`~scoresde.flow.integrators.PerSample` (``dopri5`` only), ``per_sample`` /
            ``batch`` :class:`~scoresde.flow.integrators.Torchdiffeq` with that error norm.
            ``compact``: with per-sample steps, evaluate only the samples still running;
            ``func`` then takes a third argument, the batch positions ``index`` of the samples
            it gets (see :func:`odeint_per_sample`).  Other paths call ``func(u, state)``.

    Returns:
        The state at ``u1``.
    """
    from scoresde.flow.integrators import make_integrator

    if integrator is None:
        integrator = make_integrator(method, rtol=rtol, atol=atol, steps=steps, norm=norm, compact=compact)
    return integrator.solve(func, state, u0, u1)


def _per_component(value: float | tuple[float, ...], n: int, name: str) -> tuple[float, ...]:
    vals = tuple(float(v) for v in value) if isinstance(value, tuple | list) else (float(value),) * n
    if len(vals) != n:
        raise ValueError(f"{name} must be one float or one per state component ({n}), got {len(vals)}")
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{name} must be finite and >= 0, got {vals}")
    return vals


def odeint_per_sample(
    func: Callable[..., tuple[Tensor, ...]],
    state: tuple[Tensor, ...],
    u0: float,
    u1: float,
    *,
    rtol: float | tuple[float, ...] = 1e-5,
    atol: float | tuple[float, ...] = 1e-5,
    safety: float = 0.9,
    min_factor: float = 0.2,
    max_factor: float = 10.0,
    beta: float = 0.04,
    max_steps: int = 100_000,
    compact: bool = False,
    tableau: ButcherTableau = DOPRI5,
    controller: PIController | None = None,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Dormand-Prince 5(4) with a step size, time and accept/reject decision *per sample*.

    Every sample of the batch is integrated as if it were alone, following Hairer, Norsett &
    Wanner (Solving ODEs I, Sec. II.4-II.5, and their code DOPRI5): initial step selection,
    local extrapolation, FSAL, the PI step-size controller ``h_new = h * safety *
    err_old^beta / err^(1/5 - 0.75 beta)`` clipped to ``[min_factor, max_factor]`` (``beta = 0``:
    the classical ``safety * err^(-1/5)``), no growth right after a rejection, and the last step
    stretched or shortened to land exactly on ``u1``.  Each Runge-Kutta stage
    calls ``func`` once on the whole batch with a per-sample time vector ``u: (B,)``; samples
    that have reached ``u1`` are evaluated at ``u1`` and frozen (their values are discarded), or,
    with ``compact=True``, left out of the call.
    A sample's trajectory therefore does not depend on the rest of the batch, and the number of
    batched evaluations is ``2 + 6 * max_b (attempted steps of b)``.

    The error of a sample: for each state component, the RMS over the sample's entries of
    ``err / (atol + rtol * max(|y|, |y_new|))`` (per-component ``rtol``/``atol``); then the RMS
    over components, so that e.g. a log-density accumulator ``(B,)`` weighs as much as the
    ``(B, *D)`` state whatever ``D``.  A step is accepted when this is at most 1.

    Args:
        func: vector field ``(u: (B,) float64, state) -> d state / du``, a tuple of ``(B, ...)``;
            with ``compact=True`` it is called as ``func(u, state, index)`` on the samples still
            running, ``index: (B',)`` their positions in the batch (to select e.g. their labels).
        state: initial state, a tuple of ``(B, ...)`` tensors.
        u0, u1: integration limits (either order).
        rtol, atol: tolerances, one float or one per state component.
        safety, min_factor, max_factor, beta: step-size controller constants (Hairer's DOPRI5
            defaults; ``beta = 0`` is the classical controller without the PI term), used when
            no ``controller`` is given.
        max_steps: attempted steps per sample before giving up (RuntimeError).
        compact: evaluate only the samples that have not arrived.  The work of a solve is then
            the sum of the samples' steps rather than the batch size times the hardest sample's
            steps (the number of batched calls is unchanged).

        tableau: the embedded Runge-Kutta pair (FSAL; :data:`~scoresde.flow.tableau.DOPRI5`).
        controller: the step-size controller (default: a :class:`~scoresde.flow.controller.PIController`
            with the constants above).

    Returns:
        ``(state at u1, steps)`` where ``steps: (B,)`` counts each sample's attempted steps.
    """
    if controller is None:
        controller = PIController(safety=safety, min_factor=min_factor, max_factor=max_factor, beta=beta)
    tab, order = tableau, tableau.order
    n = len(state)
    rtols = _per_component(rtol, n, "rtol")
    atols = _per_component(atol, n, "atol")
    if u0 == u1:
        return tuple(s.clone() for s in state), torch.zeros(state[0].shape[0], dtype=torch.long)
    ref = state[0]
    b = ref.shape[0]
    dev = ref.device
    f64 = torch.float64
    direction = 1.0 if u1 > u0 else -1.0
    u_end = torch.tensor(u1, dtype=f64, device=dev)
    span = abs(u1 - u0)
    everyone = torch.arange(b, device=dev)

    def call(u: Tensor, y: tuple[Tensor, ...], index: Tensor) -> tuple[Tensor, ...]:
        return func(u, y, index) if compact else func(u, y)

    def bcast(v: Tensor, like: Tensor) -> Tensor:
        v = v if v.dtype == torch.bool else v.to(like.dtype)
        return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))

    def scale(y: tuple[Tensor, ...], y_new: tuple[Tensor, ...] | None = None) -> list[Tensor]:
        return error_scale(y, y_new, rtols, atols)

    def norm(vals: tuple[Tensor, ...], sc: list[Tensor]) -> Tensor:
        return per_sample_rms([(v / s).to(f64) for v, s in zip(vals, sc, strict=True)])

    def axpy(y: tuple[Tensor, ...], h: Tensor, ks: list[tuple[Tensor, ...]], coefs) -> tuple[Tensor, ...]:
        out = []
        for j, yj in enumerate(y):
            acc = torch.zeros_like(yj)
            for c, k in zip(coefs, ks, strict=False):
                if c != 0.0:
                    acc = acc + c * k[j]
            out.append(yj + bcast(h, yj) * acc)
        return tuple(out)

    # Initial step size (the controller's), per sample.
    u = torch.full((b,), float(u0), dtype=f64, device=dev)
    y = tuple(s for s in state)
    k1 = call(u, y, everyone)
    sc = scale(y)

    def probe(h0: Tensor) -> tuple[Tensor, ...]:
        return call(u + direction * h0, axpy(y, direction * h0, [k1], (1.0,)), everyone)

    h = controller.initial_step(probe, y, k1, lambda v: norm(v, sc), span, order)  # magnitude

    done = torch.zeros(b, dtype=torch.bool, device=dev)
    last_rejected = torch.zeros(b, dtype=torch.bool, device=dev)
    facold = torch.full((b,), 1e-4, dtype=f64, device=dev)
    steps = torch.zeros(b, dtype=torch.long, device=dev)
    y = tuple(y)
    while not bool(done.all()):
        if int(steps.max()) >= max_steps:
            raise RuntimeError(f"odeint_per_sample: more than {max_steps} steps for some sample")
        # The samples this step works on: all of them, or (compact) those still running.
        idx = (~done).nonzero().squeeze(1) if compact else everyone
        u_a, h_a, done_a = u[idx], h[idx], done[idx]
        y_a = tuple(v[idx] for v in y)
        k1_a = tuple(v[idx] for v in k1)
        # Land exactly on u1 (stretch by 1% rather than leave a sliver, as Hairer's DOPRI5).
        remaining = (u_end - u_a).abs()
        hit = h_a * 1.01 >= remaining
        h_try = torch.where(hit, remaining, h_a)
        h_try = torch.where(done_a, torch.zeros_like(h_try), h_try)
        hs = direction * h_try
        ks = [k1_a]
        for i in range(1, tab.stages):
            yi = axpy(y_a, hs, ks, tab.a[i])
            ui = torch.where(hit & (tab.c[i] == 1.0), u_end, u_a + tab.c[i] * hs)
            ks.append(call(ui, yi, idx))
        y_new = axpy(y_a, hs, ks[:-1], tab.a[-1])  # the propagated solution (FSAL: the last node)
        err_vec = axpy(tuple(torch.zeros_like(k) for k in k1_a), hs, ks, tab.b_error)
        err = norm(err_vec, scale(y_a, y_new))
        finite = torch.isfinite(err) & torch.stack(
            [torch.isfinite(v.reshape(v.shape[0], -1)).all(1) for v in y_new]
        ).all(0)
        accept = finite & (err <= 1.0) & ~done_a
        factor = controller.factor(err, accept, finite, facold[idx], last_rejected[idx], order)
        # Write back: accepted samples move on (FSAL: the last stage is the next step's first).
        steps[idx] = steps[idx] + (~done_a).long()
        facold[idx] = torch.where(accept, err.clamp_min(1e-4), facold[idx])
        y = tuple(
            v.index_copy(0, idx, torch.where(bcast(accept, yn), yn, yo))
            for v, yn, yo in zip(y, y_new, y_a, strict=True)
        )
        k1 = tuple(
            v.index_copy(0, idx, torch.where(bcast(accept, kn), kn, ko))
            for v, kn, ko in zip(k1, ks[-1], k1_a, strict=True)
        )
        u[idx] = torch.where(accept, torch.where(hit, u_end, u_a + hs), u_a)
        last_rejected[idx] = torch.where(done_a, last_rejected[idx], ~accept)
        h[idx] = torch.where(done_a, h_a, h_try * factor)
        done[idx] = done_a | (accept & hit)
        tiny = ~done & ~(h > 1e-14 * torch.maximum(u.abs(), torch.ones_like(u)))  # NaN h too
        if bool(tiny.any()):
            raise RuntimeError("odeint_per_sample: step size underflow (stiff or non-finite vector field)")
    return y, steps
