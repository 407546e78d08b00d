"""The one start of every sampler run: checked SDE, time grid, noise source and starting point.

:func:`scoresde.sample`, :func:`scoresde.guidance.conditional_sample` and
:func:`scoresde.guidance.dps_sample` all begin here, so they agree on what a grid name means,
how the prior is drawn (per-sample noise when ``seed`` is given), and which mistakes are errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._checks import check_batch, check_float_dtype, check_real_tensor, check_seed
from scoresde._utils import as_shape, check_finite
from scoresde.models.base import ScoreFunction
from scoresde.sampling.grids import check_grid, time_grid
from scoresde.sampling.noise import NoiseSource, make_noise
from scoresde.sde.base import SDE

__all__ = ["SamplingStart", "start_sampling"]


@dataclass
class SamplingStart:
    """``sde`` (checked against the model's), the time grid ``ts``, the ``noise`` source and
    the starting point ``x: (B, *D)``."""

    sde: SDE
    ts: Tensor | None
    noise: NoiseSource
    x: Tensor


def start_sampling(
    model: ScoreFunction,
    sde: SDE | None,
    shape: Sequence[int] | None,
    steps: int,
    grid: str | Tensor,
    x_T: Tensor | None,
    generator: torch.Generator | None,
    seed: int | None,
    y: Tensor | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
    t_start: float | None = None,
    t_end: float | None = None,
    first_index: int = 0,
    deferred_grid: bool = False,
) -> SamplingStart:
    """Check the arguments shared by every sampler and draw the starting point.

    The start is ``x_T`` (cloned) when given, else a draw of the prior ``N(0, prior_std^2 I)``
    from the noise source (``generator``, or per-sample noise keyed by ``seed``).

    With ``deferred_grid``, ``grid="optimized"`` leaves ``ts = None`` for the caller to fill in
    (:func:`scoresde.sample` optimises it once the shape is known).

    Raises:
        ValueError: the SDE disagrees with the model's, no shape and no ``x_T``, a grid that
            starts before ``T`` without ``x_T``, mismatched shapes or labels, non-finite ``x_T``.
    """
    from scoresde.sampling.api import check_model_sde

    sde = check_model_sde(model, sde)
    check_float_dtype(dtype, "dtype")
    if seed is not None:
        check_seed(seed, "seed")
    if isinstance(grid, str) and grid == "optimized":
        if not deferred_grid:
            raise ValueError("grid='optimized' is available in ss.sample; pass its times as a tensor here")
        ts = None  # the caller optimises the grid once the sample shape is known
    elif isinstance(grid, str):
        ts = time_grid(sde, steps, grid, t_start=t_start, t_end=t_end)
    else:
        ts = check_grid(grid, sde)
    noise = make_noise(generator, seed, first_index)
    if x_T is None:
        if shape is None:
            raise ValueError("give shape=(B, *D) or a starting point x_T")
        t0 = float(ts[0]) if ts is not None else (sde.T if t_start is None else t_start)
        if t0 < sde.T - 1e-12:
            raise ValueError("a grid that starts before T needs an explicit starting point x_T")
        x = noise(torch.empty(as_shape(shape), device=device, dtype=dtype)) * sde.prior_std()
    else:
        check_real_tensor(x_T, "x_T")
        check_batch(x_T, "x_T")
        check_finite(x_T, "x_T")
        if shape is not None and tuple(x_T.shape) != as_shape(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was given")
        x = x_T.clone()
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for a batch of {x.shape[0]}")
    return SamplingStart(sde, ts, noise, x)
