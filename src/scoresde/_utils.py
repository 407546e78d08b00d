"""Small shape-agnostic helpers and input validation shared by every module."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "append_dims",
    "batch_time",
    "check_data",
    "check_finite",
    "check_time",
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


def check_finite(x: Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def check_data(x: Tensor, name: str = "x", min_ndim: int = 2) -> None:
    """Check that ``x`` is a finite floating batch ``(B, *D)`` with at least ``min_ndim`` dims."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have shape (B, *D) with at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    check_finite(x, name)


def check_time(t: Tensor, t_max: float, name: str = "t", t_min: float = 0.0) -> None:
    """Raise ``ValueError`` if any time in ``t`` lies outside ``[t_min, t_max]`` or is not finite."""
    check_finite(t, name)
    if t.numel() == 0:
        return
    lo, hi = float(t.min()), float(t.max())
    tol = 1e-6 * max(1.0, abs(t_max))
    if lo < t_min - tol or hi > t_max + tol:
        raise ValueError(f"{name} must lie in [{t_min}, {t_max}], got values in [{lo:.6g}, {hi:.6g}]")


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
