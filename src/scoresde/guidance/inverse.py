"""Linear inverse problems in one call: ``x`` given ``y_obs = A x (+ noise)`` by a named method.

:func:`sample_posterior` runs one of the three posterior samplers of the library on the same
problem, so that a command (``scoresde inpaint``, ``scoresde colorize``) or a script chooses by
name and gets one checked set of options:

- ``"projection"``: :func:`~scoresde.guidance.projection.conditional_sample` (Song et al. 2021,
  App. I) with any sampler ``method``;
- ``"dps"``: :func:`~scoresde.guidance.dps.dps_sample` (Chung et al. 2023, Alg. 1) with step
  size ``zeta``;
- ``"smc"``: :func:`~scoresde.guidance.smc.smc_sample` (Wu et al. 2023; Cardoso et al. 2023)
  with ``particles`` and a ``proposal``.

An option of one method given to another is an error that names the method it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from scoresde.guidance.dps import dps_sample
from scoresde.guidance.operators import LinearOperator
from scoresde.guidance.projection import conditional_sample
from scoresde.guidance.smc import SMCProposal, SMCResult, smc_sample
from scoresde.models.base import ScoreFunction
from scoresde.sampling.spec import SampleSpec
from scoresde.sampling.types import SampleResult

__all__ = ["INVERSE_MODES", "MODE_OF_OPTION", "sample_posterior"]

INVERSE_MODES = ("projection", "dps", "smc")
"""The posterior samplers of :func:`sample_posterior`."""

MODE_OF_OPTION = {"method": "projection", "zeta": "dps", "particles": "smc", "proposal": "smc"}
"""The method-specific options of :func:`sample_posterior` and the mode each belongs to."""


def sample_posterior(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    shape: Sequence[int],
    mode: str = "projection",
    *,
    method: str | None = None,
    zeta: float | None = None,
    particles: int | None = None,
    proposal: str | SMCProposal | None = None,
    spec: SampleSpec | None = None,
    **kwargs: Any,
) -> SampleResult | SMCResult:
    """Sample ``x: (B, *D)`` given ``y_obs = A x`` with the posterior sampler ``mode``.

    Args:
        model: the prior's score model (class-conditional with ``y``).
        operator: the measurement ``A``.
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        shape: ``(B, *D)``.
        mode: one of :data:`INVERSE_MODES`.
        method: ``"projection"``: the sampler (default ``"euler_maruyama"``).
        zeta: ``"dps"``: the step size (default 1, :func:`~scoresde.guidance.dps.dps_sample`'s).
        particles: ``"smc"``: particles per measurement (default 64).
        proposal: ``"smc"``: the proposal (name or object, default ``"auto"``).
        spec, **kwargs: the run (:class:`~scoresde.sampling.spec.SampleSpec` fields: ``steps``,
            ``grid``, ``seed``, ``y``, ``device``, ``progress``, ``denoise`` (not for SMC), ...),
            then the chosen sampler's own options.

    Returns:
        A :class:`~scoresde.sampling.types.SampleResult`, or for ``"smc"`` an
        :class:`~scoresde.guidance.smc.SMCResult`; both have ``x`` and ``nfe``.

    Raises:
        ValueError: an unknown mode, or an option of another mode (named, with its mode).
    """
    if mode not in INVERSE_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(INVERSE_MODES)}")
    given = {"method": method, "zeta": zeta, "particles": particles, "proposal": proposal}
    wrong = [k for k, v in given.items() if v is not None and MODE_OF_OPTION[k] != mode]
    if wrong:
        owners = ", ".join(f"{k}= to mode={MODE_OF_OPTION[k]!r}" for k in wrong)
        raise ValueError(
            f"mode={mode!r} does not take {', '.join(f'{k}=' for k in wrong)} (they belong {owners})"
        )
    if mode == "dps":
        return dps_sample(
            model, operator, y_obs, shape=shape, zeta=1.0 if zeta is None else zeta, spec=spec, **kwargs
        )
    if mode == "smc":
        return smc_sample(
            model,
            operator,
            y_obs,
            shape=shape,
            particles=64 if particles is None else particles,
            proposal="auto" if proposal is None else proposal,
            spec=spec,
            **kwargs,
        )
    method = "euler_maruyama" if method is None else method
    return conditional_sample(model, operator, y_obs, shape=shape, method=method, spec=spec, **kwargs)
