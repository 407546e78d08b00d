"""The precision planner of :func:`~scoresde.flow.likelihood.log_likelihood` (``target_se``).

Given a requested standard error of a batch mean, the planner chooses the solver's tolerance,
the divergence estimator and the numbers of Hutchinson probes and dequantization draws, from
pilot solves on a few points, and returns a :class:`LikelihoodPlan` (a typed record of the
choices and of the estimates behind them) that later batches of the same data reuse without a
pilot.  It knows nothing of ODEs: it calls back a :class:`PilotSolve` (the likelihood's own solve
on a subset of points at a given tolerance, estimator and replicate count).

The rule (see :func:`make_plan`):

1. **Tolerance.** The pilot points are solved at a tolerance and at one ten times tighter with
   the same random draws, so that their difference is the solver's alone; the error of an
   adaptive Runge-Kutta solve falls about in proportion to its tolerance, so the difference
   measures the looser solve's error.  The first tolerance tried is ``INITIAL_TOLERANCE``
   (the loosest that met ``solver_fraction * target_se`` on the benchmarks), then decades
   tighter until the error is within budget, the tolerance being placed on the power law
   through two measured decades (at most two decades extrapolated).
2. **Replicates.** One loose solve (tolerance ``VARIANCE_TOLERANCE``) with ``PILOT_PROBES``
   probes and, for noisy points (dequantization), two draws per point estimates the per-point
   variances of the probe and of the dequantization noise; the fewest probes (and draws) are
   taken whose Monte-Carlo standard error of the mean is at most ``target_se`` (with a margin
   ``SE_MARGIN`` for the pilot's own noise).
3. **Estimator** (``divergence="auto"``): the exact divergence (``D`` products per evaluation)
   when it costs fewer products than the probes needed, else Hutchinson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from scoresde.flow.likelihood import LikelihoodResult

__all__ = [
    "INITIAL_TOLERANCE",
    "LikelihoodPlan",
    "PilotSolve",
    "PrecisionTarget",
    "make_plan",
]

INITIAL_TOLERANCE = 1e-1  # the first pilot tolerance (see the module docstring)
MIN_TOLERANCE = 1e-6  # the tightest tolerance a plan chooses
PILOT_PROBES = 4
VARIANCE_TOLERANCE = 1e-1  # tolerance of the pilot's replicate solve (variances)
SE_MARGIN = 1.25  # variance margin for the pilot's own estimation noise


@dataclass(frozen=True)
class PrecisionTarget:
    """What ``target_se`` asks for.

    Attributes:
        se: the standard error of the mean, in bits/dim for discrete data, else nats per point.
        points: the number of points of the mean that ``se`` refers to, when this batch is one
            of several of about equal size (default: this batch).  The batch then gets
            ``se * sqrt(points / B)`` for its Monte-Carlo part (independent batches add in
            variance) and ``solver_fraction * se`` for its solver error (a bias that does not
            average out).
        pilot_points: points of the pilot, spread over the batch.
        solver_fraction: the solver's error budget as a fraction of ``se`` (default 0.25: a
            bias that small adds at most 3% to the total error in quadrature).
    """

    se: float
    points: int | None = None
    pilot_points: int = 32
    solver_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not (isinstance(self.se, int | float) and math.isfinite(self.se) and self.se > 0):
            raise ValueError(f"target_se must be a positive number, got {self.se!r}")
        if not 0 < self.solver_fraction < 1:
            raise ValueError(f"solver_fraction must be in (0, 1), got {self.solver_fraction!r}")
        if int(self.pilot_points) < 2:
            raise ValueError(f"pilot_points must be at least 2, got {self.pilot_points}")


@dataclass(frozen=True)
class LikelihoodPlan:
    """The planner's choices and the estimates behind them; pass it back as ``plan``.

    Attributes:
        target_se, target_points: the target it was made for.
        rtol, atol: the chosen tolerance.
        divergence: ``exact`` or ``hutchinson``.
        num_probes: Hutchinson probes per point (0 for the exact divergence).
        draws: dequantization draws per point.
        pilot_points: points the pilot solved.
        pilot_nfe: the pilot's evaluations (0 when reused).
        units: ``bits/dim`` or ``nats``.
        var_point, var_probe: per-point variances of one replicate (nats^2): between
            dequantization draws, and between probes.
        solver_error: the estimated solver error of the mean at the chosen tolerance (units).
    """

    target_se: float
    target_points: int
    rtol: float
    atol: float
    divergence: str
    num_probes: int
    draws: int
    pilot_points: int
    pilot_nfe: int
    units: str
    var_point: float
    var_probe: float
    solver_error: float

    def mc_se(self, batch: int, unit: float) -> float:
        """The Monte-Carlo s.e. of a batch mean of ``batch`` points that this plan predicts."""
        var = self.var_point / self.draws
        if self.divergence == "hutchinson":
            var += self.var_probe / (self.draws * max(1, self.num_probes))
        return math.sqrt(var / batch) * unit


class PilotSolve(Protocol):
    """The likelihood's solve on the pilot points ``index`` of the batch."""

    def __call__(
        self, index: Tensor, tol: float, divergence: str, num_probes: int, draws: int, seed: int
    ) -> LikelihoodResult: ...


