"""``sample``: the one entry point that resolves a method name and runs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from scoresde.models.base import ScoreFunction
from scoresde.sampling.registry import get_sampler
from scoresde.sampling.setup import SamplingRun, start_sampling
from scoresde.sampling.spec import SampleSpec, split_spec
from scoresde.sampling.types import SampleResult
from scoresde.sde.base import SDE

__all__ = ["sample"]


@torch.no_grad()
def sample(
    model: ScoreFunction,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    method: str = "euler_maruyama",
    *,
    spec: SampleSpec | None = None,
    **kwargs: Any,
) -> SampleResult:
    """Draw samples by integrating the reverse SDE or probability-flow ODE of ``sde``.

    ``sample(model, shape=(n, d), method="heun", steps=10, seed=0)``: the run's arguments are
    the fields of :class:`~scoresde.sampling.spec.SampleSpec`, given as keywords or as
    ``spec=`` (keywords then override its fields); every other keyword is an option of the
    sampler.

    Args:
        model: any :class:`~scoresde.models.ScoreFunction` (network wrapper or exact oracle).
        sde: the forward SDE (defaults to ``model.sde``; must agree with it).
        shape: ``(B, *D)``; may be omitted when ``x_T`` is given.
        method: a key of :data:`scoresde.SAMPLERS` (or one of its old names,
            :data:`~scoresde.sampling.registry.ALIASES`).
        spec: the run's :class:`~scoresde.sampling.spec.SampleSpec`.
        **kwargs: fields of :class:`~scoresde.sampling.spec.SampleSpec` (``steps`` = 100,
            ``grid`` = ``"uniform"``, ``denoise``, ``x_T``, ``generator``, ``seed``,
            ``first_index``, ``y``, ``callback``, ``record``, ``record_stride``, ``progress``,
            ``t_start``, ``t_end``, ``device``, ``dtype``, ``label``), then the sampler's own
            options (e.g. ``snr`` for Langevin correctors; ``operator``, ``y_obs``, ``zeta`` for
            ``"dps"``, see :func:`scoresde.sampling.dps.dps`).  ``grid`` may be a
            :class:`~scoresde.sampling.spec.GridTuner` such as
            :class:`~scoresde.sampling.grid_opt.GridOptimizer` (ODE solvers only).

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult`.
    """
    if shape is not None:
        kwargs["shape"] = shape
    spec, options = split_spec(spec, kwargs)
    sampler = get_sampler(method)
    sampler.check_options(method, options)
    start = start_sampling(model, sde, spec, method=method, options=options)
    label = f"sample ({method})" if spec.label is None else spec.label
    with SamplingRun(model, start, label, desc=method, defer_guard=True) as run:
        x = sampler(
            run.model,
            start.sde,
            start.x,
            run.ts,
            noise=start.noise,
            y=spec.y,
            callback=run.after_step,
            **options,
        )
    if spec.denoise:
        # Final denoising step (Tweedie's formula) at t_end.
        x = run.denoise(x)
    return run.result(x)
