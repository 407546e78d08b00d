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
        history: the pilot RMS error at every iterate.
    """

    solver: BespokeSolver
    start: BespokeSolver
    start_errors: list[float]
    pilot_error_start: float
    pilot_error: float
    pilot_nfe: int
    seconds: float
    history: list[float] = field(default_factory=list)


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

    Returns:
        A :class:`BespokeFit`.

    Raises:
        ValueError: bad ``steps``/``pilot``/``iterations``/``lr``, a grid tensor of another
            number of steps, labels of another batch, or a base with no bespoke form.
    """
    _check_int("steps", steps, 1)
    _check_int("pilot", pilot, 1)
    _check_int("iterations", iterations, 0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    if y is not None and y.shape[0] != pilot:
        raise ValueError(f"y has {y.shape[0]} labels for a pilot of {pilot}")
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
    shape = tuple(int(s) for s in shape)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x_T = (torch.randn((pilot, *shape), generator=gen, dtype=torch.float64) * sde.prior_std()).to(
        device=device, dtype=dtype
    )
    if y is not None:
        y = y.to(x_T.device)
    ends = ts[[0, -1]]
    ref_res = sample(
        model,
        sde,
        x_T=x_T,
        y=y,
        method="dopri5",
        grid=ends,
        denoise=False,
        rtol=reference_tol,
        atol=reference_tol,
    )
    ref = ref_res.x.detach()
    nfe = ref_res.nfe

    def loss_of(times: Tensor, a: Tensor, b: Tensor) -> Tensor:
        with warnings.catch_warnings():
            # The model's time check reads each (differentiable) time once as a number.
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            x = bespoke_solve(model, x_T, times.to(dtype).unbind(), a.to(dtype), b.to(dtype), y=y)
        return (x - ref).pow(2).mean()

    # The start: the candidate of least pilot error (the first of equals).
    start_errors = []
    with torch.no_grad():
        for c in candidates:
            e = float(loss_of(c.times, c.a, c.b).double().sqrt())
            start_errors.append(e if math.isfinite(e) else math.inf)
            nfe += steps
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
    best_err, best = math.inf, None
    with torch.enable_grad():  # training needs gradients, whatever the caller's mode
        for k in range(iterations + 1):
            times, a, b = coefficients()
            if k < iterations:
                loss = loss_of(times, a, b)
            else:
                with torch.no_grad():
                    loss = loss_of(times, a, b)
            nfe += steps
            err = math.sqrt(float(loss.detach().double())) if bool(torch.isfinite(loss)) else math.inf
            history.append(err)
            if err < best_err:
                best_err, best = err, (times.detach().clone(), a.detach().clone(), b.detach().clone())
            if k < iterations:
                if not math.isfinite(err):
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    err_start = min(start_errors)
    # An iterate replaces the start only where it is better by more than rounding (the start's
    # times rebuilt from their increments differ from the base's in the last bits).
    if best is None or not best_err < err_start * (1 - 1e-9):
        best, best_err = (start.times, start.a, start.b), err_start
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
        pilot_error=best_err,
        pilot_nfe=nfe,
        pilot=pilot,
        seconds=seconds,
        iterations=iterations,
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
    )
