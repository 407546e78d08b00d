"""A minimal training loop for vector data: the generic loop of :mod:`scoresde.train.optim`, DSM loss, EMA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.train.ema import EMA
from scoresde.train.losses import dsm_loss
from scoresde.train.optim import optimize

__all__ = ["FitResult", "fit"]


@dataclass
class FitResult:
    """Losses per step, the EMA model and the wall time."""

    losses: list[float]
    ema_model: ScoreFunction
    seconds: float
    steps: int = field(default=0)


def fit(
    model: ScoreFunction,
    data: Tensor | Callable[[int, torch.Generator], Tensor],
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    ema_decay: float = 0.999,
    weighting: str = "sigma2",
    grad_clip: float | None = 1.0,
    generator: torch.Generator | None = None,
    progress: bool | str = False,
) -> FitResult:
    """Train ``model`` by denoising score matching (Song et al. 2021, Eq. 7).

    Args:
        model: the score model to train (its parameters are updated in place).
        data: a tensor ``(N, *D)`` to draw minibatches from, or ``fn(batch, generator)``
            returning fresh samples.
        steps, batch_size, lr, weight_decay: optimisation settings (AdamW with a cosine decay).
        ema_decay: decay of the weight average returned as ``ema_model``.
        weighting: DSM weighting (``sigma2`` or ``likelihood``).
        grad_clip: clip the gradient norm (``None`` to disable).
        generator: RNG for minibatches, times and noise.
        progress: show a progress bar with the loss.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ema = EMA(model, ema_decay)

    def loss(step: int) -> Tensor:
        if callable(data):
            x0 = data(batch_size, g)
        else:
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=g)
            x0 = data[idx]
        return dsm_loss(model, x0, weighting=weighting, generator=g).loss

    model.train()
    run = optimize(
        model.parameters(),
        loss,
        steps,
        lr,
        weight_decay,
        grad_clip=grad_clip,
        after_step=lambda: ema.update(model),
        progress=progress,
    )
    model.eval()
    return FitResult(run.losses, ema.module, run.seconds, steps)
