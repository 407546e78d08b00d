"""The likelihood of a data set: batches, per-batch seeds, sharding over processes, and the
standard errors of the whole mean (what ``scoresde likelihood`` runs).

:func:`log_likelihood_batches` cuts ``N`` points into batches and runs
:func:`~scoresde.flow.likelihood.log_likelihood` on each through the sharded batch runner
(:func:`scoresde.parallel.run_batches`: per-batch generators from the per-sample seed scheme,
whole batches per ``torchrun`` rank, results gathered on rank 0).  With ``target_se`` the first
batch of a process plans for the whole ``N`` (``PrecisionTarget.points = N``) and the others
reuse its plan; the errors of the mean combine as independent batches do: Monte-Carlo variances
add, solver errors (biases bounded per batch) average.  A multilevel plan's correction
(:mod:`scoresde.flow.planner`) is shared by the batches that use the plan, so its pilot's part
of the error adds linearly over them (conservatively, over all processes too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.flow.dequantization import Quantization
from scoresde.flow.divergence import Exact, Hutchinson
from scoresde.flow.integrators import Integrator
from scoresde.flow.likelihood import LikelihoodOptions, log_likelihood
from scoresde.flow.planner import LikelihoodPlan, PrecisionTarget
from scoresde.models.base import ScoreFunction
from scoresde.parallel import BatchOutput, DistInfo, run_batches
from scoresde.sde.base import SDE

__all__ = ["DatasetLikelihood", "log_likelihood_batches"]


@dataclass
class DatasetLikelihood:
    """The likelihood of ``N`` points (on rank 0; see :func:`log_likelihood_batches`).

    Attributes:
        logp: ``(N,)`` float64 log-likelihoods in nats.
        bpd: ``(N,)`` bits/dim for discrete data, else ``None``.
        nfe: evaluations of all batches (pilots included), summed over processes.
        mc_se, solver_error: with ``target_se``: the Monte-Carlo standard error of the mean and
            the estimated solver error of the mean (bits/dim for discrete data, else nats).
        plan: the plan the batches used (rank 0's, with its pilot's evaluations), or ``None``.
    """

    logp: Tensor
    bpd: Tensor | None
    nfe: int
    mc_se: float | None = None
    solver_error: float | None = None
    plan: LikelihoodPlan | None = None

    def target_miss(self) -> str | None:
        """``None`` when the run kept the ``target_se`` promise (:meth:`LikelihoodPlan.kept`),
        else what missed, in words."""
        if self.plan is None or self.plan.kept(self.mc_se, self.solver_error):
            return None
        p = self.plan
        return (
            f"{p.target_se:g} {p.units} not met: Monte-Carlo s.e. {self.mc_se:.3g}, estimated solver "
            f"error {self.solver_error:.3g} (budget {p.solver_budget:.3g})"
        )


def log_likelihood_batches(
    model: ScoreFunction,
    sde: SDE | None,
    x: Tensor,
    *,
    y: Tensor | None = None,
    batch_size: int = 100,
    seed: int = 0,
    integrator: Integrator | None = None,
    divergence: str | Exact | Hutchinson = "exact",
    quantization: Quantization | None = None,
    options: LikelihoodOptions | None = None,
    target_se: float | None = None,
    info: DistInfo | None = None,
    progress: bool | str | Progress = False,
) -> DatasetLikelihood | None:
    """:func:`~scoresde.flow.likelihood.log_likelihood` of ``x: (N, *D)`` in batches.

    Args:
        model, sde, y, integrator, divergence, quantization, options: as for
            :func:`~scoresde.flow.likelihood.log_likelihood` (``y``: labels of all ``N`` points).
        x: ``(N, *D)`` all points (each process reads only its batches).
        batch_size: points per solve.
        seed: the run's seed; batch ``[i, i + batch_size)`` draws from
            :func:`scoresde.parallel.batch_generator` ``(seed, i)``.
        target_se: the standard error asked of the mean of all ``N`` points.
        info: this process's place under torchrun (``None``: a single process).
        progress: points done (rank 0).

    Returns:
        A :class:`DatasetLikelihood` on rank 0, ``None`` on the other ranks.
    """
    n = x.shape[0]
    target = None if target_se is None else PrecisionTarget(float(target_se), points=n)
    plan: LikelihoodPlan | None = None
    first_plan: LikelihoodPlan | None = None

    def job(items: range, generator: torch.Generator) -> BatchOutput:
        nonlocal plan, first_plan
        res = log_likelihood(
            model,
            sde,
            x[items.start : items.stop],
            y=None if y is None else y[items.start : items.stop],
            integrator=integrator,
            divergence=divergence,
            quantization=quantization,
            options=options,
            generator=generator,
            target_se=target,
            plan=plan,
        )
        if res.plan is not None and plan is None:  # the first batch plans, the others reuse it
            plan = first_plan = res.plan
        out = {"logp": res.logp.double().cpu()}
        if res.bpd is not None:
            out["bpd"] = res.bpd.double().cpu()
        m = len(items)
        stats = {"nfe": float(res.nfe)}
        if target is not None:
            mc_se, solver_error = res.mc_se, res.solver_error
            assert mc_se is not None and solver_error is not None  # reported for a target_se
            # A multilevel correction's s.e.: the pilot's part is shared by the plan's batches
            # (added linearly below), the batch's own deviation is independent like the noise.
            shared, corr_se = 0.0, res.correction_se or 0.0
            if res.plan is not None and res.plan.fine_steps is not None:
                unit = 1.0 / (x[0].numel() * math.log(2)) if res.plan.units == "bits/dim" else 1.0
                shared = min(res.plan.correction_se(None, unit), corr_se)
            own_sq = max(0.0, mc_se**2 - shared**2)
            stats.update(mc_sq=m**2 * own_sq, shared=m * shared, solver=m * solver_error)
        return BatchOutput(out, stats)

    device = x.device
    run = run_batches(
        job,
        n,
        batch_size,
        seed=seed,
        info=info,
        device=device,
        progress=progress,
        desc="likelihood",
        unit="points",
    )
    if not run.is_main:
        return None
    items, stats = run.items or {}, run.stats or {}
    logp = items.get("logp", torch.empty(0, dtype=torch.float64))
    result = DatasetLikelihood(
        logp=logp, bpd=items.get("bpd"), nfe=int(stats["nfe"].sum()) if "nfe" in stats else 0
    )
    if target is not None and n:
        # Independent batches: Monte-Carlo variances add; solver errors are bounds that average.
        result.mc_se = math.hypot(math.sqrt(float(stats["mc_sq"].sum())), float(stats["shared"].sum())) / n
        result.solver_error = float(stats["solver"].sum()) / n
        result.plan = first_plan
    return result
