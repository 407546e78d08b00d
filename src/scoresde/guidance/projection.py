"""Projection-based conditioning for inpainting, colorization and linear inverse problems.

Song et al. 2021 (App. I.2-I.3): after every step of any sampler, the part of ``x_t`` that the
measurement determines is replaced by a fresh draw of the noised observation.  For a general
``A = U S V^T`` the determined part is the row space of ``A``: with ``P = A^+ A``,

    x_t <- (I - P) x_t + s(t) A^+ y + sigma(t) P z,     z ~ N(0, I),

which is masking for inpainting and the channel mean for colorization.  The unknown part is then
finished with the Tweedie denoiser ``E[x_0 | x_{t_end}]`` (the paper's released code leaves the
last step's noise there); the known part is set to ``A^+ y`` exactly.

This is an approximation of the posterior (the unknown part never sees how likely the noised
observation was under its own trajectory), exact only where the known and unknown parts are
independent.  It works with every sampler of :data:`scoresde.SAMPLERS` by running the sampler
one grid interval at a time; a multistep solver therefore restarts (at its first-order start
step) after each projection, which is unavoidable since projection invalidates its history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.guidance.operators import Colorization, Inpainting, LinearOperator, check_operator
from scoresde.models.base import ScoreFunction
from scoresde.sampling.registry import get_sampler
from scoresde.sampling.setup import SamplingRun, SamplingStart, start_sampling
from scoresde.sampling.spec import SampleSpec, split_spec
from scoresde.sampling.types import SampleResult
from scoresde.sde.base import SDE

__all__ = ["colorize", "conditional_sample", "inpaint", "start_inverse_problem"]


def _replace(
    op: LinearOperator, x: Tensor, x_known: Tensor, s: Tensor, sigma: Tensor, z: Tensor | None
) -> Tensor:
    """``(I - P) x + s A^+ y (+ sigma P z)``: put the noised observation in the row space of ``A``."""
    out = x - op.project(x) + append_dims(s, x.ndim) * x_known
    if z is not None:
        out = out + append_dims(sigma, x.ndim) * op.project(z)
    return out


def start_inverse_problem(
    model: ScoreFunction, operator: LinearOperator, y_obs: Tensor, sde: SDE | None, spec: SampleSpec
) -> tuple[SamplingStart, Tensor]:
    """The checked start of a sampler conditioned on ``y_obs = A x`` (:func:`conditional_sample`,
    SMC): :func:`scoresde.sampling.setup.start_sampling` of ``spec``, and the observation batched
    like the start (:meth:`LinearOperator.match_observations`)."""
    check_operator(operator)
    start = start_sampling(model, sde, spec)
    return start, operator.match_observations(y_obs, start.x)


@torch.no_grad()
def conditional_sample(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    method: str = "euler_maruyama",
    *,
    spec: SampleSpec | None = None,
    **kwargs: Any,
) -> SampleResult:
    """Sample ``x`` given ``y_obs = A x`` by projection (Song et al. 2021, App. I), with any sampler.

    Args:
        model: the unconditional (or, with ``y``, class-conditional) score model.
        operator: the measurement ``A`` (:class:`Inpainting`, :class:`Colorization`,
            :class:`MatrixOperator`, ...).
        y_obs: observations ``(B, *out_shape)`` or one observation ``(*out_shape)`` for all.
        sde, shape, method, spec: as for :func:`scoresde.sample`.
        **kwargs: fields of :class:`~scoresde.sampling.spec.SampleSpec`, as for
            :func:`scoresde.sample` (``denoise`` finishes with the Tweedie denoiser on the
            unknown part, one more NFE; ``callback`` is called after every step and projection;
            a tuned grid is not available here), then the sampler's options.

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult`; ``x`` has shape ``(B, *in_shape)`` and
        ``A x`` equals ``A A^+ y_obs``.
    """
    if shape is not None:
        kwargs["shape"] = shape
    spec, options = split_spec(spec, kwargs)
    sampler = get_sampler(method)
    sampler.check_options(method, options)
    start, y_obs = start_inverse_problem(model, operator, y_obs, sde, spec)
    sde, ts, noise, x = start.sde, start.ts, start.noise, start.x
    x_known = operator.pinv(y_obs)  # A^+ y

    def coefs(t: Tensor) -> tuple[Tensor, Tensor]:
        s, sigma = sde.marginal(t.to(x.dtype).expand(x.shape[0]))
        return s, sigma

    if spec.x_T is None:
        x = _replace(operator, x, x_known, *coefs(ts[0].to(x.device)), noise(x))
    label = "conditional_sample" if spec.label is None else spec.label
    with SamplingRun(model, SamplingStart(sde, ts, noise, x, spec), label) as run:
        for i in range(run.steps):
            x = sampler(run.model, sde, x, run.ts[i : i + 2], noise=noise, y=spec.y, **options)
            # Projection onto the measurement (Song et al. 2021, App. I.2, "replace the known part").
            x = _replace(operator, x, x_known, *coefs(run.ts[i + 1]), noise(x))
            run.after_step(i, run.ts[i + 1], x)
    if spec.denoise:
        # Final Tweedie step on the unknown part; the known part is the observation itself.
        s_end, sigma_end = coefs(run.ts[-1])
        x = _replace(operator, run.denoise(x), x_known, torch.ones_like(s_end), sigma_end, None)
    return run.result(x)


def inpaint(
    model: ScoreFunction, image: Tensor, mask: Tensor, channels: int | None = None, **kwargs: Any
) -> SampleResult:
    """Fill in ``image`` where ``mask`` is false (Song et al. 2021, App. I.2).

    Args:
        model: the unconditional score model.
        image: ``(B, *D)``; only the entries where ``mask`` is true are used.
        mask: boolean ``(*D)`` (or ``(1, H, W)`` / ``(H, W)`` with ``channels``), true = known.
        **kwargs: passed to :func:`conditional_sample` (``method``, ``steps``, ``seed``, ...).
    """
    op = Inpainting(mask, channels=channels)
    op.check_input(image, "image")
    return conditional_sample(model, op, op.forward(image), shape=image.shape, **kwargs)


def colorize(model: ScoreFunction, gray: Tensor, channels: int = 3, **kwargs: Any) -> SampleResult:
    """Colour a grayscale image ``gray: (B, 1, *S)`` (Song et al. 2021, App. I.3).

    Gray is the mean over channels; the result ``(B, channels, *S)`` has exactly that mean.
    """
    if gray.ndim < 3 or gray.shape[1] != 1:
        raise ValueError(f"gray must have shape (B, 1, *S), got {tuple(gray.shape)}")
    op = Colorization((channels, *gray.shape[2:]))
    return conditional_sample(model, op, gray, shape=(gray.shape[0], *op.in_shape), **kwargs)
