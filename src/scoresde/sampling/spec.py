"""``SampleSpec``: the one specification of a sampling run, shared by every entry point.

:func:`scoresde.sample`, :func:`scoresde.guidance.conditional_sample`,
:func:`scoresde.guidance.smc_sample`, :func:`scoresde.guidance.dps_sample` and the starters
(:func:`~scoresde.sampling.setup.start_sampling`,
:func:`~scoresde.guidance.projection.start_inverse_problem`) take the run's arguments (the
start, the grid, the randomness, labels, progress, trajectories, the final denoising step) as
one :class:`SampleSpec`, so an option of every run is one field here and its use in
:mod:`scoresde.sampling.setup`.  The entry points still take these arguments as keywords
(``ss.sample(model, shape=(n, d), steps=10, seed=0)``): :func:`split_spec` collects the
keywords that name a field into the spec and hands the others to the sampler.

A grid is a name (:data:`scoresde.GRIDS`), a decreasing tensor of times, or a
:class:`GridTuner`: an object that makes the times for the model, solver and sample shape of the
run (:class:`scoresde.sampling.grid_opt.GridOptimizer`, which holds its own cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.models.base import ScoreFunction
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["SPEC_FIELDS", "GridTuner", "SampleSpec", "split_spec"]


@runtime_checkable
class GridTuner(Protocol):
    """Makes a time grid for one run: ``grid=tuner`` in :func:`scoresde.sample`.

    ``tuner.times(model, sde, steps, method, shape, t_start=..., t_end=..., options=...,
    dtype=...)`` returns the decreasing times ``(steps + 1,)`` for the sampler ``method`` (with
    its ``options``) on samples of shape ``shape`` (one sample, ``D``).
    """

    def times(
        self,
        model: ScoreFunction,
        sde: SDE,
        steps: int,
        method: str,
        shape: Sequence[int],
        *,
        t_start: float | None,
        t_end: float | None,
        options: dict[str, Any],
        dtype: torch.dtype,
    ) -> Tensor: ...


@dataclass(frozen=True, eq=False)
class SampleSpec:
    """What a sampling run is asked for, apart from the model, the SDE and the sampler.

    Attributes:
        shape: ``(B, *D)``; may be omitted when ``x_T`` is given.
        steps: number of steps of the time grid.
        grid: a grid name (``uniform``, ``logsnr``, ``edm``, ``quadratic``), a decreasing tensor
            of times, or a :class:`GridTuner` (e.g. :class:`~scoresde.sampling.GridOptimizer`).
        denoise: finish with one Tweedie step ``x <- E[x_0 | x_{t_end}]`` (one more NFE).
        x_T: the starting point; drawn from the prior when ``None``.
        generator: RNG for the prior draw and all sampler noise.
        seed: instead of ``generator``: per-sample noise, so a sample depends only on the seed
            and its index, not on the batch size.
        first_index: with ``seed``: the index of ``x[0]`` in the whole run, so that a run split
            into batches or across processes gives every sample the noise it has in one batch.
        y: labels ``(B,)`` for class-conditional models.
        callback: ``callback(i, t, x)`` after every step.
        record: keep the trajectory (every ``record_stride``-th state, plus start and end).
        record_stride: see ``record``.
        progress: ``True`` / ``"auto"``: a tqdm bar on a terminal, otherwise a line every 10% of
            the steps or 30 s (see :mod:`scoresde._core.progress`); ``"bar"``, ``"log"``, ``False`` /
            ``"off"``, or a :class:`~scoresde._core.progress.Progress` to advance.
        t_start, t_end: integration interval (defaults ``sde.T`` and ``sde.eps``).
        device, dtype: of the prior draw (``x_T`` keeps its own).
        label: names the run in error messages (default: the entry point and its method).
    """

    shape: Sequence[int] | None = None
    steps: int = 100
    grid: str | Tensor | GridTuner = "uniform"
    denoise: bool = True
    x_T: Tensor | None = None
    generator: torch.Generator | None = None
    seed: int | None = None
    first_index: int = 0
    y: Tensor | None = None
    callback: Callback | None = None
    record: bool = False
    record_stride: int = 1
    progress: bool | str | Progress = False
    t_start: float | None = None
    t_end: float | None = None
    device: torch.device | str | None = None
    dtype: torch.dtype = torch.float32
    label: str | None = None

    def replace(self, **changes: Any) -> SampleSpec:
        """A copy with ``changes`` (field names only)."""
        unknown = sorted(set(changes) - SPEC_FIELDS)
        if unknown:
            raise TypeError(f"SampleSpec has no field {', '.join(unknown)}")
        return replace(self, **changes)

    def check_unused(self, names: Iterable[str], where: str) -> None:
        """Raise ``ValueError`` if a field of ``names`` (that ``where`` does not use) was set."""
        default = _DEFAULT
        given = [n for n in names if not _same(getattr(self, n), getattr(default, n))]
        if given:
            raise ValueError(f"{where} does not take {', '.join(f'{n}=' for n in given)}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a is b
    return bool(a == b)


SPEC_FIELDS: frozenset[str] = frozenset(f.name for f in fields(SampleSpec))
"""The keyword names that :func:`split_spec` collects into a :class:`SampleSpec`."""

_DEFAULT = SampleSpec()


def split_spec(
    spec: SampleSpec | None, keywords: dict[str, Any], **defaults: Any
) -> tuple[SampleSpec, dict[str, Any]]:
    """``(spec, options)``: the run's specification and the keywords left for the sampler.

    The specification is ``spec`` (or a :class:`SampleSpec` with the entry point's ``defaults``)
    updated with every keyword of ``keywords`` that names one of its fields; the remaining
    keywords are the sampler's own options.

    Args:
        spec: an explicit specification, or ``None``.
        keywords: the keywords an entry point was called with.
        **defaults: the entry point's own defaults of fields (e.g. ``steps=200``), used
            without an explicit ``spec``.
    """
    if spec is not None and not isinstance(spec, SampleSpec):
        raise TypeError(f"spec must be a SampleSpec, got {type(spec).__name__}")
    base = spec if spec is not None else SampleSpec(**defaults)
    given = {k: v for k, v in keywords.items() if k in SPEC_FIELDS}
    options = {k: v for k, v in keywords.items() if k not in SPEC_FIELDS}
    return (replace(base, **given) if given else base), options
