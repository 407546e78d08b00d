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
   measures the looser solve's error.  The error of the *mean* is what the target bounds, so the
   pilot's estimate is ``|mean difference| + 2 standard errors`` over the pilot points (an upper
   confidence bound on the bias of the mean).  The first tolerance tried comes from the rule
   ``TOLERANCE_RULE * budget / D`` (the budget ``solver_fraction * target_se`` in nats per
   point, ``D`` entries per point: the error of the log-density sums ``D`` coordinates' errors),
   which the benchmarks (``benchmarks/likelihood_target_se.py``) found to pass the first time or
   nearly.  When it passes it is kept (never loosened beyond what was measured: at loose
   tolerances the step sequence, and with it the error, changes abruptly with the batch, so a
   subset's error stops predicting the batch's), else decades tighter are tried and the
   tolerance placed on the power law through two measured decades (at most two decades
   extrapolated).  A
   :class:`~scoresde.flow.integrators.FixedStepIntegrator` gets its number of steps instead:
   ``N`` against ``2N`` steps from ``FIRST_STEPS`` on, Richardson's estimate of the ``N``-step
   error from the method's order, the fewest steps the order's law allows.
2. **Replicates.** One more pilot solve at the loosest level (``MAX_TOLERANCE``, or
   ``FIRST_STEPS`` steps) carries ``PILOT_PROBES`` probes per point (more when the batch has
   fewer than ``PILOT_REPLICATES / PILOT_PROBES`` points) and, for noisy points, two
   dequantization draws; its replicates give the per-point variances of the probe and of the
   dequantization noise, and the
   fewest probes (and draws) are taken whose Monte-Carlo standard error of the mean is at most
   ``target_se`` (with a margin ``SE_MARGIN`` for the pilot's own noise; at most
   ``MAX_PROBES`` / ``MAX_DRAWS``, beyond which the plan misses and says so, see
   :meth:`LikelihoodPlan.kept`).
3. **Estimator** (``divergence="auto"``): the exact divergence (``D`` products per evaluation)
   when it costs fewer products than the probes needed, else Hutchinson.

**Multilevel correction** (fixed-step integrators, by default; ``PrecisionTarget(multilevel=False)``
turns it off): the control variate of multilevel Monte Carlo (Giles 2008, "Multilevel Monte
Carlo path simulation", Operations Research 56(3), its telescoping sum
``E[P_L] = E[P_0] + sum_l E[P_l - P_{l-1}]``) with two levels.  The solver's
error of the *mean* is a systematic bias, so it need not be made small by the batch's solve:

    mean_B(ll_N) + mean_P(ll_F - ll_N)

solves the whole batch at a coarse ``N`` and adds the mean difference between a fine level
``F`` and ``N``, both solved on the ``P`` pilot points with the *same* noise (so the difference
is the solver's alone and varies little from point to point).  It is unbiased up to the fine
level's own error; its extra variance ``var(ll_F - ll_N) / P`` adds to the Monte-Carlo variance
(the result's ``mc_se`` includes it in quadrature, ``correction_se`` alone).  The rule:

1. **Fine level.** ``N0 = FIRST_STEPS``, ``2 N0``, ``4 N0``, ... on the pilot points (one
   replicate, the same noise) until Richardson's estimate of the finer solve's error,
   ``(|mean difference| + 2 s.e.) / (2^p - 1)`` of the pair ``(M, 2M)``, is within
   ``solver_fraction * se``; ``F = 2M``.
2. **Variances, cheaply.** One more replicate at ``N0`` with independent noise: half the mean
   squared difference to the level-``N0`` solve is the variance of one replicate (probe and
   dequantization together).  When one probe (and ``draws`` draws) meets the Monte-Carlo budget
   left by the correction, that is the plan; otherwise the replicate solve of step 2 above
   separates the two variances.  (On the 28x28 UNet the 4-probe, 2-draw replicate solve was a
   quarter of the whole pipeline's time, while one probe met the target by far.)
3. **Coarse level.** Every pilot level ``N <= F`` is a candidate (``N = F``: no correction); its
   correction's variance ``var(ll_F - ll_N) / P`` is taken from the Monte-Carlo budget
   ``se^2 / SE_MARGIN`` (the rest goes to probes and draws), and the candidate with the fewest
   products ``N * draws * (1 + probes)`` per point wins.

A reused plan (``plan=``, another batch of the same data) keeps its correction: the stored mean
``mean_P(ll_F - ll_N)`` estimates the data distribution's mean solver error at ``N``, so a later
batch adds it without any pilot; its standard error there is ``sqrt(var (1/P + 1/B))`` (the
pilot's estimate, plus how far this batch's own mean error may sit from the distribution's).  On
the first batch the pilot points are part of the batch and ``sqrt(var / P)`` is reported.  The
``var / P`` part is shared by every batch that reuses the plan: combining batches, it adds
linearly, not as an independent error per batch (as
:func:`~scoresde.flow.batched.log_likelihood_batches` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from scoresde.flow.integrators import FixedStepIntegrator, Integrator, with_tolerances

if TYPE_CHECKING:
    from scoresde.flow.likelihood import LikelihoodResult

__all__ = [
    "TOLERANCE_RULE",
    "LikelihoodPlan",
    "PilotSolve",
    "PrecisionTarget",
    "make_plan",
]

TOLERANCE_RULE = 1.0  # first pilot tolerance = TOLERANCE_RULE * solver budget (nats) / D
MAX_TOLERANCE = 1e-1  # the loosest tolerance a plan chooses
MIN_TOLERANCE = 1e-6  # the tightest tolerance a plan chooses
MAX_PROBES = 256  # the most Hutchinson probes per point a plan takes
MAX_DRAWS = 64  # the most dequantization draws per point a plan takes
FIRST_STEPS = 8  # fixed-step integrators: the first pilot step count
MAX_STEPS = 1024  # fixed-step integrators: the most steps a plan takes
PILOT_PROBES = 2  # replicates per pilot point (probes; K > 2 costs more in the batched VJP than it saves)
PILOT_REPLICATES = 128  # ... but at least this many probe replicates in all (small batches: more per point)
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
        pilot_points: points of the pilot, spread over the batch (32: the solver-error bound's
            own standard error shrinks as ``1/sqrt(points)`` while the pilot's cost grows with
            them; the probe variance comes from ``PILOT_REPLICATES`` replicates whatever their
            number; on the digits benchmark 64 points made the pilot cost more than the solve).
        solver_fraction: the solver's error budget as a fraction of ``se`` (default 0.25: a
            bias that small adds at most 3% to the total error in quadrature).
        multilevel: fixed-step integrators: solve the batch at a coarse number of steps and
            correct its mean by the fine-minus-coarse difference on the pilot points (see the
            module docstring, Giles 2008); the fine level's error is what ``solver_fraction``
            bounds.  ``None`` (default): on for a
            :class:`~scoresde.flow.integrators.FixedStepIntegrator` (the default integrator of
            ``target_se``), off for an adaptive one; ``False``: the plain fixed-step plan.
    """

    se: float
    points: int | None = None
    pilot_points: int = 32
    solver_fraction: float = 0.25
    multilevel: bool | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.se, int | float) and math.isfinite(self.se) and self.se > 0):
            raise ValueError(f"target_se must be a positive number, got {self.se!r}")
        if not 0 < self.solver_fraction < 1:
            raise ValueError(f"solver_fraction must be in (0, 1), got {self.solver_fraction!r}")
        if int(self.pilot_points) < 2:
            raise ValueError(f"pilot_points must be at least 2, got {self.pilot_points}")
        if self.multilevel is not None and not isinstance(self.multilevel, bool):
            raise TypeError(f"multilevel must be a bool or None, got {self.multilevel!r}")


@dataclass(frozen=True)
class LikelihoodPlan:
    """The planner's choices and the estimates behind them; pass it back as ``plan``.

    Attributes:
        target_se, target_points: the target it was made for.
        rtol, atol: the chosen tolerance (adaptive integrators), else ``None``.
        steps: the chosen number of steps (fixed-step integrators), else ``None``.
        divergence: ``exact`` or ``hutchinson``.
        num_probes: Hutchinson probes per point (0 for the exact divergence).
        draws: dequantization draws per point.
        pilot_points: points the pilot solved.
        pilot_nfe: the pilot's evaluations (0 when reused).
        units: ``bits/dim`` or ``nats``.
        var_point, var_probe: per-point variances of one replicate (nats^2): between
            dequantization draws, and between probes.
        solver_error: the estimated bound on the solver's error of the mean at the chosen
            tolerance (units; see the module docstring); with the multilevel correction, the
            fine level's (the bias that remains after the correction).
        solver_budget: ``solver_fraction * target_se``, what ``solver_error`` was to meet.
        fine_steps: the multilevel correction's fine level ``F`` (``steps`` is the coarse
            ``N`` the batch is solved at, ``N = F`` when no correction pays; ``None``: not a
            multilevel plan).
        correction: ``mean_P(ll_F - ll_N)`` over the pilot points (nats per point), added to
            every point's log-likelihood.
        correction_var: the per-point variance of ``ll_F - ll_N`` (nats^2).
    """

    target_se: float
    target_points: int
    rtol: float | None
    atol: float | None
    steps: int | None
    divergence: str
    num_probes: int
    draws: int
    pilot_points: int
    pilot_nfe: int
    units: str
    var_point: float
    var_probe: float
    solver_error: float
    solver_budget: float
    fine_steps: int | None = None
    correction: float = 0.0
    correction_var: float = 0.0

    def kept(self, mc_se: float | None, solver_error: float | None) -> bool:
        """Whether a result with these errors keeps the promise: Monte-Carlo s.e. at most
        ``target_se`` and the solver's error within its budget (both finite).  A plan can miss
        when the target asks for more than ``MAX_PROBES`` probes, ``MAX_DRAWS`` draws or a
        tolerance tighter than ``MIN_TOLERANCE``."""
        if (
            mc_se is None
            or solver_error is None
            or not math.isfinite(mc_se)
            or not math.isfinite(solver_error)
        ):
            return False
        return mc_se <= self.target_se * (1 + 1e-9) and solver_error <= self.solver_budget * (1 + 1e-9)

    def integrator(self, base: Integrator) -> Integrator:
        """``base`` with the plan's tolerances (adaptive) or steps (fixed-step)."""
        if self.steps is not None:
            return replace(base, steps=self.steps)  # type: ignore[type-var]
        return with_tolerances(base, self.rtol, self.atol)  # type: ignore[arg-type]

    def correction_se(self, batch: int | None, unit: float) -> float:
        """The standard error of the multilevel correction on a batch of ``batch`` points:
        ``sqrt(correction_var / pilot_points)`` for the batch the pilot came from (``batch``
        ``None``), ``sqrt(correction_var (1 / pilot_points + 1 / batch))`` for another batch
        of the same data (a reused plan); ``0.0`` without a correction."""
        if self.fine_steps is None:
            return 0.0
        inv = 1.0 / self.pilot_points + (0.0 if batch is None else 1.0 / batch)
        return math.sqrt(self.correction_var * inv) * unit

    def mc_se(self, batch: int, unit: float) -> float:
        """The Monte-Carlo s.e. of a batch mean of ``batch`` points that this plan predicts."""
        var = self.var_point / self.draws
        if self.divergence == "hutchinson":
            var += self.var_probe / (self.draws * max(1, self.num_probes))
        return math.sqrt(var / batch) * unit


class PilotSolve(Protocol):
    """The likelihood's solve on the pilot points ``index`` of the batch."""

    def __call__(
        self,
        index: Tensor,
        integrator: Integrator,
        divergence: str,
        num_probes: int,
        draws: int,
        seed: int,
        /,
    ) -> LikelihoodResult: ...


FIXED_ORDERS = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


def make_plan(
    solve: PilotSolve,
    integrator: Integrator,
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
        integrator: the user's integrator: an adaptive one gets its tolerances chosen, a
            :class:`~scoresde.flow.integrators.FixedStepIntegrator` its number of steps.
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
    fixed = isinstance(integrator, FixedStepIntegrator)
    # The accuracy pilot: one replicate per point, the same noise (seed) at every level, so that
    # differences between levels are the solver's alone.
    pilot_nfe, solves = 0, {}

    def run(level: float) -> LikelihoodResult:
        nonlocal pilot_nfe
        if level not in solves:
            if fixed:
                how: Integrator = replace(integrator, steps=int(level))  # type: ignore[type-var]
            else:
                how = with_tolerances(integrator, 10.0**-level, 10.0**-level)
            solves[level] = solve(idx, how, pilot_div, 1, draws, seed)
            pilot_nfe += solves[level].nfe
        return solves[level]

    def bound(a: float, b: float) -> float:
        # An upper bound on the error of the mean: |mean difference| + 2 standard errors.
        diff = (run(a).logp - run(b).logp).double()
        spread = float(diff.std() / math.sqrt(diff.numel())) if diff.numel() > 1 else float(diff.abs().max())
        return (abs(float(diff.mean())) + 2.0 * spread) * unit

    if target.multilevel or (target.multilevel is None and fixed):
        if not fixed:
            raise ValueError(
                "multilevel=True corrects a FixedStepIntegrator's coarse solve; got "
                f"{type(integrator).__name__} (adaptive plans choose a tolerance instead)"
            )
        return _plan_multilevel(
            solve, integrator, run, bound, idx, batch, total, dims, target, divergence, pilot_div,
            draws, noisy_points, unit, seed, lambda: pilot_nfe,
        )  # fmt: skip
    level: float  # fixed: a number of steps; adaptive: a tolerance exponent
    if fixed:
        level, solver_error = _plan_steps(bound, integrator.method, budget_solver)  # type: ignore[attr-defined]
    else:
        level, solver_error = _plan_tolerance(bound, budget_solver / unit / dims, budget_solver)
    # (2) Variances per point of one replicate: dequantization (between draws), probe (within),
    # from one cheap solve with replicates at the loosest level (a replicate's own solver error
    # only adds to the spread it measures, so the counts err on the safe side).
    var_probe, var_point = 0.0, 0.0
    if pilot_div == "hutchinson" or noisy_points:
        loose = (
            replace(integrator, steps=FIRST_STEPS)  # type: ignore[type-var]
            if fixed
            else with_tolerances(integrator, MAX_TOLERANCE, MAX_TOLERANCE)
        )
        var_point, var_probe, nfe = _replicate_variances(
            solve, idx, loose, pilot_div, draws, noisy_points, seed + 1
        )
        pilot_nfe += nfe
    budget = max(batch * (mc_target / unit) ** 2 / SE_MARGIN, 1e-300)  # mean per-point variance allowed
    # (3) The estimator.
    divergence, s_count, k = _estimator(divergence, var_point, var_probe, budget, draws, dims)
    tol = None if fixed else 10.0**-level
    return LikelihoodPlan(
        target_se=float(target.se),
        target_points=total,
        rtol=tol,
        atol=tol,
        steps=int(level) if fixed else None,
        divergence=divergence,
        num_probes=k if divergence == "hutchinson" else 0,
        draws=s_count,
        pilot_points=int(idx.numel()),
        pilot_nfe=pilot_nfe,
        units="bits/dim" if unit != 1.0 else "nats",
        var_point=var_point,
        var_probe=var_probe,
        solver_error=solver_error,
        solver_budget=budget_solver,
    )


def _ceil(ratio: float, cap: int) -> int:
    """``ceil(ratio)``, at least 1 and at most ``cap`` (``cap`` for a non-finite ratio)."""
    return cap if not ratio < cap else max(1, math.ceil(ratio))


def _replicate_variances(
    solve: PilotSolve,
    idx: Tensor,
    loose: Integrator,
    pilot_div: str,
    draws: int,
    noisy_points: bool,
    seed: int,
) -> tuple[float, float, int]:
    """``(var_point, var_probe, nfe)``: the per-point variances of one replicate between
    dequantization draws and between probes, from one solve with replicates at the loose level
    ``loose`` (a replicate's own solver error only adds to the spread it measures, so the counts
    err on the safe side), and that solve's NFE."""
    k0 = max(PILOT_PROBES, math.ceil(PILOT_REPLICATES / idx.numel())) if pilot_div == "hutchinson" else 1
    ref = solve(idx, loose, pilot_div, k0, max(draws, 2) if noisy_points else draws, seed)
    var_probe, var_point = 0.0, 0.0
    if ref.logp_probes is not None and ref.logp_probes.shape[1] > 1:
        var_probe = float(ref.logp_probes.double().var(1).mean())
    if noisy_points and ref.logp_draws.shape[0] > 1:
        var_point = max(0.0, float(ref.logp_draws.double().var(0).mean()) - var_probe / k0)
    return var_point, var_probe, ref.nfe


def _estimator(
    divergence: str, var_point: float, var_probe: float, budget: float, draws: int, dims: int
) -> tuple[str, int, int]:
    """``(estimator, draws, probes)`` whose mean per-point variance is within ``budget``;
    ``auto`` takes the exact divergence when its products (``draws (1 + D)``) are at most
    Hutchinson's (``draws (1 + probes)``)."""

    def counts(estimator: str) -> tuple[int, int]:
        if estimator == "exact" or var_probe == 0.0:
            return max(draws, _ceil(var_point / budget, MAX_DRAWS)) if var_point else draws, 1
        # Half the budget to the points' own noise at most, the rest to the probes.
        s_count = max(draws, _ceil(2 * var_point / budget, MAX_DRAWS)) if var_point > budget / 2 else draws
        left = budget - var_point / s_count
        return s_count, MAX_PROBES if not left > 0 else _ceil(var_probe / (s_count * left), MAX_PROBES)

    if divergence == "auto":
        s_e, _ = counts("exact")
        s_h, k_h = counts("hutchinson")
        divergence = "exact" if s_e * (1 + dims) <= s_h * (1 + k_h) else "hutchinson"
    s_count, k = counts(divergence)
    return divergence, s_count, k


def _plan_tolerance(
    bound: Callable[[float, float], float], budget_nats_per_dim: float, budget: float
) -> tuple[float, float]:
    """The tolerance exponent ``e`` (tolerance ``10^-e``) and its error bound (the rule: see the
    module docstring); ``bound(e, e + 1)`` is the error of the solve at ``10^-e``."""
    e0 = -math.log10(min(MAX_TOLERANCE, max(MIN_TOLERANCE * 10, TOLERANCE_RULE * budget_nats_per_dim)))
    e0 = min(max(round(e0 * 2) / 2, -math.log10(MAX_TOLERANCE)), -math.log10(MIN_TOLERANCE) - 1.0)
    e_max = -math.log10(MIN_TOLERANCE)
    chosen, solver_error, previous, e = e_max, float("nan"), None, e0
    while e < e_max:
        solver_error = bound(e, e + 1.0)
        if solver_error <= budget:
            chosen = e
            if previous is not None and previous > budget and solver_error > 0:
                # Between the failing decade and this one: the power law through both errors.
                per_decade = math.log10(previous / solver_error)
                if per_decade > 0:
                    chosen = min(e, max(e - 1.0, e - math.log10(budget / solver_error) / per_decade))
                    solver_error = previous * 10.0 ** (-per_decade * (chosen - e + 1.0))
            break
        if previous is None and solver_error > 0 and math.log10(solver_error / budget) <= 1.0:
            # Within a decade of the budget: the proportional law (the error of an adaptive
            # Runge-Kutta solve scales about like its tolerance) places the tolerance between
            # the two measured ones, the tighter of which (ten times the accuracy) is in budget.
            chosen, solver_error = e + math.log10(solver_error / budget), budget
            break
        if previous is not None and solver_error < previous:
            # Two decades measured, the error falls at least half a decade per decade: extrapolate
            # on their power law (at most two decades) instead of solving at tighter tolerances.
            per_decade = math.log10(previous / solver_error)
            if per_decade >= 0.5:
                chosen = e + math.log10(solver_error / budget) / per_decade
                if chosen <= e + 2.0:
                    solver_error = budget
                    break
        previous = solver_error
        e += 1.0
    return min(max(chosen, -math.log10(MAX_TOLERANCE)), e_max), solver_error


def _plan_steps(bound: Callable[[float, float], float], method: str, budget: float) -> tuple[int, float]:
    """The number of equal steps and its error bound: ``N`` against ``2N`` steps from
    ``FIRST_STEPS`` on; Richardson's estimate ``|difference| 2^p / (2^p - 1)`` (order ``p``) of
    the ``N``-step error; ``N`` when in budget, else the steps the order's law asks for when they
    are at most ``2N`` (whose solve is then the check), else the next pair."""
    p = FIXED_ORDERS[method]
    richardson = 2.0**p / (2.0**p - 1.0)
    n = FIRST_STEPS
    while True:
        err = bound(n, 2 * n) * richardson
        if err <= budget:
            return n, err
        # The order's law from the N-step error: the steps it needs, if the 2N solve covers them.
        need = math.ceil(n * (err / budget) ** (1.0 / p))
        if need <= 2 * n or 2 * n > MAX_STEPS:
            need = min(need, 2 * n)
            return need, err * (n / need) ** p
        n *= 2


def _plan_multilevel(
    solve: PilotSolve,
    integrator: Integrator,
    run: Callable[[float], LikelihoodResult],
    bound: Callable[[float, float], float],
    idx: Tensor,
    batch: int,
    total: int,
    dims: int,
    target: PrecisionTarget,
    divergence: str,
    pilot_div: str,
    draws: int,
    noisy_points: bool,
    unit: float,
    seed: int,
    nfe_so_far: Callable[[], int],
) -> LikelihoodPlan:
    """The multilevel plan of :func:`make_plan` (the rule: the module docstring's "Multilevel
    correction"); ``run(n)`` is the pilot's ``n``-step solve with the shared noise."""
    p = FIXED_ORDERS[integrator.method]  # type: ignore[attr-defined]
    budget_solver = target.solver_fraction * target.se
    # (1) The fine level: Richardson's estimate of the 2M-step error from the pair (M, 2M).
    m = FIRST_STEPS
    while True:
        fine_error = bound(m, 2 * m) / (2.0**p - 1.0)
        if fine_error <= budget_solver or 4 * m > MAX_STEPS:
            break
        m *= 2
    fine = 2 * m
    levels = [n for n in (FIRST_STEPS * 2**j for j in range(32)) if n <= fine]
    extra_nfe = 0
    # (2) The variance of one replicate (of ``draws`` draws and one probe): the level-N0 solve
    # against one more with independent noise.
    v_rep = 0.0
    if pilot_div == "hutchinson" or noisy_points:
        rep = solve(idx, replace(integrator, steps=FIRST_STEPS), pilot_div, 1, draws, seed + 1)  # type: ignore[type-var]
        extra_nfe += rep.nfe
        v_rep = float((run(FIRST_STEPS).logp - rep.logp).double().pow(2).mean() / 2)
    split: list[float] = []  # (var_point, var_probe) from the full replicate solve, when needed

    def variances() -> tuple[float, float]:
        nonlocal extra_nfe
        if not split:
            loose = replace(integrator, steps=FIRST_STEPS)  # type: ignore[type-var]
            vp, vq, nfe = _replicate_variances(solve, idx, loose, pilot_div, draws, noisy_points, seed + 2)
            extra_nfe += nfe
            split.extend((vp, vq))
        return split[0], split[1]

    def counts(budget: float) -> tuple[str, int, int, float, float]:
        # (divergence, draws, probes, var_point, var_probe) meeting the per-point budget.
        if not v_rep > budget:
            # One replicate suffices; the combined variance stands for the probe's (or the point's).
            name = "exact" if pilot_div == "exact" else "hutchinson"
            return (
                name,
                draws,
                1,
                (v_rep * draws if name == "exact" else 0.0),
                (v_rep * draws if name == "hutchinson" else 0.0),
            )
        var_point, var_probe = variances()
        name, s, k = _estimator(divergence, var_point, var_probe, budget, draws, dims)
        return name, s, k, var_point, var_probe

    # (3) The coarse level: the fewest products per point within the Monte-Carlo budget.
    allowed = (target.se / unit) ** 2 / SE_MARGIN  # variance of the mean over ``total`` points (nats^2)
    fine_logp = run(fine).logp.double()
    best: tuple[float, int, tuple[str, int, int, float, float], float, float] | None = None
    for n in levels:
        d = fine_logp - run(n).logp.double()
        corr_var = float(d.var()) if n < fine and d.numel() > 1 else 0.0
        left = allowed - corr_var / idx.numel()
        if not left > 0:
            continue
        name, s, k, vp, vq = counts(total * left)
        cost = n * s * ((1 + dims) if name == "exact" else (1 + k))
        if best is None or cost < best[0]:
            best = (cost, n, (name, s, k, vp, vq), float(d.mean()) if n < fine else 0.0, corr_var)
    if best is None:  # unreachable: the fine level itself has no correction variance
        raise RuntimeError("no multilevel candidate")
    _, coarse, (name, s_count, k, var_point, var_probe), correction, corr_var = best
    return LikelihoodPlan(
        target_se=float(target.se),
        target_points=total,
        rtol=None,
        atol=None,
        steps=coarse,
        divergence=name,
        num_probes=k if name == "hutchinson" else 0,
        draws=s_count,
        pilot_points=int(idx.numel()),
        pilot_nfe=nfe_so_far() + extra_nfe,
        units="bits/dim" if unit != 1.0 else "nats",
        var_point=var_point,
        var_probe=var_probe,
        solver_error=fine_error,
        solver_budget=budget_solver,
        fine_steps=fine,
        correction=correction,
        correction_var=corr_var,
    )
