"""Predictor-corrector sampling (Song et al. 2021, Sec. 4.2, Alg. 1-3) and corrector-only samplers."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.correctors import check_n_steps, get_corrector
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.predictors import get_predictor
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["ald", "langevin", "pc"]


def pc(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    n_corrector: int = 1,
    predictor_options: dict[str, Any] | None = None,
    **corrector_options: Any,
) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1; Alg. 2 for VE, Alg. 3 for VP).

    For each grid step ``t_i -> t_{i+1}``: one predictor step to ``t_{i+1}``, then
    ``n_corrector`` (the paper's ``M``) corrector steps targeting ``p_{t_{i+1}}``.  NFE per
    step: ``1 + n_corrector`` (``n_corrector`` with ``predictor="none"``).

    Args:
        predictor: a key of :data:`~scoresde.sampling.predictors.PREDICTORS`
            (``reverse_diffusion``, ``euler_maruyama``, ``ancestral``, ``probability_flow``,
            or ``none`` for corrector-only sampling).
        corrector: a key of :data:`~scoresde.sampling.correctors.CORRECTORS` (``langevin``,
            ``ald`` or ``none`` for predictor-only sampling).
        n_corrector: corrector steps per predictor step (>= 0).
        predictor_options: keyword options of the predictor step (e.g. ``{"variance":
            "transition"}`` for ``ancestral``).
        **corrector_options: options of the corrector: ``snr`` (default 0.16) and ``norms``
            (default ``"batch"``) for ``langevin``, ``step_lr`` for ``ald``.
    """
    step = get_predictor(predictor)
    correct = get_corrector(corrector)
    check_n_steps(n_corrector)
    if correct is None and corrector_options:
        raise ValueError(f"corrector 'none' takes no options, got {sorted(corrector_options)}")
    if step is None and correct is None:
        raise ValueError("predictor and corrector cannot both be 'none'")
    if step is None and n_corrector == 0:
        raise ValueError("corrector-only sampling needs n_corrector >= 1")
    predictor_options = dict(predictor_options or {})
    for i in range(len(ts) - 1):
        # Predictor step.
        if step is not None:
            x = step(model, sde, x, ts[i], ts[i + 1], noise=noise, y=y, **predictor_options)
        # Corrector steps.
        if correct is not None:
            x = correct(model, sde, x, ts, i + 1, noise=noise, y=y, n_steps=n_corrector, **corrector_options)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x


def langevin(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    n_corrector: int = 1,
    snr: float = 0.16,
    norms: str = "batch",
) -> Tensor:
    """Corrector-only sampling ("C" of Song et al. 2021, Table 1): Langevin with the ``snr`` step.

    ``n_corrector`` steps of :func:`~scoresde.sampling.correctors.langevin_corrector` at each
    grid time after ``ts[0]`` (``norms`` as there); NFE ``n_corrector`` per grid step.
    """
    return pc(
        model,
        sde,
        x,
        ts,
        noise=noise,
        y=y,
        callback=callback,
        predictor="none",
        corrector="langevin",
        n_corrector=n_corrector,
        snr=snr,
        norms=norms,
    )


def ald(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    n_corrector: int = 1,
    step_lr: float | None = None,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) over the noise levels of the grid.

    ``n_corrector`` steps (their ``T``) of
    :func:`~scoresde.sampling.correctors.annealed_langevin_corrector` at each grid time after
    ``ts[0]`` (their ``sigma_1 > ... > sigma_L``); NFE ``n_corrector`` per grid step.
    """
    return pc(
        model,
        sde,
        x,
        ts,
        noise=noise,
        y=y,
        callback=callback,
        predictor="none",
        corrector="ald",
        n_corrector=n_corrector,
        step_lr=step_lr,
    )
