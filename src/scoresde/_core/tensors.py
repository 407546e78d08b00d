"""Small shape-agnostic tensor helpers shared by every module (input checks: :mod:`scoresde._core.checks`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "LOG_2PI",
    "append_dims",
    "as_shape",
    "batch_time",
    "sum_except_batch",
]


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``x`` until it has ``ndim`` dimensions.

    Makes per-sample quantities (shape ``(B,)``) broadcast against data of any shape
    ``(B, *D)`` without image-specific indexing.
    """
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * missing))


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, *D) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def batch_time(t: Tensor | float, x: Tensor) -> Tensor:
    """Turn a scalar or ``(B,)`` time into a ``(B,)`` tensor on ``x``'s device and dtype."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


def as_shape(shape: Sequence[int] | torch.Size) -> tuple[int, ...]:
    """Validate a sample shape ``(B, *D)``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (B, *D) with positive sizes and at least 2 entries, got {shape}")
    return shape


LOG_2PI = math.log(2 * math.pi)
