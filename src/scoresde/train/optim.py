"""The one generic optimisation loop: AdamW over ``steps`` steps of a loss function.

Every small training routine of the library is this loop with its own loss:
:func:`scoresde.train.loop.fit` (denoising score matching, Song et al. 2021, Eq. 7),
:func:`scoresde.guidance.classifier.train_classifier` (the noise-conditional classifier,
App. I.1) and :func:`scoresde.evaluation.digits.train_digits_classifier` (the digits reference classifier).
The image trainer (:class:`scoresde.train.Trainer`) adds warm-up, DDP and checkpoints on top of
the same ingredients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scoresde._core.progress import Progress, make_progress

__all__ = ["LoopResult", "adamw", "gradient_norm", "optimize"]


@dataclass
class LoopResult:
    """Loss per step and the wall time of :func:`optimize`."""

    losses: list[float]
    seconds: float
    steps: int


def adamw(
    params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0, device: torch.device | str = "cpu"
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) with its multi-tensor implementation on ``device``.

    The fused kernel where torch has one for the device (CPU and CUDA), else the ``foreach``
    (multi-tensor) one: one kernel for all parameters instead of a loop over them.
    """
    params = list(params)
    if torch.device(device).type in ("cpu", "cuda"):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def optimize(
    params: Iterable[nn.Parameter],
    loss: Callable[[int], Tensor],
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    cosine: bool = True,
    grad_clip: float | None = None,
    after_step: Callable[[], None] | None = None,
    progress: bool | str | Progress = False,
    desc: str = "train",
) -> LoopResult:
    """Minimise ``loss(step)`` with AdamW for ``steps`` steps.

    Args:
        params: the parameters to update.
        loss: ``step -> scalar loss`` (it draws its own minibatch, from its own generator).
        steps: optimiser steps.
        lr, weight_decay: AdamW's settings.
        cosine: decay the learning rate by a cosine to ``0.05 lr`` over the steps; else constant.
        grad_clip: clip the global gradient norm (``None``: no clipping).
        after_step: called after every optimiser step (e.g. an EMA update).
        progress: report progress with the loss (:func:`scoresde._core.progress.make_progress`: a bar
            on a terminal, else a line every 10% or 30 s).
        desc: the progress bar's label.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0 (0 trains nothing), got {lr}")
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05) if cosine else None
    bar = make_progress(progress, steps, desc)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        value = loss(step)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        if after_step is not None:
            after_step()
        losses.append(float(value.detach()))
        bar.update(1, loss=f"{losses[-1]:.4f}")
    bar.close()
    return LoopResult(losses, time.perf_counter() - start, steps)


def gradient_norm(params: Iterable[nn.Parameter], clip: float | None = None) -> Tensor:
    """The global gradient norm of ``params`` (those with a gradient), clipped to ``clip`` first when
    given (:func:`torch.nn.utils.clip_grad_norm_`, which returns the norm before clipping); one
    multi-tensor kernel, no host synchronisation."""
    with_grad = [p for p in params if p.grad is not None]
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(with_grad, clip)
    grads = [p.grad for p in with_grad if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
