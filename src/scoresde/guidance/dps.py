"""``dps_sample``: diffusion posterior sampling (Chung et al. 2023, Algorithm 1) with the
measurement as arguments.

The algorithm is the sampler :func:`scoresde.sampling.dps.dps` (``method="dps"`` of
:func:`scoresde.sample`); this function is that run, named ``dps_sample`` in its messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.guidance.operators import LinearOperator, check_operator
from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.types import Callback, SampleResult
from scoresde.sde.base import SDE

__all__ = ["dps_sample"]


def dps_sample(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    *,
    zeta: float = 1.0,
    steps: int = 1000,
    grid: str | Tensor = "uniform",
    variance: str = "posterior",
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    first_index: int = 0,
    y: Tensor | None = None,
    callback: Callback | None = None,
    record: bool = False,
    record_stride: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool | str | Progress = False,
) -> SampleResult:
    """Sample ``x`` given ``y_obs = A x + noise`` by DPS (Chung et al. 2023, Algorithm 1).

    The same as ``scoresde.sample(model, sde, shape, method="dps", operator=operator,
    y_obs=y_obs, zeta=zeta, variance=variance, ...)``, bit for bit.

    Args:
        model: the unconditional (or, with ``y``, class-conditional) score model.
        operator: the measurement ``A`` (:class:`~scoresde.guidance.Inpainting`, ...).
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        sde: the forward SDE (default ``model.sde``).
        shape: ``(B, *D)`` when ``x_T`` is not given.
        zeta, variance: the step size and the ancestral variance (:func:`scoresde.sampling.dps.dps`).
        steps, grid: the time grid from ``T`` to ``eps`` (Chung et al. use 1000 DDPM steps).
        denoise: return the Tweedie denoiser ``E[x_0 | x_eps]`` of the last state (one more NFE).
        x_T, generator, seed, first_index, y, callback, record, record_stride, device, dtype,
            progress: as for :func:`scoresde.sample`.

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult` (one network evaluation and one backward
        pass per step).

    Raises:
        ValueError: bad arguments, or samples that stop being finite (with the step at which).
    """
    return sample(
        model,
        sde,
        shape,
        method="dps",
        steps=steps,
        grid=grid,
        denoise=denoise,
        x_T=x_T,
        generator=generator,
        seed=seed,
        first_index=first_index,
        y=y,
        callback=callback,
        record=record,
        record_stride=record_stride,
        progress=progress,
        device=device,
        dtype=dtype,
        label="dps_sample",
        operator=check_operator(operator),
        y_obs=y_obs,
        zeta=zeta,
        variance=variance,
    )
