"""Bespoke non-stationary solvers: a few-step ODE solver whose coefficients are learned per model.

A fixed-step solver of the probability-flow ODE that makes one model evaluation per step (DDIM,
DPM-Solver++(2M)/(3M), UniPC, DEIS, iPNDM, ...) is, for a fixed grid, a *linear* map of the
starting point ``x_T`` and of the model's data predictions ``D_j = D(z_j, t_j)`` at the points
``z_j`` where it evaluates the model: every update is a linear combination of these with
coefficients that depend only on the grid.  Shaul et al. 2024 ("Bespoke Non-Stationary Solvers
for Fast Sampling of Diffusion and Flow Models", BNS, Sec. 3, Eq. 9-11) take that family whole:

    z_0 = x_T,    D_i = D(z_i, t_i),    z_{i+1} = a_i x_T + sum_{j <= i} b_{ij} D_j,

for ``i = 0, ..., n - 1``, with free coefficients ``a_i``, ``b_{ij}`` (a lower-triangular
matrix) and free times ``t_0 = T > t_1 > ... > t_n = t_end``; ``z_n`` is the output.  The paper
writes it with the velocity field; the data prediction spans the same family (each velocity is
a linear combination of ``z_i`` and ``D_i``, and each ``z_i`` of ``x_T`` and earlier ``D_j``).
Every base solver above is one point of the family, so the coefficients can start at a good
solver (:func:`scoresde.sampling.bespoke_fit.bespoke_from_base`) and be trained on prior draws
to minimise the endpoint error against a tight solve of the same ODE
(:func:`scoresde.sampling.bespoke_fit.fit_bespoke`).

:class:`BespokeSolver` holds one such solver (JSON for storage beside a checkpoint);
``ss.sample(model, method="bespoke", solver=solver, ...)`` runs it: ``n`` model evaluations on
its own times, between the run's ``t_start`` and ``t_end``, which must be the solver's ends.

A solver trained through the analytic first step (Zhou et al. 2024;
:func:`scoresde.sampling.analytic_first_step`) carries the stored data prediction at
``times[0]`` (one mean, or one per label): its first prediction ``D_0`` is that mean, not a model
evaluation, so it runs ``n`` steps on ``n - 1`` evaluations, on the bare model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["BespokeSolver", "bespoke", "bespoke_solve"]


@dataclass
class BespokeSolver:
    """The coefficients and times of one bespoke non-stationary solver (BNS, Eq. 9-11).

    ``z_{i+1} = a[i] x_T + sum_{j <= i} b[i, j] D(z_j, times[j])`` for ``i < steps``; the output
    is ``z_steps`` at ``times[-1]``.

    Attributes:
        times: decreasing times ``(steps + 1,)``, float64: the evaluation times and the end.
        a: the coefficients of ``x_T``, ``(steps,)``, float64.
        b: the coefficients of the data predictions, ``(steps, steps)``, lower triangular, float64.
        base: the solver it was initialised at (``"ddim"``, ``"unipc"``, ...; ``""`` if none).
        grid: the base grid's name (or ``"tensor"`` for a given grid).
        options: the base solver's options.
        shape: the shape ``D`` of one sample it was trained on (``()`` if untrained).
        pilot_error_start: RMS endpoint error of the base solver on the training draws.
        pilot_error: RMS endpoint error of this solver on the training draws.
        pilot_nfe: forward model evaluations (batched) spent fitting it, the reference included.
        pilot: number of training draws; seconds: wall time of the fit; iterations: Adam steps.
        first_step_mean: ``None``, or the analytic first step's data prediction at ``times[0]``
            (shape ``D``, or ``(first_step_classes, *D)``: one row per label), float64; then
            ``D_0`` is this mean and the solver makes ``steps - 1`` model evaluations.
        first_step_classes: ``None`` (one mean) or the number of label rows of ``first_step_mean``.
    """

    times: Tensor
    a: Tensor
    b: Tensor
    base: str = ""
    grid: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    pilot_error_start: float = math.nan
    pilot_error: float = math.nan
    pilot_nfe: int = 0
    pilot: int = 0
    seconds: float = 0.0
    iterations: int = 0
    first_step_mean: Tensor | None = None
    first_step_classes: int | None = None

    def __post_init__(self) -> None:
        self.times = torch.as_tensor(self.times, dtype=torch.float64).detach().clone()
        self.a = torch.as_tensor(self.a, dtype=torch.float64).detach().clone()
        self.b = torch.as_tensor(self.b, dtype=torch.float64).detach().clone()
        if self.times.ndim != 1 or len(self.times) < 2:
            raise ValueError(f"a bespoke solver needs at least 2 times, got shape {tuple(self.times.shape)}")
        n = len(self.times) - 1
        if not bool(torch.isfinite(self.times).all()) or not bool((self.times[1:] < self.times[:-1]).all()):
            raise ValueError("the times of a bespoke solver must be finite and strictly decreasing")
        if tuple(self.a.shape) != (n,):
            raise ValueError(
                f"a bespoke solver of {n} steps needs {n} coefficients a, got {tuple(self.a.shape)}"
            )
        if tuple(self.b.shape) != (n, n):
            raise ValueError(
                f"a bespoke solver of {n} steps needs coefficients b of shape ({n}, {n}), "
                f"got {tuple(self.b.shape)}"
            )
        if not bool(torch.isfinite(self.a).all() and torch.isfinite(self.b).all()):
            raise ValueError("the coefficients of a bespoke solver must be finite")
        if bool((torch.triu(self.b, diagonal=1) != 0).any()):
            raise ValueError("b must be lower triangular: step i combines the predictions D_0 .. D_i only")
        self.shape = tuple(int(s) for s in self.shape)
        if self.first_step_mean is None:
            if self.first_step_classes is not None:
                raise ValueError("first_step_classes needs first_step_mean (the per-label means)")
        else:
            self.first_step_mean = torch.as_tensor(self.first_step_mean, dtype=torch.float64).detach().clone()
            if not bool(torch.isfinite(self.first_step_mean).all()):
                raise ValueError("the analytic first step's mean of a bespoke solver must be finite")
            c = self.first_step_classes
            if c is not None:
                if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                    raise ValueError(f"first_step_classes must be an integer >= 1 or None, got {c!r}")
                if self.first_step_mean.ndim < 1 or self.first_step_mean.shape[0] != c:
                    raise ValueError(
                        f"first_step_mean needs one row per class: shape ({c}, *D), "
                        f"got {tuple(self.first_step_mean.shape)}"
                    )

    @property
    def steps(self) -> int:
        """The number of steps (= model evaluations, one fewer with an analytic first step)."""
        return len(self.times) - 1

    @property
    def evaluations(self) -> int:
        """Model evaluations of one solve: ``steps``, less the free first one of an analytic first step."""
        return self.steps - (0 if self.first_step_mean is None else 1)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (floats written with ``repr``: the round trip is exact); the
        analytic first step's keys only where it has one."""
        afs: dict[str, Any] = {}
        if self.first_step_mean is not None:
            afs = {
                "first_step_mean": self.first_step_mean.tolist(),
                "first_step_classes": self.first_step_classes,
            }
        return {
            "times": [float(v) for v in self.times.tolist()],
            "a": [float(v) for v in self.a.tolist()],
            "b": [[float(v) for v in row[: i + 1]] for i, row in enumerate(self.b.tolist())],
            "base": self.base,
            "grid": self.grid,
            "options": {k: _json_value(v) for k, v in self.options.items()},
            "shape": list(self.shape),
            "pilot_error_start": self.pilot_error_start,
            "pilot_error": self.pilot_error,
            "pilot_nfe": self.pilot_nfe,
            "pilot": self.pilot,
            "seconds": self.seconds,
            "iterations": self.iterations,
            **afs,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BespokeSolver:
        """Inverse of :meth:`to_json` (``b`` stored as its lower-triangular rows)."""
        rows = d["b"]
        n = len(rows)
        b = torch.zeros(n, n, dtype=torch.float64)
        for i, row in enumerate(rows):
            if len(row) != i + 1:
                raise ValueError(f"row {i} of b must have {i + 1} entries (lower triangular), got {len(row)}")
            b[i, : i + 1] = torch.tensor(row, dtype=torch.float64)
        return cls(
            times=torch.tensor(d["times"], dtype=torch.float64),
            a=torch.tensor(d["a"], dtype=torch.float64),
            b=b,
            base=str(d.get("base", "")),
            grid=str(d.get("grid", "")),
            options=dict(d.get("options", {})),
            shape=tuple(int(s) for s in d.get("shape", ())),
            pilot_error_start=float(d.get("pilot_error_start", math.nan)),
            pilot_error=float(d.get("pilot_error", math.nan)),
            pilot_nfe=int(d.get("pilot_nfe", 0)),
            pilot=int(d.get("pilot", 0)),
            seconds=float(d.get("seconds", 0.0)),
            iterations=int(d.get("iterations", 0)),
            first_step_mean=(
                None
                if d.get("first_step_mean") is None
                else torch.tensor(d["first_step_mean"], dtype=torch.float64)
            ),
            first_step_classes=(
                None if d.get("first_step_classes") is None else int(d["first_step_classes"])
            ),
        )


def _json_value(v: Any) -> Any:
    """``v`` if JSON takes it, else its type's name (the options are a record of the base; the
    coefficients alone define the solver)."""
    return v if isinstance(v, (bool, int, float, str, type(None))) else f"<{type(v).__name__}>"


def bespoke_solve(
    model: ScoreFunction,
    x: Tensor,
    times: Tensor | Sequence[Tensor],
    a: Tensor | Sequence[Tensor],
    b: Tensor,
    *,
    y: Tensor | None = None,
    callback: Callback | None = None,
    first: Tensor | None = None,
) -> Tensor:
    """``z_n`` of BNS's recursion from ``z_0 = x`` (differentiable in ``times``, ``a``, ``b``).

    Args:
        model: the score model (its :meth:`~scoresde.models.ScoreFunction.denoise` is called).
        x: the start ``x_T: (B, *D)``.
        times: ``steps + 1`` decreasing times (0-d tensors of ``x``'s dtype, or one tensor).
        a, b: the coefficients (tensors of ``x``'s dtype; gradients flow through them).
        y: labels for class-conditional models.
        callback: ``callback(i, t_{i+1}, z_{i+1})`` after every step.
        first: the first data prediction ``D_0`` (``(B, *D)``) if given (an analytic first
            step): the model is then not evaluated at ``times[0]``.
    """
    steps = len(a)
    preds: list[Tensor] = []
    z = x
    for i in range(steps):
        preds.append(first if i == 0 and first is not None else model.denoise(z, times[i], y))
        z = a[i] * x
        for j in range(i + 1):
            z = z + b[i, j] * preds[j]
        if callback is not None:
            callback(i, times[i + 1], z)
    return z


def check_ends(solver: BespokeSolver, ts: Tensor) -> None:
    """Raise ``ValueError`` unless the run's interval ``ts[0], ts[-1]`` is the solver's."""
    t0, t1 = float(ts[0]), float(ts[-1])
    s0, s1 = float(solver.times[0]), float(solver.times[-1])
    if not (
        math.isclose(t0, s0, rel_tol=1e-9, abs_tol=1e-12)
        and math.isclose(t1, s1, rel_tol=1e-9, abs_tol=1e-12)
    ):
        raise ValueError(
            f"the bespoke solver was fitted on [{s1:g}, {s0:g}] but the run goes from t_start={t0:g} to "
            f"t_end={t1:g}; pass t_start and t_end of the solver (its times[0] and times[-1])"
        )


def bespoke(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    solver: BespokeSolver | None = None,
) -> Tensor:
    """A learned non-stationary multistep solver (Shaul et al. 2024, BNS, Eq. 9-11), 1 NFE per step.

    Steps on ``solver.times`` (``solver.steps`` model evaluations, ``steps - 1`` with an analytic
    first step: its stored mean for the label of each sample is ``D_0``); the run's grid gives
    only its ends, which must be the solver's (:func:`check_ends`).  Fit one with
    :func:`scoresde.sampling.bespoke_fit.fit_bespoke`.

    Raises:
        ValueError: no ``solver``, a run over another interval than the solver's, or (with per-label
            first-step means) labels missing or out of range.
    """
    if not isinstance(solver, BespokeSolver):
        raise ValueError(f"method 'bespoke' needs solver= a BespokeSolver, got {type(solver).__name__}")
    check_ends(solver, ts)
    dtype, device = x.dtype, x.device
    times = solver.times.to(device=device, dtype=dtype).unbind()
    a = solver.a.to(device=device, dtype=dtype)
    b = solver.b.to(device=device, dtype=dtype)
    first = None
    if solver.first_step_mean is not None:
        from scoresde.sampling.first_step import AnalyticFirstStep

        # Its answer at times[0] (the label checks included); the model is not called there.
        afs = AnalyticFirstStep(
            model, solver.first_step_mean, float(solver.times[0]), solver.first_step_classes
        )
        first = afs(x, times[0].expand(x.shape[0]), y)
    return bespoke_solve(model, x, times, a, b, y=y, callback=callback, first=first)
