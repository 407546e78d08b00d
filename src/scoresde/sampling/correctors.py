"""Correctors: Langevin MCMC on the perturbed marginal ``p_t`` (Song et al. 2021, Sec. 4.2).

A corrector runs ``n_steps`` Langevin steps targeting ``p_t`` at the grid time ``t = ts[j]``
(``j >= 1``: the grid step ``ts[j] -> ts[j - 1]`` is the one the predictor just took):
``corrector(model, sde, x, ts, j, *, noise, y, n_steps, **options) -> x``.  Each step costs
one model evaluation.  :data:`CORRECTORS` names them for :func:`scoresde.sampling.pc.pc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sde.base import SDE

__all__ = [
    "CORRECTORS",
    "annealed_langevin_corrector",
    "check_n_steps",
    "get_corrector",
    "langevin_alpha",
    "langevin_corrector",
]

Corrector = Callable[..., Tensor]


def check_n_steps(n_steps: int, name: str = "n_corrector") -> int:
    """Validate a number of corrector steps (an integer >= 0)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {n_steps!r}")
    return n_steps


def _check_positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def langevin_alpha(sde: SDE, ts: Tensor, j: int) -> float:
    """The ``alpha_i`` of Song et al. 2021, Alg. 4-5, derived from the SDE.

    ``alpha = a^2`` with ``a`` the coefficient of the exact transition over the grid step
    ``ts[j] -> ts[j - 1]`` (``x_{t_{j-1}} = a x_{t_j} + b n``): 1 for VE SMLD chains (Alg. 4),
    ``1 - beta_i`` for the DDPM chain of the VP SDE (Alg. 5), and the same ``s^2`` ratio for
    sub-VP and every other linear SDE.
    """
    a, _ = sde.transition(ts[j], ts[j - 1])
    return float(a) ** 2


def langevin_corrector(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    j: int,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    n_steps: int = 1,
    snr: float = 0.16,
    norms: str = "batch",
) -> Tensor:
    """Langevin corrector with the step size set by a signal-to-noise ratio (Song et al. 2021, Alg. 4-5).

    Each of ``n_steps`` steps draws ``z ~ N(0, I)`` and updates

        eps = 2 alpha (snr ||z|| / ||score||)^2,    x <- x + eps score(x, t) + sqrt(2 eps) z,

    with ``alpha`` from :func:`langevin_alpha`.

    Args:
        snr: the target signal-to-noise ratio ``r`` (> 0); the paper uses 0.16 for VE and
            0.01 for VP on CIFAR-10.
        norms: ``"batch"`` (the paper's released code): ``||z||`` and ``||score||`` are the
            batch means of the per-sample norms, one step size for the batch; ``"sample"``
            (Alg. 4-5 read per sample): each sample its own step size, so a sample does not
            depend on the rest of its batch (``seed=`` then reproduces across batch sizes).
            In high dimension both agree (the norms concentrate); in low dimension the
            per-sample ratio ``||z|| / ||score||`` is heavy-tailed (an F distribution in 2-D)
            and occasional huge steps throw samples far out, so ``"batch"`` is the default.
    """
    check_n_steps(n_steps, "n_steps")
    snr = _check_positive(snr, "snr")
    if norms not in ("batch", "sample"):
        raise ValueError(f"unknown norms {norms!r}; choose 'batch' or 'sample'")
    t = ts[j].to(x.dtype).expand(x.shape[0])
    alpha = langevin_alpha(sde, ts, j)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(n_steps):
        score = model.score(x, t, y)
        z = noise(x)
        score_norm = score.reshape(len(x), -1).norm(dim=1)
        z_norm = z.reshape(len(x), -1).norm(dim=1)
        if norms == "batch":
            score_norm, z_norm = score_norm.mean().expand(len(x)), z_norm.mean().expand(len(x))
        score_norm = score_norm.clamp_min(tiny)
        eps = append_dims(2 * alpha * (snr * z_norm / score_norm) ** 2, x.ndim)
        # Langevin step.
        x = x + eps * score + torch.sqrt(2 * eps) * z
    return x


def annealed_langevin_corrector(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    j: int,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    n_steps: int = 1,
    step_lr: float | None = None,
) -> Tensor:
    """Annealed Langevin dynamics at one noise level (Song & Ermon 2019, Alg. 1).

    With ``sigma_i = sigma(ts[j])`` the marginal noise standard deviation and ``sigma_L =
    sigma(ts[-1])`` the last (smallest) level of the grid, each of ``n_steps`` steps is

        alpha_i = step_lr sigma_i^2 / sigma_L^2,    x <- x + alpha_i score(x, t) + sqrt(2 alpha_i) z.

    (Song & Ermon write ``alpha_i / 2`` and ``sqrt(alpha_i)``; this is their update with
    ``alpha_i`` halved.)  ALD was made for VE (SMLD) noise; it ignores the drift, so under VP-type
    SDEs the tiny steps of the last levels cannot follow the scale ``s(t) -> 1`` and the sample
    means stay shrunk by a few percent (an expected failure of the mixture test under sub-VP,
    tests/sampling/test_stochastic.py).

    Args:
        step_lr: ``epsilon`` of Song & Ermon (2e-5 there, with ``sigma_L = 0.01``).  The default
            ``None`` takes ``0.2 sigma_L^2``, the same ratio ``alpha_i / sigma_i^2 = 0.2`` as
            theirs, whatever ``sigma_L`` the grid ends at.
    """
    check_n_steps(n_steps, "n_steps")
    sigma_last = float(sde.marginal(ts[-1])[1])
    if sigma_last <= 0:
        raise ValueError("annealed Langevin dynamics needs sigma(t_end) > 0: end the grid at t_end > 0")
    if step_lr is None:
        step_lr = 0.2 * sigma_last**2
    step_lr = _check_positive(step_lr, "step_lr")
    sigma = float(sde.marginal(ts[j])[1])
    alpha = step_lr * sigma**2 / sigma_last**2
    t = ts[j].to(x.dtype).expand(x.shape[0])
    for _ in range(n_steps):
        # Langevin step at noise level sigma_i.
        x = x + alpha * model.score(x, t, y) + math.sqrt(2 * alpha) * noise(x)
    return x


CORRECTORS: dict[str, Corrector | None] = {
    "langevin": langevin_corrector,
    "ald": annealed_langevin_corrector,
    "none": None,
}
"""Correctors by name for :func:`~scoresde.sampling.pc.pc`; ``"none"`` means predictor-only."""


def get_corrector(name: str) -> Corrector | None:
    """Look up a corrector by name, with an error that lists the choices."""
    try:
        return CORRECTORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown corrector {name!r}; choose one of {list(CORRECTORS)}") from None
