"""The trainer's schedules: the learning rate (warm-up, then constant, cosine or linear decay) and the
wall-clock budget."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from scoresde.parallel.process_group import DistInfo, all_reduce_mean

__all__ = ["LRSchedule", "TimeBudget"]


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of optimiser step ``step``.

    Linear warm-up to ``lr`` over ``warmup`` steps (Goyal et al. 2017), then constant, or a
    cosine (Loshchilov & Hutter 2017) / linear decay to ``lr * final_lr`` whose progress is the
    larger of the fraction of the post-warm-up steps done and ``budget_spent`` (the fraction of a
    wall-clock budget used), so that a run stopped by its time budget ends at the low rate too.

    Args:
        lr: the peak rate.
        warmup: warm-up steps (0: none).
        schedule: ``constant``, ``cosine`` or ``linear``.
        final_lr: the last rate of the decays, as a fraction of ``lr``.
        steps: the planned number of steps.
    """

    lr: float
    warmup: int
    schedule: str
    final_lr: float
    steps: int

    @classmethod
    def from_config(cls, config) -> LRSchedule:
        """The schedule of a :class:`~scoresde.train.config.TrainConfig`."""
        return cls(config.lr, config.warmup, config.schedule, config.final_lr, config.steps)

    def __call__(self, step: int, budget_spent: float = 0.0) -> float:
        lr = self.lr * min(1.0, (step + 1) / self.warmup) if self.warmup else self.lr
        if self.schedule != "constant" and step >= self.warmup:
            frac = min(1.0, max((step - self.warmup) / max(1, self.steps - self.warmup), budget_spent))
            shape = 0.5 * (1.0 + math.cos(math.pi * frac)) if self.schedule == "cosine" else 1.0 - frac
            lr = self.lr * (self.final_lr + (1.0 - self.final_lr) * shape)
        return lr


class TimeBudget:
    """The fraction of a wall-clock budget of ``minutes`` used since its start, the same on
    every process (the mean of the processes' fractions; 1.0 once any process has used it up).

    Args:
        minutes: the budget (``None``: none; the fraction stays 0).
        dist: the process group.
        elapsed: seconds of the budget already used before now (e.g. before a resume).
    """

    def __init__(self, minutes: float | None, dist: DistInfo, elapsed: float = 0.0) -> None:
        self.minutes, self.dist = minutes, dist
        self.start = time.perf_counter() - elapsed

    def seconds(self) -> float:
        """The seconds used since the start (``elapsed`` included), on this process's clock."""
        return time.perf_counter() - self.start

    def spent(self) -> float:
        if self.minutes is None:
            return 0.0
        own = self.seconds() / (60.0 * self.minutes)
        if not self.dist.distributed:
            return min(own, 1.0)
        both = torch.tensor([min(own, 1.0), float(own >= 1.0)], device=self.dist.device)
        both = all_reduce_mean(both, self.dist)
        return 1.0 if float(both[1]) > 0 else float(both[0])
