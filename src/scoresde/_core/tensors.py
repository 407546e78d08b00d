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
    "lincomb",
    "scalar",
    "scalars",
    "sum_except_batch",
]

_SCALARS: dict[tuple[float, torch.dtype], Tensor] = {}


def scalars(values: Sequence[float], dtype: torch.dtype) -> Sequence[Tensor | float]:
    """The per-step coefficients ``values`` of a run as 0-d CPU tensors of ``dtype`` (one tensor
    made once per run, then its views), or the floats themselves for half precisions (see
    :func:`scalar`)."""
    if dtype not in (torch.float32, torch.float64):
        return list(values)
    return torch.tensor(values, dtype=dtype).unbind()


def lincomb(a: float, x: Tensor, *terms: tuple[float, Tensor]) -> Tensor:
    """``a x + sum_k c_k y_k`` for Python floats ``a, c_k``, in ``1 + len(terms)`` tensor operations.

    The step of every fixed-step sampler is such a combination with per-step coefficients
    (Python floats of the time grid).  Written as ``a * x + c * y`` it costs a wrapped number per
    product and a temporary per term; here ``a x`` is one multiplication by a 0-d tensor
    (:func:`scalar`) and each term one in-place ``add_(y, alpha=c)`` (``alpha`` is passed as a
    number, not wrapped).  Equal to the written form within an ulp per term.
    """
    if a == 1.0 and terms:
        out = torch.add(x, terms[0][1], alpha=terms[0][0])
        terms = terms[1:]
    else:
        out = x * scalar(a, x.dtype)
    for c, y in terms:
        out.add_(y, alpha=c)
    return out


def scalar(value: float, dtype: torch.dtype) -> Tensor | float:
    """``value`` as a memoised 0-d CPU tensor of ``dtype`` (float32 / float64), else the float.

    A tensor times a Python number first wraps the number in a new tensor (on a CPU about as
    long as the multiplication of a 16k-entry batch); times a 0-d tensor of its own dtype it
    does not, so the per-step coefficients of a sampler (Python floats of a time grid) are
    passed through here.  A 0-d CPU tensor acts as a scalar for tensors on any device, and in
    float32 / float64 it rounds the value as the operation would round the Python number (the
    results are equal); for half precisions the float itself is returned (their operations
    compute in float32).  The memo holds at most 8192 values.
    """
    if dtype not in (torch.float32, torch.float64):
        return value
    key = (value, dtype)
    out = _SCALARS.get(key)
    if out is None:
        if len(_SCALARS) >= 8192:
            _SCALARS.clear()
        # A normal tensor even when first asked for under torch.inference_mode: the memo outlives
        # that context, and an inference tensor cannot enter a later autograd graph (guidance).
        with torch.inference_mode(False):
            out = _SCALARS[key] = torch.tensor(value, dtype=dtype)
    return out


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
