"""Training objectives: continuous denoising score matching (Song et al. 2021, Eq. 7).

``L(theta) = E_t { lambda(t) E_{x0} E_{x_t | x0} ||s_theta(x_t, t) - grad log p_{0t}(x_t | x0)||^2 }``
with ``grad log p_{0t}(x_t | x0) = -n / sigma(t)`` and ``t ~ U(eps, T)``.

Weightings ``lambda(t)``:

- ``"sigma2"``: ``lambda = sigma(t)^2`` (the paper's default; equals plain epsilon-MSE);
- ``"likelihood"``: ``lambda = g(t)^2`` (Song et al. 2021c: the loss then bounds the negative
  log-likelihood).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._utils import check_data, sum_except_batch
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

WEIGHTINGS = ("sigma2", "likelihood")

__all__ = ["WEIGHTINGS", "LossOutput", "dsm_loss", "sample_time"]


@dataclass
class LossOutput:
    """A training loss: ``loss`` (scalar, differentiable) and per-sample values ``per_sample: (B,)``."""

    loss: Tensor
    per_sample: Tensor
    t: Tensor


def sample_time(
    sde: SDE, n: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> Tensor:
    """``t ~ U(eps, T)``, shape ``(n,)``."""
    u = torch.rand(n, generator=generator, device=device, dtype=dtype)
    return sde.eps + (sde.T - sde.eps) * u


def dsm_loss(
    model: ScoreFunction,
    x0: Tensor,
    weighting: str = "sigma2",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> LossOutput:
    """Continuous denoising score matching (Song et al. 2021, Eq. 7), per-dimension sum.

    Computed in epsilon form for numerical stability:
    ``lambda(t) ||s + n/sigma||^2 = lambda(t) / sigma^2 ||eps_theta - n||^2``.

    Args:
        model: the score model (its SDE defines the perturbation).
        x0: clean data ``(B, *D)``.
        weighting: ``"sigma2"`` or ``"likelihood"``.
        y: optional labels for conditional models.
        generator: RNG for ``t`` and the noise.
        t, noise: fix them instead of drawing (tests).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(WEIGHTINGS)}")
    check_data(x0, "x0")
    sde = model.sde
    if t is None:
        t = sample_time(sde, x0.shape[0], generator, x0.device, x0.dtype)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = sde.perturb(x0, t, noise)
    eps = model.eps(x_t, t, y)
    per_sample = sum_except_batch((eps - noise) ** 2)
    if weighting == "likelihood":
        _, sigma = sde.marginal(t)
        per_sample = per_sample * (sde.diffusion(t) / sigma) ** 2
    return LossOutput(per_sample.mean(), per_sample, t)
