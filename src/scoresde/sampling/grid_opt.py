"""Model-adaptive time grids: the grid that minimises a solver's error on a pilot batch.

Named grids (:mod:`scoresde.sampling.grids`) are the same for every model; the best grid for a
few-step solver depends on the data, the model and the solver (Sabour et al. 2024, "Align Your
Steps", who minimise an upper bound of the KL divergence between the discretised and the exact
process over the grid).  Here the discrepancy is measured directly: on a small pilot batch of
prior draws (fixed seed), a tight adaptive solve of the same probability-flow ODE gives the
reference endpoints, and the grid's interior times are moved, one at a time, by golden-section
search in the half log-SNR ``lambda`` (in ``t`` if ``lambda`` is infinite at an end), keeping a
move only when it lowers the pilot's RMS endpoint error of the few-step solver.  It starts from
the best named grid on the same pilot (or from each of the ``starts`` best, keeping the best
result: coordinate search finds a local optimum, and which one depends on the start), so on the
pilot it is never worse than that grid.  Sweeps stop early once a whole sweep lowers the error by
less than the relative ``tol``.

Cost (pilot NFE, counted and returned): the reference solve, plus ``len(GRIDS)`` start
evaluations, plus at most ``starts * sweeps * (steps - 1) * evals`` solver runs of ``steps``
(times the solver's evaluations per step) NFE, all at the pilot batch size.  With
``grid=GridOptimizer()`` in :func:`scoresde.sample` the result is computed once per model, SDE,
solver, step count and options and kept in that optimizer object (the cache is the caller's, not
a module's), and can be stored with a checkpoint as JSON (:meth:`OptimizedGrid.to_json`,
:meth:`GridOptimizer.add`).  This module sits above :func:`scoresde.sample` (it calls it for the
pilot runs); ``sample`` knows grid tuners only through the
:class:`~scoresde.sampling.spec.GridTuner` protocol.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from scoresde._core.defaults import AUTO_GRID
from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.grids import GRIDS, default_grid, time_grid
from scoresde.sampling.registry import canonical_method, get_sampler
from scoresde.sde.base import SDE

__all__ = [
    "OPTIMIZED_GRID",
    "GridOptimizer",
    "OptimizedGrid",
    "check_tunable",
    "grid_choice",
    "optimize_grid",
]

OPTIMIZED_GRID = "optimized"
"""The grid name of :func:`grid_choice` that means a :class:`GridOptimizer`."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass
class OptimizedGrid:
    """A grid optimised for one model, solver and step count, with what it cost.

    Attributes:
        times: decreasing times ``(steps + 1,)``, float64.
        method: the solver it was optimised for.
        steps: the number of steps.
        shape: the shape ``D`` of one sample.
        options: the solver options it was optimised with.
        start: the named grid it started from.
        pilot_error_start: the start grid's RMS endpoint error on the pilot.
        pilot_error: the optimised grid's RMS endpoint error on the pilot (``<= pilot_error_start``).
        pilot_nfe: model evaluations spent (batched calls at the pilot batch size).
        pilot: the pilot batch size; seed: its seed.
    """

    times: Tensor
    method: str
    steps: int
    shape: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    start: str = ""
    pilot_error_start: float = math.nan
    pilot_error: float = math.nan
    pilot_nfe: int = 0
    pilot: int = 0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for a checkpoint's metadata)."""
        return {
            "times": [float(v) for v in self.times.tolist()],
            "method": self.method,
            "steps": self.steps,
            "shape": list(self.shape),
            "options": dict(self.options),
            "start": self.start,
            "pilot_error_start": self.pilot_error_start,
            "pilot_error": self.pilot_error,
            "pilot_nfe": self.pilot_nfe,
            "pilot": self.pilot,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OptimizedGrid:
        """Inverse of :meth:`to_json`."""
        times = torch.tensor(d["times"], dtype=torch.float64)
        if times.ndim != 1 or len(times) != int(d["steps"]) + 1:
            raise ValueError(f"an optimized grid of {d['steps']} steps needs {int(d['steps']) + 1} times")
        return cls(
            times=times,
            method=str(d["method"]),
            steps=int(d["steps"]),
            shape=tuple(int(s) for s in d["shape"]),
            options=dict(d.get("options", {})),
            start=str(d.get("start", "")),
            pilot_error_start=float(d.get("pilot_error_start", math.nan)),
            pilot_error=float(d.get("pilot_error", math.nan)),
            pilot_nfe=int(d.get("pilot_nfe", 0)),
            pilot=int(d.get("pilot", 0)),
            seed=int(d.get("seed", 0)),
        )


def _key(
    sde: SDE, steps: int, method: str, shape: Sequence[int], t_start: float, t_end: float, options: dict
) -> tuple:
    return (
        sde,  # equal SDEs (same class and constructor arguments) share grids
        int(steps),
        method,
        tuple(int(s) for s in shape),
        round(float(t_start), 12),
        round(float(t_end), 12),
        repr(sorted(options.items())),
    )


def _coordinates(sde: SDE, ts: Tensor) -> tuple[str, Tensor]:
    """The search variable: ``lambda`` where finite at both ends, else ``t``."""
    lam = sde.lambda_t(ts[[0, -1]])
    if bool(torch.isfinite(lam).all()):
        return "lambda", sde.lambda_t(ts)
    return "t", ts.clone()


def _times(sde: SDE, kind: str, u: Tensor, ends: Tensor) -> Tensor:
    ts = sde.t_of_lambda(u) if kind == "lambda" else u.clone()
    ts[0], ts[-1] = ends[0], ends[1]
    return ts


def _coordinate_search(
    error: Callable[[Tensor], float], u: Tensor, best: float, sweeps: int, evals: int, tol: float
) -> tuple[Tensor, float]:
    """Golden-section search on each interior coordinate of ``u`` in turn (``u`` is monotone).

    Each coordinate moves within its neighbours' interval; a move is kept only when it lowers
    ``error``.  Returns the final coordinates and their error.
    """
    u = u.clone()
    steps = len(u) - 1
    for _ in range(sweeps):
        before = best
        for j in range(1, steps):
            lo, hi = float(u[j - 1]), float(u[j + 1])

            def at(v: float, j: int = j) -> float:
                trial = u.clone()
                trial[j] = v
                return error(trial)

            a, b = lo, hi
            c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
            fc, fd = at(c), at(d)
            cand = [(fc, c), (fd, d)]
            for _ in range(evals - 2):
                if fc < fd:
                    b, d, fd = d, c, fc
                    c = b - _GOLDEN * (b - a)
                    fc = at(c)
                    cand.append((fc, c))
                else:
                    a, c, fc = c, d, fd
                    d = a + _GOLDEN * (b - a)
                    fd = at(d)
                    cand.append((fd, d))
            f_new, v_new = min(cand)
            if f_new < best:
                best = f_new
                u[j] = v_new
        if math.isfinite(before) and before - best <= tol * before:
            break
    return u, best


def check_tunable(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is an ODE solver that steps on its grid."""
    sampler = get_sampler(method)
    if sampler.stochastic:
        raise ValueError(f"grid optimisation needs a deterministic ODE solver; {method!r} is stochastic")
    if not sampler.uses_grid:
        raise ValueError(
            f"grid optimisation needs a solver that steps on the grid; {method!r} is adaptive (it chooses "
            "its own steps between the grid's ends), so there is no grid to optimise"
        )


@torch.no_grad()
def optimize_grid(
    model: ScoreFunction,
    sde: SDE,
    steps: int,
    method: str,
    shape: Sequence[int],
    *,
    t_start: float | None = None,
    t_end: float | None = None,
    pilot: int = 512,
    seed: int = 0,
    sweeps: int = 2,
    evals: int = 6,
    starts: int = 1,
    tol: float = 1e-3,
    reference_tol: float = 1e-6,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
) -> OptimizedGrid:
    """Optimise the interior times of a ``steps``-step grid for ``method`` on a pilot batch.

    Args:
        model, sde: the score model and its SDE.
        steps: the number of steps of the grid.
        method: a deterministic key of :data:`scoresde.SAMPLERS` (an ODE solver).
        shape: the shape ``D`` of one sample.
        t_start, t_end: the interval (defaults ``T`` and ``sde.eps``).
        pilot: pilot batch size; seed: the seed of its prior draw (the result is a deterministic
            function of it).
        sweeps: the most passes over the interior times; evals: golden-section evaluations per
            time.
        starts: optimise from each of this many best named grids (on the pilot) and keep the
            best result.
        tol: stop sweeping once a sweep lowers the pilot error by less than this fraction.
        reference_tol: rtol = atol of the dopri5 reference solve.
        dtype, device: of the pilot samples.
        options: solver options (``order``, ...).

    Returns:
        An :class:`OptimizedGrid`.
    """
    check_tunable(method)
    for name, v, lo in (
        ("pilot", pilot, 1),
        ("sweeps", sweeps, 0),
        ("evals", evals, 1),
        ("steps", steps, 1),
        ("starts", starts, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0 (inf: a single sweep), got {tol!r}")
    options = dict(options or {})
    t0 = sde.T if t_start is None else float(t_start)
    t1 = sde.eps if t_end is None else float(t_end)
    gen = torch.Generator().manual_seed(int(seed))
    x_T = (torch.randn((pilot, *shape), generator=gen, dtype=torch.float64) * sde.prior_std()).to(
        device=device, dtype=dtype
    )
    ends = torch.tensor([t0, t1], dtype=torch.float64)
    ref = sample(
        model, sde, x_T=x_T, method="dopri5", grid=ends, denoise=False, rtol=reference_tol, atol=reference_tol
    )
    nfe = ref.nfe

    def error(ts: Tensor) -> float:
        nonlocal nfe
        res = sample(model, sde, x_T=x_T, method=method, grid=ts, denoise=False, **options)
        nfe += res.nfe
        e = float((res.x.double() - ref.x.double()).pow(2).mean().sqrt())
        return e if math.isfinite(e) else math.inf

    # Start: the best named grid(s) on the pilot.
    starts_ts = {kind: time_grid(sde, steps, kind, t_start=t0, t_end=t1) for kind in GRIDS}
    start_err = {kind: error(ts) for kind, ts in starts_ts.items()}
    ranked = sorted(start_err, key=start_err.__getitem__)[: min(starts, len(start_err))]
    results = []
    for name in ranked:
        kind, u = _coordinates(sde, starts_ts[name])

        def objective(v: Tensor, kind: str = kind) -> float:
            return error(_times(sde, kind, v, ends))

        u, err = _coordinate_search(objective, u, start_err[name], sweeps, evals, tol)
        results.append((err, ranked.index(name), name, kind, u))
    best, _, start, kind, u = min(results, key=lambda r: (r[0], r[1]))
    times = _times(sde, kind, u, ends)
    return OptimizedGrid(
        times=times,
        method=method,
        steps=steps,
        shape=tuple(int(s) for s in shape),
        options=options,
        start=start,
        pilot_error_start=start_err[start],
        pilot_error=best,
        pilot_nfe=nfe,
        pilot=pilot,
        seed=int(seed),
    )


class GridOptimizer:
    """``grid=GridOptimizer()``: :func:`optimize_grid` for the run's model, solver and steps,
    computed once and kept in this object (a :class:`~scoresde.sampling.spec.GridTuner`).

    The cache is explicit: it lives in the object the caller passes, keyed by the model object,
    the SDE's configuration, ``steps``, ``method``, the sample shape, the interval and the solver
    options.  Reuse one optimizer to reuse its grids; :meth:`clear` it when a model's weights
    change; :meth:`add` puts in a stored grid (e.g. read from a checkpoint with
    :meth:`OptimizedGrid.from_json`).

    Args:
        **kwargs: passed to :func:`optimize_grid` on a miss (``pilot``, ``seed``, ``sweeps``,
            ``evals``, ``starts``, ``tol``, ``reference_tol``, ``device``).

    Attributes:
        last: the :class:`OptimizedGrid` of the last run that used this optimizer (its pilot
            error and cost), or ``None``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.last: OptimizedGrid | None = None
        self._cache: weakref.WeakKeyDictionary[ScoreFunction, dict[tuple, OptimizedGrid]] = (
            weakref.WeakKeyDictionary()
        )

    def grid(
        self,
        model: ScoreFunction,
        sde: SDE,
        steps: int,
        method: str,
        shape: Sequence[int],
        *,
        t_start: float | None = None,
        t_end: float | None = None,
        options: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> OptimizedGrid:
        """The cached :class:`OptimizedGrid` (optimised now on a miss, with ``dtype`` pilots)."""
        options = dict(options or {})
        method = canonical_method(method)
        t0 = sde.T if t_start is None else float(t_start)
        t1 = sde.eps if t_end is None else float(t_end)
        key = _key(sde, steps, method, shape, t0, t1, options)
        per_model = self._cache.setdefault(model, {})
        if key not in per_model:
            per_model[key] = optimize_grid(
                model,
                sde,
                steps,
                method,
                shape,
                t_start=t0,
                t_end=t1,
                options=options,
                **{"dtype": dtype, **self.kwargs},
            )
        self.last = per_model[key]
        return self.last

    def times(
        self,
        model: ScoreFunction,
        sde: SDE,
        steps: int,
        method: str,
        shape: Sequence[int],
        *,
        t_start: float | None = None,
        t_end: float | None = None,
        options: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """The times of :meth:`grid` (what :func:`scoresde.sample` asks of a grid tuner)."""
        return self.grid(
            model, sde, steps, method, shape, t_start=t_start, t_end=t_end, options=options, dtype=dtype
        ).times

    def add(self, model: ScoreFunction, sde: SDE, grid: OptimizedGrid, t_end: float | None = None) -> None:
        """Put a stored grid into the cache (it is used for its model, SDE, solver and steps)."""
        t0, t1 = float(grid.times[0]), float(grid.times[-1])
        method = canonical_method(grid.method)
        key = _key(sde, grid.steps, method, grid.shape, t0, t1 if t_end is None else t_end, grid.options)
        self._cache.setdefault(model, {})[key] = grid

    def clear(self, model: ScoreFunction | None = None) -> None:
        """Forget cached grids (of ``model``, or all)."""
        if model is None:
            self._cache.clear()
        else:
            self._cache.pop(model, None)


def grid_choice(
    name: str,
    sde: SDE,
    method: str,
    *,
    pilot: int = 512,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> str | GridOptimizer:
    """The ``grid`` of :func:`scoresde.sample` for a grid name as the CLI takes it.

    ``"auto"``: the SDE's default grid (:func:`~scoresde.sampling.grids.default_grid`);
    ``"optimized"``: a :class:`GridOptimizer` with a ``pilot``-draw pilot of seed ``seed`` (the
    sampler ``method`` is checked here, before any pilot runs; its :attr:`GridOptimizer.last`
    reports the grid after sampling); any other name is returned as it is.
    """
    if name == AUTO_GRID:
        return default_grid(sde)
    if name != OPTIMIZED_GRID:
        return name
    check_tunable(method)
    return GridOptimizer(pilot=pilot, seed=seed, device=device)
