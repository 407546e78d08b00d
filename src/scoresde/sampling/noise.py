"""Sources of Gaussian noise for samplers: a ``torch.Generator``, or per-sample counters.

:class:`PerSampleNoise` makes the noise of sample ``i`` a pure function of
``(seed, i, draw number, element)`` through a counter-based hash, so that the same seed gives
the same sample whatever the batch size or batch position offset; it is vectorised (no Python
loop over samples) and identical on every device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GeneratorNoise", "NoiseSource", "PerSampleNoise", "make_noise"]

_MASK32 = 0xFFFFFFFF


class NoiseSource:
    """Draws standard normal tensors; each call advances the stream."""

    def __call__(self, like: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class GeneratorNoise(NoiseSource):
    """Noise from an explicit ``torch.Generator`` (or the global RNG when ``None``)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, like: Tensor) -> Tensor:
        if self.generator is not None and self.generator.device != like.device:
            z = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
            return z.to(like.device)
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)


def _mul32(a: Tensor, b: int) -> Tensor:
    """``(a * b) mod 2^32`` for ``a < 2^32`` in int64 without overflow (split ``b`` in halves)."""
    lo, hi = b & 0xFFFF, b >> 16
    return (a * lo + (((a * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit avalanche hash (the "lowbias32" finaliser of C. Wellons)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class PerSampleNoise(NoiseSource):
    """Counter-based noise: sample ``offset + b`` of every batch has its own stream.

    Args:
        seed: the user's seed (any int).
        offset: index of the first sample of the batch (to split one run into batches).
    """

    def __init__(self, seed: int, offset: int = 0) -> None:
        self.seed = int(seed) & _MASK32
        self.offset = int(offset)
        self.draw = 0

    def __call__(self, like: Tensor) -> Tensor:
        b = like.shape[0]
        d = like[0].numel()
        dev = like.device
        idx = torch.arange(self.offset, self.offset + b, device=dev, dtype=torch.int64)[:, None]
        el = torch.arange(2 * d, device=dev, dtype=torch.int64)[None, :]
        key = _mix32(torch.full_like(idx, self.seed) ^ _mix32(idx & _MASK32))
        key = _mix32(key ^ _mix32(torch.full_like(idx, self.draw & _MASK32) + 0x9E3779B9))
        bits = _mix32(key ^ _mix32(el))  # (B, 2D) independent 32-bit words
        u = (bits.to(torch.float64) + 0.5) / 2.0**32  # in (0, 1)
        u1, u2 = u[:, :d], u[:, d:]
        # Box-Muller transform.
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        self.draw += 1
        return z.to(like.dtype).reshape(like.shape)


def make_noise(generator: torch.Generator | None = None, seed: int | None = None) -> NoiseSource:
    """A per-sample source when ``seed`` is given, else a generator-backed one."""
    if seed is not None and generator is not None:
        raise ValueError("give either generator or seed, not both")
    return PerSampleNoise(seed) if seed is not None else GeneratorNoise(generator)
