"""Fitting bespoke non-stationary solvers: start at a base solver, train on prior draws.

:func:`bespoke_from_base` writes a base solver (any deterministic fixed-step solver of
:data:`scoresde.SAMPLERS` with one model evaluation per step) on a grid as the coefficients of a
:class:`~scoresde.sampling.bespoke.BespokeSolver`.  The solver is linear in ``x_T`` and in the
model's predictions for a fixed grid, so its coefficients are read off exactly by running it once
on a *probe*: a ``(1, steps + 1)`` state ``x_T = e_0`` and a stand-in model whose ``k``-th data
prediction is ``e_{k+1}``; the point where the base evaluates the model at step ``k`` is then the
row ``(a_{k-1}, b_{k-1, :})`` of the coefficients, and its output the last row.  No model
evaluation is spent.

:func:`fit_bespoke` then trains the times and coefficients as Shaul et al. 2024 (BNS, Sec. 3.3,
Alg. 2) do: on ``pilot`` prior draws (from an explicit generator) a tight dopri5 solve of the
model's probability-flow ODE gives the reference endpoints; the solver's mean squared endpoint
error against them is minimised by Adam, through the ``steps``-step solve (autograd through the
network, the times included).  Parameterisation (so that one learning rate fits every
coefficient): the times through the softmax of their increments (they stay decreasing and keep
their ends), ``a_i = a_i^0 + (sigma_{i+1} / prior_std) p_i`` and
``b_ij = b_ij^0 + s_{i+1} q_ij / (i + 1)`` with the base's ``a^0, b^0`` and ``s, sigma`` of the
base's times, ``p, q`` starting at 0 (the ``1 / (i + 1)`` keeps the first Adam steps from moving
the sum of a long row by ``i + 1`` times the learning rate).  The learning rate warms up linearly
over the first tenth of the iterations, then decays as a cosine.  The iterate of least pilot error
is kept, so on the pilot the result is never worse than its start.  The fit costs the candidate
starts' evaluations (``steps`` each) and ``(iterations + 1) * steps`` batched forward evaluations
at the pilot size, each but the last with its backward pass (about twice a forward), plus the
reference solve.

Generalisation controls (all off by default, which is the behaviour above).  ``holdout > 0`` draws
that many more prior draws (after the training draws, from the same generator) with their own
dopri5 reference; every ``eval_every`` iterations (and at the last) the iterate's RMS error on
them is measured, and the iterate of least *validation* error is returned (the start included, so
on the validation draws it is never worse than its start): choosing by the training error
rewards overfitting a small pilot.  ``batch`` trains by minibatch Adam: each iteration a random
subset of ``batch`` training draws (chosen through the generator), so many more training draws
cost the same per iteration; without a holdout the iterate is then chosen by its error on the
whole pilot, measured every ``eval_every`` iterations.  ``loss="draw_rms"`` minimises the mean
over draws of each draw's RMS error instead of the mean squared error (a draw with a large error
weighs less).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.bespoke import BespokeSolver, bespoke_solve, check_ends
from scoresde.sampling.first_step import AnalyticFirstStep
from scoresde.sampling.grid_opt import check_tunable
from scoresde.sampling.grids import check_grid, time_grid
from scoresde.sampling.registry import canonical_method, get_sampler
from scoresde.sde.base import SDE

__all__ = ["BespokeFit", "bespoke_from_base", "fit_bespoke"]


class _Probe(ScoreFunction):
    """A stand-in model whose ``k``-th data prediction is the basis vector ``e_{k+1}``; it
    records where it was evaluated."""

    def __init__(self, sde: SDE, steps: int) -> None:
        super().__init__(sde, "x0")
        self.steps = steps
        self.points: list[Tensor] = []
        self.at: list[float] = []

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        k = len(self.points)
        if k >= self.steps:
            raise _TooManyEvaluations
        self.points.append(x[0].detach().clone())
        self.at.append(float(t.reshape(-1)[0]))
        out = torch.zeros_like(x)
        out[:, k + 1] = 1.0
        return out


class _TooManyEvaluations(Exception):
    pass


def bespoke_from_base(
    sde: SDE, method: str, ts: Tensor, options: dict[str, Any] | None = None, grid: str = "tensor"
) -> BespokeSolver:
    """The :class:`BespokeSolver` that equals ``method`` on the grid ``ts`` (up to rounding).

    Args:
        sde: the SDE (the base's coefficients depend on its schedule).
        method: a deterministic fixed-step solver of :data:`scoresde.SAMPLERS` that evaluates the
            model once per step, at the grid's times (``ddim``, ``dpm_solver_pp_2m``,
            ``dpm_solver_pp_3m``, ``unipc``, ``unipc_bh1``, ``deis``, ``ipndm``, ...).
        ts: the decreasing grid ``(steps + 1,)``.
        options: the base's options (``order`` of UniPC, ...).
        grid: the grid's name, recorded in the result.

    Raises:
        ValueError: an unknown method, a stochastic or adaptive one, one that does not make
            exactly one evaluation per step at the grid's times, or ``dpm_solver_v3`` (its
            per-dimension statistics are no scalar coefficients).
    """
    method = canonical_method(method)
    check_tunable(method)
    if method == "dpm_solver_v3":
        raise ValueError(
            "dpm_solver_v3 has no bespoke form: its empirical model statistics weight each dimension "
            "differently, and a bespoke solver's coefficients are one number per step and prediction"
        )
    ts = check_grid(ts, sde).to(torch.float64)
    steps = len(ts) - 1
    probe = _Probe(sde, steps)
    x = torch.zeros(1, steps + 1, dtype=torch.float64)
    x[0, 0] = 1.0
    try:
        out = get_sampler(method)(probe, sde, x, ts, noise=None, y=None, callback=None, **dict(options or {}))
    except _TooManyEvaluations:
        raise ValueError(
            f"a bespoke solver starts from a solver with one model evaluation per step; {method!r} makes more"
        ) from None
    if len(probe.points) != steps:
        raise ValueError(
            f"{method!r} made {len(probe.points)} model evaluations on {steps} steps, not one per step"
        )
    if not torch.allclose(torch.tensor(probe.at, dtype=torch.float64), ts[:-1], rtol=1e-6, atol=1e-9):
        raise ValueError(f"{method!r} evaluates the model off its grid's times; it has no bespoke form")
    rows = [*probe.points[1:], out[0].detach()]
    coef = torch.stack(rows)  # (steps, steps + 1): [a_i, b_i0, ..., b_i,steps-1]
    b = torch.tril(coef[:, 1:])
    return BespokeSolver(
        times=ts.clone(), a=coef[:, 0].clone(), b=b, base=method, grid=grid, options=dict(options or {})
    )


@dataclass
class BespokeFit:
    """What :func:`fit_bespoke` returns.

    Attributes:
        solver: the trained :class:`BespokeSolver` (the iterate of least pilot error).
        start: the base solver's :class:`BespokeSolver` (the initialisation: the candidate of
            least pilot error).
        start_errors: the pilot RMS error of every candidate start.
        pilot_error_start: the base's RMS endpoint error on the pilot.
        pilot_error: the trained solver's RMS endpoint error on the pilot (``<= pilot_error_start``).
        pilot_nfe: batched forward model evaluations at the pilot size (reference included); each
            training iteration's backward pass costs about two more per forward.
        seconds: wall time of the fit.
        history: the training RMS error at every iterate (on the iteration's minibatch when
            ``batch`` is set; then the last iterate has none).
        holdout: the number of validation draws (0: none).
        val_error_start: the start's RMS error on the validation draws (nan without a holdout).
        val_error: the returned solver's RMS error on them (``<= val_error_start``).
        val_history: ``(iteration, RMS error)`` at every iterate where the selection error
            (validation, or the whole pilot's when minibatched without a holdout) was measured.
        best_iteration: the iteration of the returned iterate (0: the start).
    """

    solver: BespokeSolver
    start: BespokeSolver
    start_errors: list[float]
    pilot_error_start: float
    pilot_error: float
    pilot_nfe: int
    seconds: float
    history: list[float] = field(default_factory=list)
    holdout: int = 0
    val_error_start: float = math.nan
    val_error: float = math.nan
    val_history: list[tuple[int, float]] = field(default_factory=list)
    best_iteration: int = 0


LOSSES = ("mse", "draw_rms")
"""The training objectives of :func:`fit_bespoke`: the mean squared endpoint error, or the mean
over draws of each draw's RMS endpoint error."""


def _first_step_of(model: ScoreFunction, t0: float) -> dict[str, Any]:
    """The solver fields that carry ``model``'s analytic first step (where it answers ``t0``)."""
    if isinstance(model, AnalyticFirstStep) and model.evaluations(t0) == 0:
        return {"first_step_mean": model.mean.detach(), "first_step_classes": model.num_classes}
    return {}


def _check_int(name: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def fit_bespoke(
    model: ScoreFunction,
    sde: SDE,
    steps: int,
    shape: Sequence[int],
    *,
    base: str = "unipc",
    grid: str | Tensor = "logsnr",
    options: dict[str, Any] | None = None,
    starts: Sequence[BespokeSolver] | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    pilot: int = 256,
    iterations: int = 200,
    lr: float = 5e-3,
    learn_times: bool = True,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    reference_tol: float = 1e-6,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    holdout: int = 0,
    holdout_y: Tensor | None = None,
    holdout_generator: torch.Generator | None = None,
    eval_every: int = 10,
    batch: int | None = None,
    loss: str = "mse",
    reference_model: ScoreFunction | None = None,
) -> BespokeFit:
    """Train a ``steps``-step bespoke solver for ``model`` from ``base`` on ``grid`` (BNS, Alg. 2).

    Args:
        model, sde: the score model and its SDE.
        steps: the number of steps (model evaluations) of the solver.
        shape: the shape ``D`` of one sample.
        base: the solver it starts at (see :func:`bespoke_from_base`); options: its options.
        grid: the base's grid: a name of :data:`scoresde.GRIDS` or a decreasing tensor of
            ``steps + 1`` times (e.g. an :class:`~scoresde.sampling.OptimizedGrid`'s).
        starts: instead of ``base``/``grid``/``options``: candidate starts (base solvers written
            by :func:`bespoke_from_base`, all of ``steps`` steps over one interval); the one of
            least pilot error is trained (``steps`` more pilot evaluations per candidate).
        t_start, t_end: the interval for a named grid (defaults ``T`` and ``sde.eps``).
        pilot: training draws of the prior; iterations: Adam steps (0: the base itself);
            lr: Adam's learning rate (on the scaled parameters: a relative change).
        learn_times: train the times too (else only the coefficients).
        y: labels ``(pilot,)`` of the training draws, for class-conditional models.
        generator: the RNG of the training draws (default: seed 0).
        reference_tol: rtol = atol of the dopri5 reference solve.
        dtype, device: of the training draws.
        holdout: validation draws (0: none); when > 0 the returned solver is the iterate of
            least validation RMS error (see the module docstring).
        holdout_y: labels ``(holdout,)`` of the validation draws, for class-conditional models.
        holdout_generator: the RNG of the validation draws (default: ``generator``, after the
            training draws); its own generator keeps them the same across pilot sizes, so that
            fits of other settings compare on the same validation draws.
        eval_every: iterations between measurements of the selection error (with a holdout, or
            with ``batch``); the last iterate is always measured.
        batch: training draws per Adam iteration (``None``: all ``pilot``); at most ``pilot``.
        loss: the training objective, one of :data:`LOSSES`.
        reference_model: the model whose tight dopri5 solve gives the reference endpoints
            (default ``model``; for an :class:`~scoresde.sampling.AnalyticFirstStep` its wrapped
            model, whose ODE the solver approximates: the reference must not take the stored
            mean at ``T``).  A solver trained through an analytic first step has one free
            evaluation per solve, which the ``pilot_nfe`` count leaves out; the returned solver
            carries its mean(s) (:attr:`~scoresde.sampling.BespokeSolver.first_step_mean`), so it
            runs on the bare model too.

    Returns:
        A :class:`BespokeFit`.

    Raises:
        ValueError: bad ``steps``/``pilot``/``iterations``/``lr``/``holdout``/``eval_every``/
            ``batch``/``loss``, a grid tensor of another number of steps, labels of another
            batch, or a base with no bespoke form.
    """
    _check_int("steps", steps, 1)
    _check_int("pilot", pilot, 1)
    _check_int("iterations", iterations, 0)
    _check_int("holdout", holdout, 0)
    _check_int("eval_every", eval_every, 1)
    if batch is not None:
        _check_int("batch", batch, 1)
        if batch > pilot:
            raise ValueError(f"batch must be at most pilot ({pilot}), got {batch}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    if y is not None and y.shape[0] != pilot:
        raise ValueError(f"y has {y.shape[0]} labels for a pilot of {pilot}")
    if holdout_y is not None and (holdout == 0 or holdout_y.shape[0] != holdout):
        raise ValueError(f"holdout_y has {holdout_y.shape[0]} labels for a holdout of {holdout}")
    if (y is None) != (holdout_y is None) and holdout > 0:
        raise ValueError(
            "give labels for both the training draws (y) and the holdout (holdout_y), or neither"
        )
    if reference_model is None:
        reference_model = model.model if isinstance(model, AnalyticFirstStep) else model
    t_begin = time.time()
    if starts is None:
        if isinstance(grid, str):
            ts = time_grid(sde, steps, grid, t_start=t_start, t_end=t_end).to(torch.float64)
            grid_name = grid
        else:
            ts = check_grid(grid, sde).to(torch.float64)
            grid_name = "tensor"
            if len(ts) != steps + 1:
                raise ValueError(
                    f"a grid of {len(ts) - 1} steps was given for a bespoke solver of {steps} steps"
                )
        candidates = [bespoke_from_base(sde, base, ts, options, grid=grid_name)]
    else:
        candidates = list(starts)
        if not candidates or not all(isinstance(c, BespokeSolver) for c in candidates):
            raise ValueError("starts must be a non-empty sequence of BespokeSolver (see bespoke_from_base)")
        for c in candidates:
            if c.steps != steps:
                raise ValueError(
                    f"a start of {c.steps} steps was given for a bespoke solver of {steps} steps"
                )
            check_ends(c, candidates[0].times)
        ts = candidates[0].times
    # Batched evaluations per solve: one fewer where the model answers the first time for free.
    per_solve = steps - (1 if model.evaluations(float(ts[0])) == 0 else 0)
    shape = tuple(int(s) for s in shape)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x_T = (torch.randn((pilot, *shape), generator=gen, dtype=torch.float64) * sde.prior_std()).to(
        device=device, dtype=dtype
    )
    if y is not None:
        y = y.to(x_T.device)
    ends = ts[[0, -1]]

    def reference(x: Tensor, labels: Tensor | None) -> tuple[Tensor, int]:
        res = sample(
            reference_model,
            sde,
            x_T=x,
            y=labels,
            method="dopri5",
            grid=ends,
            denoise=False,
            rtol=reference_tol,
            atol=reference_tol,
        )
        return res.x.detach(), res.nfe

    ref, nfe = reference(x_T, y)
    x_val = ref_val = y_val = None
    if holdout > 0:
        # Drawn after the training draws, so those are the same with or without a holdout.
        g_val = holdout_generator if holdout_generator is not None else gen
        x_val = (torch.randn((holdout, *shape), generator=g_val, dtype=torch.float64) * sde.prior_std()).to(
            device=device, dtype=dtype
        )
        y_val = holdout_y.to(x_val.device) if holdout_y is not None else None
        ref_val, nfe_val = reference(x_val, y_val)
        nfe += nfe_val

    def squared(
        times: Tensor, a: Tensor, b: Tensor, x0: Tensor, target: Tensor, labels: Tensor | None
    ) -> Tensor:
        """The squared endpoint error, ``(n, *shape)``."""
        with warnings.catch_warnings():
            # The model's time check reads each (differentiable) time once as a number.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            x = bespoke_solve(model, x0, times.to(dtype).unbind(), a.to(dtype), b.to(dtype), y=labels)
        return (x - target).pow(2)

    def loss_of(times: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return squared(times, a, b, x_T, ref, y).mean()

    def rms_of(sq: Tensor) -> float:
        m = sq.detach().mean()
        return math.sqrt(float(m.double())) if bool(torch.isfinite(m)) else math.inf

    # The start: the candidate of least pilot error (the first of equals).
    start_errors = []
    with torch.no_grad():
        for c in candidates:
            e = float(loss_of(c.times, c.a, c.b).double().sqrt())
            start_errors.append(e if math.isfinite(e) else math.inf)
            nfe += per_solve
    start = candidates[min(range(len(candidates)), key=start_errors.__getitem__)]
    ts = start.times

    # Scaled parameters (see the module docstring), all starting at 0 / the base's increments.
    s, sigma = sde.marginal(ts[1:])
    scale_a = (sigma / float(sde.prior_std())).to(torch.float64)
    scale_b = s.to(torch.float64)[:, None] / torch.arange(1, steps + 1, dtype=torch.float64)[:, None]
    span = float(ts[0] - ts[-1])
    w = torch.log((ts[:-1] - ts[1:]) / span).clone().requires_grad_(learn_times)
    p = torch.zeros(steps, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(steps, steps, dtype=torch.float64, requires_grad=True)
    mask = torch.tril(torch.ones(steps, steps, dtype=torch.float64))

    def coefficients() -> tuple[Tensor, Tensor, Tensor]:
        inc = torch.softmax(w, 0) * span
        inner = ts[0] - torch.cumsum(inc, 0)[:-1]
        times = torch.cat([ts[:1], inner, ts[-1:]])
        a = start.a + scale_a * p
        b = (start.b + scale_b * q) * mask
        return times, a, b

    params = [p, q] + ([w] if learn_times else [])
    opt = torch.optim.Adam(params, lr=lr)
    warm = max(1, iterations // 10)

    def factor(k: int) -> float:  # linear warm-up over a tenth of the run, then cosine decay
        if k < warm:
            return (k + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, iterations - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    history: list[float] = []
    val_history: list[tuple[int, float]] = []
    err_start = min(start_errors)
    # Selection: by the full-batch training error at every iterate (the default), by the
    # validation error, or (minibatched, no holdout) by the whole pilot's error, measured every
    # ``eval_every`` iterations; the start is measured exactly and taken unless beaten.
    by_training = holdout == 0 and batch is None
    sel_start = math.nan
    if x_val is not None and ref_val is not None:  # holdout > 0
        with torch.no_grad():
            sel_start = rms_of(squared(start.times, start.a, start.b, x_val, ref_val, y_val))
        nfe += per_solve
        val_history.append((0, sel_start))
    elif not by_training:
        sel_start = err_start
        val_history.append((0, sel_start))
    best_err, best, best_k = math.inf, None, 0
    with torch.enable_grad():  # training needs gradients, whatever the caller's mode
        for k in range(iterations + 1):
            times, a, b = coefficients()
            last = k == iterations
            if batch is None or not last:
                idx = None if batch is None or last else torch.randperm(pilot, generator=gen)[:batch]
                xb, rb, yb = (
                    (x_T, ref, y) if idx is None else (x_T[idx], ref[idx], None if y is None else y[idx])
                )
                with torch.set_grad_enabled(not last):
                    sq = squared(times, a, b, xb, rb, yb)
                    loss_v = sq.mean() if loss == "mse" else sq.flatten(1).mean(1).sqrt().mean()
                nfe += per_solve
                err = rms_of(sq)
                history.append(err)
                if by_training and err < best_err:
                    best_err, best_k = err, k
                    best = (times.detach().clone(), a.detach().clone(), b.detach().clone())
                if not math.isfinite(err) or not bool(torch.isfinite(loss_v)):
                    if not by_training:
                        val_history.append((k, math.inf))
                    break
            if not by_training and k > 0 and (k % eval_every == 0 or last):
                with torch.no_grad():
                    if x_val is not None and ref_val is not None:  # holdout > 0
                        sel = rms_of(squared(times, a, b, x_val, ref_val, y_val))
                    else:
                        sel = rms_of(squared(times, a, b, x_T, ref, y))
                nfe += per_solve
                val_history.append((k, sel))
                if sel < best_err:
                    best_err, best_k = sel, k
                    best = (times.detach().clone(), a.detach().clone(), b.detach().clone())
            if not last:
                opt.zero_grad()
                loss_v.backward()
                opt.step()
                sched.step()
    # An iterate replaces the start only where it is better by more than rounding (the start's
    # times rebuilt from their increments differ from the base's in the last bits).
    ref_err = err_start if by_training else sel_start
    if best is None or not best_err < ref_err * (1 - 1e-9):
        best, best_err, best_k = (start.times, start.a, start.b), ref_err, 0
    if by_training:
        pilot_err = best_err
    elif best_k == 0:
        pilot_err = err_start
    elif batch is None:
        pilot_err = history[best_k]
    elif holdout == 0:
        pilot_err = best_err
    else:  # minibatched: the chosen iterate's error on the whole pilot
        with torch.no_grad():
            pilot_err = rms_of(squared(*best, x_T, ref, y))
        nfe += per_solve
    val_err = best_err if holdout > 0 else math.nan
    seconds = time.time() - t_begin
    solver = BespokeSolver(
        times=best[0],
        a=best[1],
        b=best[2],
        base=start.base,
        grid=start.grid,
        options=dict(start.options),
        shape=shape,
        pilot_error_start=err_start,
        pilot_error=pilot_err,
        pilot_nfe=nfe,
        pilot=pilot,
        seconds=seconds,
        iterations=iterations,
        **_first_step_of(model, float(ts[0])),
    )
    return BespokeFit(
        solver=solver,
        start=start,
        start_errors=start_errors,
        pilot_error_start=err_start,
        pilot_error=solver.pilot_error,
        pilot_nfe=nfe,
        seconds=seconds,
        history=history,
        holdout=holdout,
        val_error_start=sel_start if holdout > 0 else math.nan,
        val_error=val_err,
        val_history=val_history,
        best_iteration=best_k,
    )
