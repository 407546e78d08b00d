"""Exponential moving average of model weights, with warm-up."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["EMA"]

M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """Keeps ``ema = decay * ema + (1 - decay) * param`` after every optimiser step.

    The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates
    (as in the NCSN++ and DDPM code bases), so early averages are not dominated by the random
    initialisation.

    Args:
        model: the module whose parameters are averaged.
        decay: the target decay rate.
        warmup: use the warm-up schedule.
    """

    def __init__(self, model: M, decay: float = 0.999, warmup: bool = True) -> None:
        if not (0.0 <= decay < 1.0):
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.module: M = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        mine: list[Tensor] = list(self.module.parameters())
        theirs = [p.detach() for p in model.parameters()]
        if len(mine) != len(theirs):
            raise ValueError(f"EMA of {len(mine)} parameters updated from a model with {len(theirs)}")
        if mine:
            torch._foreach_lerp_(mine, theirs, 1.0 - d)  # one multi-tensor kernel for all parameters
        buffers, sources = list(self.module.buffers()), list(model.buffers())
        if len(buffers) != len(sources):
            raise ValueError(f"EMA of {len(buffers)} buffers updated from a model with {len(sources)}")
        if buffers:
            torch._foreach_copy_(buffers, sources)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"num_updates": self.num_updates, "decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
        self.module.load_state_dict(state["module"])
