"""``sample``: the one entry point that resolves a method name and runs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from scoresde._checks import check_state_finite
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.progress import Progress, make_progress
from scoresde.sampling.grid_opt import optimized_grid
from scoresde.sampling.registry import get_sampler
from scoresde.sampling.setup import start_sampling
from scoresde.sampling.types import Callback, SampleResult
from scoresde.sde.base import SDE

__all__ = ["sample", "check_model_sde"]


def check_model_sde(model: ScoreFunction, sde: SDE | None) -> SDE:
    """Return the SDE to use, raising if ``sde`` disagrees with the one the model was built for."""
    if not isinstance(model, ScoreFunction):
        raise TypeError(
            "model must be a scoresde ScoreFunction (ScoreModel, AnalyticScore, ...), "
            f"got {type(model).__name__}"
        )
    if sde is None:
        return model.sde
    if model.sde != sde:
        raise ValueError(f"the model was built for {model.sde!r} but sampling was asked under {sde!r}")
    return sde


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
        **options: method-specific options (e.g. ``snr`` for Langevin correctors).

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult`.
    """
    sampler = get_sampler(method)
    if record_stride < 1:
        raise ValueError(f"record_stride must be >= 1, got {record_stride}")
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
    sde, ts, noise, x = start.sde, start.ts, start.noise, start.x

    if ts is None:
        shape_d = x.shape[1:]
        ts = optimized_grid(
            model, sde, steps, method, shape_d, t_start=t_start, t_end=t_end, options=options, dtype=x.dtype
        ).times
    n_steps = len(ts) - 1
    counted = CountingModel(model, label=f"sample ({method})", steps=n_steps)
    ts_dev = ts.to(x.device)
    traj: list[Tensor] = [x.clone()] if record else []
    traj_t: list[Tensor] = [ts_dev[0]] if record else []
    own_bar = not isinstance(progress, Progress)
    bar = make_progress(progress, n_steps, method)

    def step_callback(i: int, t: Tensor, x_i: Tensor) -> None:
        # The non-finite guard: the model outputs are checked by `counted`, the state here.
        check_state_finite(x_i, f"sample ({method}): the samples", f"step {i + 1} of {n_steps}", t)
        counted.step = i + 2
        if record and ((i + 1) % record_stride == 0 or i + 1 == n_steps):
            traj.append(x_i.clone())
            traj_t.append(t)
        bar.update(1, nfe=counted.nfe)
        if callback is not None:
            callback(i, t, x_i)

    try:
        x = sampler(counted, sde, x, ts_dev, noise=noise, y=y, callback=step_callback, **options)
    finally:
        if own_bar:
            bar.close()
    if denoise:
        # Final denoising step (Tweedie's formula) at t_end.
        counted.step = "the final denoising step"
        x = counted.denoise(x, ts_dev[-1].to(x.dtype).expand(x.shape[0]), y)
    return SampleResult(
        x=x,
        nfe=counted.nfe,
        times=ts,
        trajectory=torch.stack(traj) if record else None,
        trajectory_times=torch.stack(traj_t).cpu() if record else None,
    )
