"""Integrators of the probability-flow ODE, chosen by passing an object.

An integrator has one method, ``solve(func, state, u0, u1) -> state at u1``, for a vector
field ``func(u, state)`` on a tuple of ``(B, ...)`` tensors.  Two kinds:

- :class:`Torchdiffeq`: the one route to torchdiffeq (Chen et al. 2018): its adaptive methods
  (``dopri5``, ...) with one step size for the whole batch, under the ``per_sample`` error
  norm (each sample within tolerance) or torchdiffeq's own ``batch`` RMS, or its fixed-step
  methods (``rk4``, ...) on ``steps`` equal steps.
- :class:`PerSample`: an embedded Runge-Kutta pair whose step size, time and accept/reject
  decision are per sample (:func:`scoresde.flow.pf_ode.odeint_per_sample`), built from a
  tableau (:mod:`~scoresde.flow.tableau`), a step-size controller
  (:mod:`~scoresde.flow.controller`) and a per-sample error norm (:mod:`~scoresde.flow.norm`).

``log_likelihood``, ``encode`` and ``decode`` take ``integrator=``; their older keyword flags
(``method``, ``rtol``, ``atol``, ``steps``, ``norm``) still work and name the same objects
through :func:`make_integrator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import Tensor

from scoresde.flow.controller import PIController
from scoresde.flow.norm import per_sample_norm
from scoresde.flow.tableau import DOPRI5, ButcherTableau

__all__ = ["NORMS", "Integrator", "PerSample", "Torchdiffeq", "make_integrator", "with_tolerances"]

NORMS = ("independent", "per_sample", "batch")
"""The ``norm`` flag's values: ``independent`` is :class:`PerSample`, the others :class:`Torchdiffeq`."""

Tol = float | tuple[float, ...]


class Integrator(Protocol):
    """What ``log_likelihood`` / ``encode`` / ``decode`` need of an integrator."""

    @property
    def rtol(self) -> Tol: ...  # read-only: the integrators are frozen dataclasses

    @property
    def atol(self) -> Tol: ...

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]: ...


@dataclass(frozen=True)
class Torchdiffeq:
    """``torchdiffeq.odeint`` with one step size for the batch.

    Args:
        method: an adaptive (``dopri5``, ``dopri8``, ``bosh3``, ...) or fixed-step (``rk4``,
            ``euler``, ...) torchdiffeq method.
        rtol, atol: tolerances of adaptive methods (one float, or one per state component).
        steps: number of equal steps of a fixed-step method (``None`` for adaptive ones).
        norm: ``per_sample`` (RMS over each sample's entries, maximum over samples:
            batch-independent accuracy) or ``batch`` (torchdiffeq's RMS over everything, as
            the paper's code does with scipy).
    """

    method: str = "dopri5"
    rtol: Tol = 1e-5
    atol: Tol = 1e-5
    steps: int | None = None
    norm: str = "per_sample"

    def __post_init__(self) -> None:
        from scoresde.flow.pf_ode import check_solver

        check_solver(self.method, self.steps)
        if self.norm not in ("per_sample", "batch"):
            raise ValueError(
                f"unknown norm {self.norm!r} for Torchdiffeq; choose per_sample or batch "
                "(per-sample step sizes: PerSample)"
            )

    def solve(
        self, func: Callable[..., tuple[Tensor, ...]], state: tuple[Tensor, ...], u0: float, u1: float
    ) -> tuple[Tensor, ...]:
        from torchdiffeq import odeint

        from scoresde.flow.pf_ode import FIXED_METHODS

        ref = state[0]
        u = torch.tensor([u0, u1], dtype=ref.dtype, device=ref.device)
        if self.method in FIXED_METHODS:
            grid = torch.linspace(u0, u1, int(self.steps) + 1, dtype=ref.dtype, device=ref.device)  # type: ignore[arg-type]
            fixed = {"grid_constructor": lambda f, y0, t: grid}
            out = odeint(func, state, u, method=self.method, options=fixed)
        else:
            # step_t: land exactly on u1 rather than step past it and interpolate back, which
            # would evaluate the model outside [eps, T] (e.g. at t < 0, where sigma(t) is undefined).
            options: dict = {"step_t": u[1:]}
            if self.norm == "per_sample":
                options["norm"] = per_sample_norm
            try:
                out = odeint(
                    func, state, u, method=self.method, rtol=self.rtol, atol=self.atol, options=options
                )
            except AssertionError as err:  # torchdiffeq's "underflow in dt"
                raise RuntimeError(
                    f"the adaptive ODE solver's step size underflowed ({err}) with rtol={self.rtol}, "
                    f"atol={self.atol}: loosen the tolerances, or the vector field is stiff or not finite"
                ) from None
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
) -> Integrator:
    """The integrator the older keyword flags name.

    ``norm="independent"`` with an adaptive method is :class:`PerSample` (``dopri5`` only);
    anything else is :class:`Torchdiffeq` (fixed-step methods ignore ``norm``).
    """
    from scoresde.flow.pf_ode import ADAPTIVE_METHODS, check_solver

    check_solver(method, steps)
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    if norm == "independent" and method in ADAPTIVE_METHODS:
        if method != "dopri5":
            raise ValueError(
                f"norm='independent' (per-sample step sizes) is implemented for 'dopri5' only; "
                f"use norm='per_sample' or 'batch' with {method!r}"
            )
        return PerSample(rtol=rtol, atol=atol, compact=compact)
    return Torchdiffeq(
        method, rtol=rtol, atol=atol, steps=steps, norm="batch" if norm == "batch" else "per_sample"
    )


def with_tolerances(integrator: Integrator, rtol: Tol, atol: Tol) -> Integrator:
    """A copy of a dataclass integrator with other tolerances (e.g. one per state component)."""
    return replace(integrator, rtol=rtol, atol=atol)  # type: ignore[type-var]
