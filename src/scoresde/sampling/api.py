"""``sample``: the one entry point that resolves a method name and runs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.models.base import ScoreFunction
from scoresde.sampling.grid_opt import optimized_grid
from scoresde.sampling.registry import get_sampler
from scoresde.sampling.setup import SamplingRun, start_sampling
from scoresde.sampling.types import Callback, SampleResult
from scoresde.sde.base import SDE

__all__ = ["sample"]


@torch.no_grad()
def sample(
    model: ScoreFunction,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    method: str = "euler_maruyama",
    steps: int = 100,
    grid: str | Tensor = "uniform",
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    first_index: int = 0,
    y: Tensor | None = None,
    callback: Callback | None = None,
    record: bool = False,
    record_stride: int = 1,
    progress: bool | str | Progress = False,
    t_start: float | None = None,
    t_end: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    label: str | None = None,
    **options: Any,
) -> SampleResult:
    """Draw samples by integrating the reverse SDE or probability-flow ODE of ``sde``.

    Args:
        model: any :class:`~scoresde.models.ScoreFunction` (network wrapper or exact oracle).
        sde: the forward SDE (defaults to ``model.sde``; must agree with it).
        shape: ``(B, *D)``; may be omitted when ``x_T`` is given.
        method: a key of :data:`scoresde.SAMPLERS`.
        steps: number of steps of the time grid.
        grid: a grid name (``uniform``, ``logsnr``, ``edm``, ``quadratic``), ``"optimized"``
            (:func:`~scoresde.sampling.grid_opt.optimized_grid`: optimised for this model,
            solver and step count on a pilot batch, once, then cached; ODE solvers only) or a
            decreasing tensor of times.
        denoise: finish with one Tweedie step ``x <- E[x_0 | x_{t_end}]`` (one more NFE).
        x_T: the starting point; drawn from the prior when ``None``.
        generator: RNG for the prior draw and all sampler noise.
        seed: instead of ``generator``: per-sample noise, so a sample depends only on the
            seed and its index, not on the batch size.
        first_index: with ``seed``: the index of ``x[0]`` in the whole run, so that a run
            split into batches or across processes (:func:`scoresde.sampling.shard_range`)
            gives every sample the noise it has in one big batch.
        y: labels ``(B,)`` for class-conditional models.
        callback: ``callback(i, t, x)`` after every step.
        record: keep the trajectory (every ``record_stride``-th state, plus start and end).
        progress: ``True`` / ``"auto"``: a tqdm bar on a terminal, otherwise a line every
            10% of the steps or 30 s (see :mod:`scoresde.progress`); ``"bar"``, ``"log"``,
            ``False`` / ``"off"``, or a :class:`~scoresde.progress.Progress` to advance.
        t_start, t_end: integration interval (defaults ``sde.T`` and ``sde.eps``).
        device, dtype: of the prior draw (``x_T`` keeps its own).
        label: names the run in error messages (default ``"sample (<method>)"``).
        **options: method-specific options, passed to the sampler (e.g. ``snr`` for Langevin
            correctors; ``operator``, ``y_obs``, ``zeta`` for ``"dps"``, see
            :func:`scoresde.sampling.dps.dps`).

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult`.
    """
    sampler = get_sampler(method)
    sampler.check_options(method, options)
    start = start_sampling(
        model,
        sde,
        shape,
        steps,
        grid,
        x_T,
        generator,
        seed,
        y,
        device,
        dtype,
        t_start,
        t_end,
        first_index,
        deferred_grid=True,
    )
    if start.ts is None:
        start.ts = optimized_grid(
            model,
            start.sde,
            steps,
            method,
            start.x.shape[1:],
            t_start=t_start,
            t_end=t_end,
            options=options,
            dtype=start.x.dtype,
        ).times
    label = f"sample ({method})" if label is None else label
    run = SamplingRun(
        model,
        start,
        label,
        y=y,
        callback=callback,
        record=record,
        record_stride=record_stride,
        progress=progress,
        desc=method,
    )
    with run:
        x = sampler(
            run.model, start.sde, start.x, run.ts, noise=start.noise, y=y, callback=run.after_step, **options
        )
    if denoise:
        # Final denoising step (Tweedie's formula) at t_end.
        x = run.denoise(x)
    return run.result(x)
