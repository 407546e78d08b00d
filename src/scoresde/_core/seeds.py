"""The one seed-derivation scheme: independent RNG streams keyed by ``(seed, key_1, key_2, ...)``.

Every derived stream of the library (the trainer's per-step draws, per-sample noise, per-batch
generators) is named by the user's seed and a path of integer keys, and its 64-bit key is
``H(... H(H(seed) xor k_1) xor k_2 ...)`` with ``H`` the SplitMix64 step (Steele, Lea & Flood
2014: add the golden-ratio increment, then the finaliser).  ``H`` is a bijection of 64-bit words
with full avalanche, so distinct paths under one seed give distinct keys and nearby seeds give
unrelated streams.

- :func:`derive_key`: the 64-bit key of a path (a Python int in ``[0, 2^64)``);
- :func:`derive_seed`: the same key reduced to ``[0, 2^63)``, ready for
  ``torch.Generator().manual_seed``;
- :func:`derive_keys`: the keys ``H(H(seed) xor i)`` of many indices at once, as int64 bit
  patterns (the per-sample keys of :class:`~scoresde.sampling.noise.PerSampleNoise`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["derive_key", "derive_keys", "derive_seed", "splitmix64"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def splitmix64(x: int) -> int:
    """One SplitMix64 step of the 64-bit word ``x`` (taken modulo ``2^64``)."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def derive_key(seed: int, *keys: int) -> int:
    """The 64-bit key of stream ``(seed, *keys)``: ``H(... H(H(seed) xor k_1) ... xor k_n)``."""
    z = splitmix64(int(seed))
    for k in keys:
        z = splitmix64(z ^ (int(k) & _MASK64))
    return z


def derive_seed(seed: int, *keys: int) -> int:
    """:func:`derive_key` in ``[0, 2^63)``: a seed for ``torch.Generator().manual_seed``."""
    return derive_key(seed, *keys) >> 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix64_tensor(x: Tensor) -> Tensor:
    """:func:`splitmix64` elementwise on int64 bit patterns (products wrap modulo ``2^64``)."""
    z = x + _signed(_GOLDEN)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def derive_keys(seed: int, indices: Tensor) -> Tensor:
    """The keys ``derive_key(seed, i)`` of ``indices`` as int64 bit patterns (same shape)."""
    return _splitmix64_tensor(indices.to(torch.int64) ^ _signed(splitmix64(int(seed))))
