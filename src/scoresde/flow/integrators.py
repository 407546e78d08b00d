"""Integrators of the probability-flow ODE, chosen by passing an object (one meaning per field).

An integrator has one method, ``solve(func, state, u0, u1) -> state at u1``, for a vector
field ``func(u, state)`` on a tuple of ``(B, ...)`` tensors.  Three kinds:

- :class:`AdaptiveIntegrator`: an embedded Runge-Kutta pair (``dopri5``, the paper's RK45, or
  ``bosh3``) with one step size for the whole batch, under the ``per_sample`` error norm (each
  sample within tolerance) or the ``batch`` RMS over everything (the paper's scipy route).
  The Dormand-Prince and Bogacki-Shampine pairs run on the library's own loop
  (:func:`scoresde.flow.shared_step.odeint_shared`: the tableau, controller and norm objects of
  this package, no per-step bookkeeping beyond the step); other torchdiffeq adaptive methods
  (``dopri8``, ``fehlberg2``, ``adaptive_heun``) go to torchdiffeq (Chen et al. 2018).
- :class:`FixedStepIntegrator`: a torchdiffeq fixed-step method (``rk4``, ``euler``, ...) on
  ``steps`` equal steps of the integration variable.
- :class:`PerSample`: an embedded Runge-Kutta pair whose step size, time and accept/reject
  decision are per sample (:func:`scoresde.flow.pf_ode.odeint_per_sample`), built from a
  tableau (:mod:`~scoresde.flow.tableau`), a step-size controller
  (:mod:`~scoresde.flow.controller`) and a per-sample error norm (:mod:`~scoresde.flow.norm`).

:func:`make_integrator` maps the command line's flags (``method``, ``rtol``, ``atol``,
``steps``, ``norm``) to these objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import Tensor

from scoresde._core.checks import check_tolerances
from scoresde.flow.controller import PIController
from scoresde.flow.norm import per_sample_norm
from scoresde.flow.tableau import BOSH3, DOPRI5, ButcherTableau

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "NORMS",
    "AdaptiveIntegrator",
    "FixedStepIntegrator",
    "Integrator",
    "PerSample",
    "Torchdiffeq",
    "check_tolerance",
    "make_integrator",
    "with_tolerances",
]

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4")
NORMS = ("independent", "per_sample", "batch")
"""The ``norm`` flag's values: ``independent`` is :class:`PerSample`, the others
:class:`AdaptiveIntegrator`'s ``norm``."""

TABLEAUX: dict[str, ButcherTableau] = {"dopri5": DOPRI5, "bosh3": BOSH3}
"""Adaptive methods solved by the library's own loop; the rest go to torchdiffeq."""

Tol = float | tuple[float, ...]


class Integrator(Protocol):
    """What ``log_likelihood`` / ``encode`` / ``decode`` need of an integrator."""

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]: ...


def check_tolerance(rtol: Tol, atol: Tol) -> None:
    """Adaptive tolerances: finite, ``rtol > 0``, ``atol >= 0``
    (:func:`scoresde._core.checks.check_tolerances`), and not both below float64 resolution:
    ``rtol = atol = 1e-300`` is refused here, naming the tolerances, rather than ending in a
    step-size underflow deep in the solve."""
    if not isinstance(rtol, tuple) and not isinstance(atol, tuple):
        check_tolerances(rtol, atol)
    values = (
        *(rtol if isinstance(rtol, tuple) else (rtol,)),
        *(atol if isinstance(atol, tuple) else (atol,)),
    )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"tolerances must be finite numbers >= 0, got rtol={rtol!r}, atol={atol!r}")
    if max(values) < 1e-13:  # relative float64 resolution, with room
        raise ValueError(
            f"rtol={rtol!r}, atol={atol!r}: tolerances below 1e-13 cannot be met in floating point "
            "(float32 solves need >= ~1e-7 in practice); loosen --rtol / --atol"
        )


@dataclass(frozen=True)
class AdaptiveIntegrator:
    """An adaptive embedded Runge-Kutta pair with one step size for the batch.

    Args:
        method: ``dopri5`` (Dormand-Prince 5(4), the paper's RK45), ``bosh3`` (Bogacki-Shampine
            3(2)), or another torchdiffeq adaptive method (``dopri8``, ``fehlberg2``,
            ``adaptive_heun``).
        rtol, atol: tolerances (one float, or one per state component).
        norm: ``per_sample`` (RMS over each sample's entries, maximum over samples:
            batch-independent accuracy) or ``batch`` (RMS over everything, as the paper's code
            does with scipy).
    """

    method: str = "dopri5"
    rtol: Tol = 1e-5
    atol: Tol = 1e-5
    norm: str = "per_sample"

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS:
            raise ValueError(
                f"unknown method {self.method!r} for AdaptiveIntegrator; "
                f"choose one of {list(ADAPTIVE_METHODS)}"
            )
        if self.norm not in ("per_sample", "batch"):
            raise ValueError(
                f"unknown norm {self.norm!r} for AdaptiveIntegrator; choose per_sample or batch "
                "(per-sample step sizes: PerSample)"
            )
        check_tolerance(self.rtol, self.atol)

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]:
        if self.method in TABLEAUX:
            from scoresde.flow.shared_step import odeint_shared

            return odeint_shared(
                func,
                state,
                u0,
                u1,
                rtol=self.rtol,
                atol=self.atol,
                norm=self.norm,
                tableau=TABLEAUX[self.method],
            )
        from torchdiffeq import odeint

        ref = state[0]
        u = torch.tensor([u0, u1], dtype=ref.dtype, device=ref.device)
        # step_t: land exactly on u1 rather than step past it and interpolate back, which
        # would evaluate the model outside [eps, T] (e.g. at t < 0, where sigma(t) is undefined).
        options: dict = {"step_t": u[1:]}
        if self.norm == "per_sample":
            options["norm"] = per_sample_norm
        try:
            out = odeint(func, state, u, method=self.method, rtol=self.rtol, atol=self.atol, options=options)
        except AssertionError as err:  # torchdiffeq's "underflow in dt"
            raise RuntimeError(
                f"the adaptive ODE solver's step size underflowed ({err}) with rtol={self.rtol}, "
                f"atol={self.atol}: loosen the tolerances, or the vector field is stiff or not finite"
            ) from None
        return tuple(o[-1] for o in out)


