"""The consistency distillation / training loop (Song et al. 2023, Alg. 2 and 3)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.distill.consistency import ConsistencyLoss, ConsistencyModel
from scoresde.models.base import ScoreFunction
from scoresde.sampling.grids import time_grid
from scoresde.train.ema import EMA
from scoresde.train.optim import optimize

__all__ = ["DistillResult", "distill"]


@dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        model: the EMA of the student (the one to sample with ``method="consistency"``).
        student: the online student (its weights after the last step).
        losses: the loss of every step.
        seconds: wall time of the loop.
        steps: optimiser steps taken.
    """

    model: ConsistencyModel
    student: ConsistencyModel
    losses: list[float]
    seconds: float
    steps: int


def _draw(data: Tensor | Callable[[int, torch.Generator], Tensor], batch: int, g: torch.Generator) -> Tensor:
    if callable(data):
        return data(batch, g)
    idx = torch.randint(0, data.shape[0], (batch,), generator=g)
    return data[idx]


def distill(
    teacher: ScoreFunction | None,
    data: Tensor | Callable[[int, torch.Generator], Tensor],
    student: ConsistencyModel | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-4,
    num_scales: int = 18,
    loss: ConsistencyLoss | None = None,
    mu: float = 0.0,
    ema_decay: float = 0.999,
    generator: torch.Generator | None = None,
    progress: bool | str | Progress = False,
) -> DistillResult:
    """Distil ``teacher`` into a consistency model (or train one without a teacher).

    Args:
        teacher: any score model (its probability-flow ODE is what the student learns to jump
            along); ``None`` for consistency training from ``data`` alone (then ``student`` is
            required).
        data: clean data ``(N, *D)`` or ``fn(batch, generator)`` drawing fresh samples.
        student: the model to train; default a :class:`ConsistencyModel` around a copy of the
            teacher (its denoiser is the starting point).
        steps, batch_size, lr: AdamW settings (cosine decay over ``steps``).
        num_scales: ``N``, the number of steps of the EDM grid (``rho = 7``) between ``T`` and
            ``t_min`` on which adjacent points are paired (Song et al. 2023 use 18 on CIFAR-10).
        loss: the objective; default ``ConsistencyLoss(ts, teacher)`` on that grid (Heun,
            ``l2``).
        mu: decay of the target network ``theta^-`` (0: a stop-gradient copy of the student).
        ema_decay: decay of the returned weight average.
        generator: RNG for data, times and noise.
        progress: report progress with the loss.

    Raises:
        ValueError: no teacher and no student, a teacher without parameters and no student,
            or a step count / scale count out of range.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(num_scales, int) or num_scales < 1:
        raise ValueError(f"num_scales must be a positive integer, got {num_scales!r}")
    if not (0.0 <= mu < 1.0):
        raise ValueError(f"mu must lie in [0, 1), got {mu}")
    if student is None:
        if teacher is None:
            raise ValueError("consistency training (teacher=None) needs a student model")
        if not any(True for _ in teacher.parameters()):
            raise ValueError(
                "the teacher has no parameters to copy into a student (an exact oracle?): "
                "pass student=ConsistencyModel(ScoreModel(net, sde, prediction='x0'))"
            )
        student = ConsistencyModel(copy.deepcopy(teacher))
    if teacher is not None and teacher.sde.config() != student.sde.config():
        raise ValueError("the teacher and the student must share one SDE")
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    if loss is None:
        ts = time_grid(student.sde, num_scales, "edm", t_end=student.t_min)
        loss = ConsistencyLoss(ts, teacher)
    target_ema = EMA(student, mu, warmup=False) if mu > 0 else None
    target = student if target_ema is None else target_ema.module
    ema = EMA(student, ema_decay)

    def step_loss(step: int) -> Tensor:
        return loss(student, target, _draw(data, batch_size, g), generator=g)

    def after_step() -> None:
        if target_ema is not None:
            target_ema.update(student)
        ema.update(student)

    student.train()
    run = optimize(student.parameters(), step_loss, steps, lr, after_step=after_step, progress=progress)
    student.eval()
    return DistillResult(ema.module, student, run.losses, run.seconds, steps)
