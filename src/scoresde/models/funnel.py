"""Neal's funnel: a hard 2-D (or D-dimensional) target with a closed-form score of ``p_0``.

``v ~ N(0, scale^2)`` and ``x_i | v ~ N(0, exp(v))`` for ``i = 1..D-1`` (Neal 2003).  The
density varies over orders of magnitude in scale, which makes it a classic test for Langevin
dynamics and for score models.  Only ``p_0`` is closed-form; perturbed scores are not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde._core.tensors import LOG_2PI

__all__ = ["Funnel"]


class Funnel:
    """Neal's funnel in ``dim`` dimensions; the first coordinate is the log-variance ``v``.

    Args:
        dim: total dimension (>= 2).
        scale: standard deviation of ``v``.
    """

    def __init__(self, dim: int = 2, scale: float = 3.0) -> None:
        if dim < 2:
            raise ValueError(f"the funnel needs dim >= 2, got {dim}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.dim = int(dim)
        self.scale = float(scale)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> Tensor:
        """Exact samples ``(n, dim)``."""
        v = self.scale * torch.randn(n, 1, generator=generator, dtype=dtype)
        rest = torch.randn(n, self.dim - 1, generator=generator, dtype=dtype) * torch.exp(v / 2)
        return torch.cat([v, rest], dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p_0(x)``, shape ``(B,)``."""
        v, rest = x[:, 0], x[:, 1:]
        lp_v = -0.5 * (v / self.scale) ** 2 - math.log(self.scale) - 0.5 * LOG_2PI
        lp_rest = (-0.5 * rest**2 * torch.exp(-v)[:, None] - 0.5 * v[:, None] - 0.5 * LOG_2PI).sum(1)
        return lp_v + lp_rest

    def score(self, x: Tensor) -> Tensor:
        """Exact ``grad log p_0(x)``, shape ``(B, dim)``."""
        v, rest = x[:, :1], x[:, 1:]
        inv_var = torch.exp(-v)
        d_v = -v / self.scale**2 - 0.5 * (self.dim - 1) + 0.5 * (rest**2 * inv_var).sum(1, keepdim=True)
        return torch.cat([d_v, -rest * inv_var], dim=1)