@dataclass(frozen=True)
class FixedStepIntegrator:
    """A torchdiffeq fixed-step method on ``steps`` equal steps of the integration variable.

    Args:
        method: ``rk4`` (default), ``euler``, ``midpoint``, ``heun2``, ``heun3``.
        steps: the number of steps.
    """

    method: str = "rk4"
    steps: int = 32

    def __post_init__(self) -> None:
        if self.method not in FIXED_METHODS:
            raise ValueError(
                f"unknown method {self.method!r} for FixedStepIntegrator; choose one of {list(FIXED_METHODS)}"
            )
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"fixed-step method {self.method!r} needs steps >= 1, got {self.steps!r}")

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]:
        from torchdiffeq import odeint

        ref = state[0]
        u = torch.tensor([u0, u1], dtype=ref.dtype, device=ref.device)
        grid = torch.linspace(u0, u1, self.steps + 1, dtype=ref.dtype, device=ref.device)
        out = odeint(func, state, u, method=self.method, options={"grid_constructor": lambda f, y0, t: grid})
        return tuple(o[-1] for o in out)


@dataclass(frozen=True)
class PerSample:
    """Per-sample adaptive steps: every sample integrated as if it were alone.

    Args:
        rtol, atol: tolerances (one float, or one per state component).
        tableau: the embedded Runge-Kutta pair (FSAL).
        controller: the step-size controller.
        compact: evaluate only the samples still running; ``func`` is then called as
            ``func(u, state, index)`` (see :func:`scoresde.flow.pf_ode.odeint_per_sample`).
        max_steps: attempted steps per sample before giving up.
    """

    rtol: Tol = 1e-5
    atol: Tol = 1e-5
    tableau: ButcherTableau = DOPRI5
    controller: PIController = field(default_factory=PIController)
    compact: bool = True
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        check_tolerance(self.rtol, self.atol)

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]:
        from scoresde.flow.pf_ode import odeint_per_sample

        out, _ = odeint_per_sample(
            func,
            state,
            u0,
            u1,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            compact=self.compact,
            tableau=self.tableau,
            controller=self.controller,
        )
        return out


def make_integrator(
    method: str = "dopri5",
    *,
    rtol: Tol = 1e-5,
    atol: Tol = 1e-5,
    steps: int | None = None,
    norm: str = "per_sample",
    compact: bool = True,
) -> AdaptiveIntegrator | FixedStepIntegrator | PerSample:
    """The integrator the command line's flags name.

    ``norm="independent"`` with an adaptive method is :class:`PerSample` (``dopri5`` only);
    other adaptive methods are :class:`AdaptiveIntegrator`; fixed-step methods are
    :class:`FixedStepIntegrator` (``norm`` does not apply; ``rtol``/``atol`` are not used).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    if method in FIXED_METHODS:
        if steps is None:
            raise ValueError(f"fixed-step method {method!r} needs steps >= 1, got {steps}")
        return FixedStepIntegrator(method, int(steps))
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(ADAPTIVE_METHODS + FIXED_METHODS)}")
    if steps is not None:
        raise ValueError(f"steps is for fixed-step methods {list(FIXED_METHODS)}, not {method!r}")
    if norm == "independent":
        if method != "dopri5":
            raise ValueError(
                f"norm='independent' (per-sample step sizes) is implemented for 'dopri5' only; "
                f"use norm='per_sample' or 'batch' with {method!r}"
            )
        return PerSample(rtol=rtol, atol=atol, compact=compact)
    return AdaptiveIntegrator(method, rtol=rtol, atol=atol, norm=norm)


def Torchdiffeq(
    method: str = "dopri5",
    rtol: Tol = 1e-5,
    atol: Tol = 1e-5,
    steps: int | None = None,
    norm: str = "per_sample",
) -> AdaptiveIntegrator | FixedStepIntegrator:
    """Deprecated: :class:`AdaptiveIntegrator` or :class:`FixedStepIntegrator` by ``method``."""
    if norm not in ("per_sample", "batch"):
        raise ValueError(
            f"unknown norm {norm!r}; choose per_sample or batch (per-sample step sizes: PerSample)"
        )
    return make_integrator(method, rtol=rtol, atol=atol, steps=steps, norm=norm)  # type: ignore[return-value]


def with_tolerances(integrator: Integrator, rtol: Tol, atol: Tol) -> Integrator:
    """A copy of an adaptive integrator with other tolerances (e.g. one per state component);
    fixed-step integrators are returned as they are."""
    if not hasattr(integrator, "rtol"):
        return integrator
    return replace(integrator, rtol=rtol, atol=atol)  # type: ignore[type-var]
