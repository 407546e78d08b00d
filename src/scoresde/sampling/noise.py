"""Sources of Gaussian noise for samplers: a ``torch.Generator``, or per-sample counters.

:class:`PerSampleNoise` makes the noise of sample ``i`` a pure function of
``(seed, i, draw number, element)`` through a counter-based 64-bit hash, so that the same seed
gives the same sample whatever the batch size, batch position (``offset``) or process count; it
is vectorised (no Python loop over samples) and identical on every device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "GeneratorNoise",
    "NoiseSource",
    "PerSampleNoise",
    "make_noise",
    "per_sample_normal",
    "sample_keys",
    "scaled_draw",
]


class NoiseSource:
    """Draws standard normal tensors; each call advances the stream."""

    def __call__(self, like: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def scaled(self, like: Tensor, std: float) -> Tensor:
        """``std`` times the next draw (a new tensor; the stream advances as by one call)."""
        return self(like) * std


def scaled_draw(noise: NoiseSource, like: Tensor, std: float) -> Tensor:
    """``std`` times the next draw of ``noise``, a new tensor: :meth:`NoiseSource.scaled`, or for
    any other callable noise source ``noise(like) * std``."""
    scaled = getattr(noise, "scaled", None)
    return scaled(like, std) if scaled is not None else noise(like) * std


class GeneratorNoise(NoiseSource):
    """Noise from an explicit ``torch.Generator`` (or the global RNG when ``None``)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, like: Tensor) -> Tensor:
        if self.generator is not None and self.generator.device != like.device:
            z = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
            return z.to(like.device)
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def scaled(self, like: Tensor, std: float) -> Tensor:
        """``std`` times the draw of :meth:`__call__` in the same pass (``normal_`` with that
        standard deviation draws the same standard normals as ``randn`` and scales them as it
        writes them: the same stream, one tensor operation fewer)."""
        if std < 0 or (self.generator is not None and self.generator.device != like.device):
            return self(like).mul_(std)
        z = torch.empty(like.shape, device=like.device, dtype=like.dtype)
        return z.normal_(0.0, std, generator=self.generator)


_MASK64 = (1 << 64) - 1


def _signed64(c: int) -> int:
    """A 64-bit pattern as the int64 value with the same bits."""
    c &= _MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed64(0x9E3779B97F4A7C15)
_M1 = _signed64(0xBF58476D1CE4E5B9)
_M2 = _signed64(0x94D049BB133111EB)


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(x: Tensor) -> Tensor:
    """The SplitMix64 finaliser (Steele, Lea & Flood 2014) on int64 bit patterns.

    A bijection of 64-bit words with full avalanche; int64 products wrap modulo 2^64.
    """
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def _splitmix64_int(x: int) -> int:
    """:func:`_splitmix64` of one Python int (any size; taken modulo 2^64)."""
    return int(_splitmix64(torch.tensor([_signed64(x)], dtype=torch.int64))[0])


def sample_keys(seed: int, indices: Tensor) -> Tensor:
    """64-bit keys ``(B,)`` of samples ``indices`` under ``seed``: ``H(H(seed) xor i)``.

    ``H`` is a bijection, so for one seed distinct indices get distinct keys; for two seeds
    a key coincides only when ``H(seed) xor H(seed')`` equals ``i xor j``, a chance of about
    ``2^-64`` per pair.  (A 32-bit key, or ``torch.Generator.manual_seed``, which keeps only
    the low 32 bits of its seed, would give duplicates among ~10^5 samples.)
    """
    return _splitmix64(indices.to(torch.int64) ^ _splitmix64_int(seed))


class PerSampleNoise(NoiseSource):
    """Counter-based noise: sample ``offset + b`` of every batch has its own stream.

    Element ``e`` of draw ``k`` of sample ``i`` is a pure function of ``(seed, i, k, e)``:
    a 64-bit word ``H(H(key_i xor H(k)) xor H(e))`` (:func:`sample_keys`, ``H`` = SplitMix64)
    whose two 32-bit halves give the uniforms of a Box-Muller transform.  So a sample depends
    on the seed and its index only, whatever the batch size, the batch's position, the
    process count or the device.

    Args:
        seed: the user's seed (any int).
        offset: index of the first sample of the batch (to split one run into batches or
            across processes).
    """

    def __init__(self, seed: int, offset: int = 0) -> None:
        self.seed = int(seed)
        self.offset = int(offset)
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self.draw = 0

    def __call__(self, like: Tensor) -> Tensor:
        b = like.shape[0]
        d = like[0].numel()
        dev = like.device
        idx = torch.arange(self.offset, self.offset + b, device=dev, dtype=torch.int64)
        key = sample_keys(self.seed, idx)[:, None]
        key = _splitmix64(key ^ _splitmix64_int(self.draw))
        el = _splitmix64(torch.arange(d, device=dev, dtype=torch.int64))[None, :]
        bits = _splitmix64(key ^ el)  # (B, D) independent 64-bit words
        hi, lo = _shr(bits, 32), bits & 0xFFFFFFFF
        u1 = (hi.to(torch.float64) + 0.5) / 2.0**32  # in (0, 1)
        u2 = (lo.to(torch.float64) + 0.5) / 2.0**32
        # Box-Muller transform.
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        self.draw += 1
        return z.to(like.dtype).reshape(like.shape)


def per_sample_normal(
    seed: int,
    shape: tuple[int, ...],
    first_index: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal ``(B, *D)`` whose row ``b`` depends only on ``(seed, first_index + b)``.

    The first draw of :class:`PerSampleNoise` (what :func:`scoresde.sample` uses as the prior
    draw ``x_T / prior_std`` when given ``seed``).
    """
    return PerSampleNoise(seed, first_index)(torch.empty(shape, device=device, dtype=dtype))


def make_noise(
    generator: torch.Generator | None = None, seed: int | None = None, first_index: int = 0
) -> NoiseSource:
    """A per-sample source when ``seed`` is given (batch starting at sample ``first_index``),
    else a generator-backed one."""
    if seed is not None and generator is not None:
        raise ValueError("give either generator or seed, not both")
    if first_index and seed is None:
        raise ValueError("first_index applies to per-sample noise: give seed as well")
    return PerSampleNoise(seed, first_index) if seed is not None else GeneratorNoise(generator)
