"""Time embeddings for score networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GaussianFourierProjection", "SinusoidalEmbedding"]


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar time (Tancik et al. 2020; Song et al. 2021, NCSN++).

    ``[sin(2 pi w t), cos(2 pi w t)]`` with fixed ``w ~ N(0, scale^2)``.

    Args:
        dim: output dimension (even).
        scale: standard deviation of the frequencies.
        seed: seed of the frequencies, so that a rebuilt network matches its checkpoint.
    """

    W: Tensor  # buffer: the fixed frequencies

    def __init__(self, dim: int = 128, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, t: Tensor) -> Tensor:
        proj = t[:, None].to(self.W.dtype) * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a scalar (Vaswani et al. 2017; DDPM)."""

    freqs: Tensor  # buffer

    def __init__(self, dim: int = 128, max_period: float = 10000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs)
        self.scale = scale

    def forward(self, t: Tensor) -> Tensor:
        args = self.scale * t[:, None].to(self.freqs.dtype) * self.freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