def make_plan(
    solve: PilotSolve,
    batch: int,
    dims: int,
    target: PrecisionTarget,
    divergence: str,
    draws: int,
    noisy_points: bool,
    unit: float,
    seed: int,
) -> LikelihoodPlan:
    """Pilot and plan (the rule: see the module docstring).

    Args:
        solve: the pilot solve.
        batch: ``B``, the batch's points; ``dims``: ``D``, entries per point.
        target: the precision asked.
        divergence: ``exact``, ``hutchinson`` or ``auto``.
        draws: the minimum number of dequantization draws.
        noisy_points: whether the points are random (dequantization, eps correction).
        unit: nats to the target's units (``1 / (D ln 2)`` for bits/dim, else 1).
        seed: the pilot's random draws.
    """
    total = batch if target.points is None else int(target.points)
    if total < batch:
        raise ValueError(f"target_points ({total}) must be at least the batch size ({batch})")
    mc_target = target.se * math.sqrt(total / batch)
    budget_solver = target.solver_fraction * target.se
    pilot_div = "exact" if divergence == "exact" else "hutchinson"
    idx = torch.linspace(0, batch - 1, min(batch, int(target.pilot_points))).round().long().unique()
    pilot_nfe, solves = 0, {}

    # (1) Tolerance: the same noise (seed) at every tolerance, one replicate per point.
    def logp(e: float) -> Tensor:
        nonlocal pilot_nfe
        if e not in solves:
            res = solve(idx, 10.0**-e, pilot_div, 1, draws, seed)
            pilot_nfe += res.nfe
            solves[e] = res.logp
        return solves[e]

    def error(e: float) -> float:
        return float((logp(e) - logp(e + 1.0)).abs().double().mean()) * unit

    e0 = -math.log10(INITIAL_TOLERANCE)
    e_max = -math.log10(MIN_TOLERANCE)
    chosen, solver_error, previous, e = e_max, float("nan"), None, e0
    while e < e_max:
        solver_error = error(e)
        if solver_error <= budget_solver:
            chosen = e
            if previous is not None and previous > budget_solver and solver_error > 0:
                # Between the failing decade and this one: the power law through both errors.
                per_decade = math.log10(previous / solver_error)
                if per_decade > 0:
                    chosen = min(e, max(e - 1.0, e - math.log10(budget_solver / solver_error) / per_decade))
                    solver_error = previous * 10.0 ** (-per_decade * (chosen - e + 1.0))
            break
        if previous is not None and solver_error < previous:
            # Two decades measured, the error falls at least half a decade per decade: extrapolate
            # on their power law (at most two decades) instead of solving at tighter tolerances.
            per_decade = math.log10(previous / solver_error)
            if per_decade >= 0.5:
                chosen = e + math.log10(solver_error / budget_solver) / per_decade
                if chosen <= e + 2.0:
                    solver_error = budget_solver
                    break
        previous = solver_error
        e += 1.0
    chosen = min(chosen, e_max)

    # (2) Variances per point of one replicate: dequantization (between draws), probe (within).
    var_probe, var_point = 0.0, 0.0
    if pilot_div == "hutchinson" or noisy_points:
        ref = solve(
            idx, VARIANCE_TOLERANCE, pilot_div, PILOT_PROBES, max(draws, 2) if noisy_points else 1, seed + 1
        )
        pilot_nfe += ref.nfe
        if ref.logp_probes is not None:
            var_probe = float(ref.logp_probes.double().var(1).mean())
        if noisy_points:
            k0 = PILOT_PROBES if ref.logp_probes is not None else 1
            var_point = max(0.0, float(ref.logp_draws.double().var(0).mean()) - var_probe / k0)
    budget = batch * (mc_target / unit) ** 2 / SE_MARGIN  # mean per-point variance allowed

    def counts(estimator: str) -> tuple[int, int]:
        if estimator == "exact" or var_probe == 0.0:
            return max(draws, math.ceil(var_point / budget)), 1
        # Half the budget to the points' own noise at most, the rest to the probes.
        s_count = max(draws, math.ceil(2 * var_point / budget)) if var_point > budget / 2 else draws
        left = budget - var_point / s_count
        return s_count, max(1, math.ceil(var_probe / (s_count * left)))

    # (3) The estimator.
    if divergence == "auto":
        s_e, _ = counts("exact")
        s_h, k_h = counts("hutchinson")
        divergence = "exact" if s_e * (1 + dims) <= s_h * (1 + k_h) else "hutchinson"
    s_count, k = counts(divergence)
    tol = 10.0**-chosen
    return LikelihoodPlan(
        target_se=float(target.se),
        target_points=total,
        rtol=tol,
        atol=tol,
        divergence=divergence,
        num_probes=k if divergence == "hutchinson" else 0,
        draws=s_count,
        pilot_points=int(idx.numel()),
        pilot_nfe=pilot_nfe,
        units="bits/dim" if unit != 1.0 else "nats",
        var_point=var_point,
        var_probe=var_probe,
        solver_error=solver_error,
    )
