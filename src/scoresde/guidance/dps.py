"""``dps_sample``: diffusion posterior sampling (Chung et al. 2023, Algorithm 1) with the
measurement as arguments: a documented alias of ``scoresde.sample(method="dps")``.

The algorithm is the sampler :func:`scoresde.sampling.dps.dps`; this function is that run with
the operator and the observation as positional arguments, Chung et al.'s 1000 steps as the
default, and ``dps_sample`` in its messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from scoresde.guidance.operators import LinearOperator, check_operator
from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.spec import SampleSpec
from scoresde.sampling.types import SampleResult
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
    variance: str = "posterior",
    spec: SampleSpec | None = None,
    **kwargs: Any,
) -> SampleResult:
    """Sample ``x`` given ``y_obs = A x + noise`` by DPS (Chung et al. 2023, Algorithm 1).

    An alias: ``scoresde.sample(model, sde, shape, method="dps", operator=operator, y_obs=y_obs,
    zeta=zeta, variance=variance, steps=1000, label="dps_sample", ...)``, bit for bit.

    Args:
        model: the unconditional (or, with ``y``, class-conditional) score model.
        operator: the measurement ``A`` (:class:`~scoresde.guidance.Inpainting`, ...).
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        sde, shape, spec: as for :func:`scoresde.sample`.
        zeta, variance: the step size and the ancestral variance (:func:`scoresde.sampling.dps.dps`).
        **kwargs: fields of :class:`~scoresde.sampling.spec.SampleSpec` as for
            :func:`scoresde.sample`; ``steps`` defaults to 1000 (Chung et al.'s DDPM steps).

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult` (one network evaluation and one backward
        pass per step).

    Raises:
        ValueError: bad arguments, or samples that stop being finite (with the step at which).
    """
    if spec is None:
        kwargs.setdefault("steps", 1000)
    if spec is None or spec.label is None:
        kwargs.setdefault("label", "dps_sample")
    return sample(
        model,
        sde,
        shape,
        method="dps",
        spec=spec,
        operator=check_operator(operator),
        y_obs=y_obs,
        zeta=zeta,
        variance=variance,
        **kwargs,
    )
