"""2-D toy data sets, each drawn through an explicit ``torch.Generator``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scoresde.models.analytic import GaussianMixture
from scoresde.models.funnel import Funnel

__all__ = ["TOY_DATASETS", "toy_data"]

G = torch.Generator | None


def _funnel(n: int, g: G) -> Tensor:
    return Funnel(dim=2, scale=1.5).sample(n, g)


def _swiss_roll(n: int, g: G) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5.0
    return x + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _two_moons(n: int, g: G) -> Tensor:
    upper = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    a = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    x = torch.where(upper, torch.cos(a), 1 - torch.cos(a))
    y = torch.where(upper, torch.sin(a), 0.5 - torch.sin(a))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return pts + 0.05 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _eight_gaussians(n: int, g: G) -> Tensor:
    return GaussianMixture.ring(8, radius=2.0, std=0.1).sample(n, g)


def _checkerboard(n: int, g: G) -> Tensor:
    x1 = 4 * torch.rand(n, generator=g, dtype=torch.float64) - 2
    x2 = torch.rand(n, generator=g, dtype=torch.float64) - torch.randint(0, 2, (n,), generator=g) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1)


def _circles(n: int, g: G) -> Tensor:
    outer = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    r = torch.where(
        outer, torch.full((n,), 2.0, dtype=torch.float64), torch.full((n,), 1.0, dtype=torch.float64)
    )
    a = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    pts = torch.stack([r * torch.cos(a), r * torch.sin(a)], dim=1)
    return pts + 0.05 * torch.randn(n, 2, generator=g, dtype=torch.float64)


TOY_DATASETS: dict[str, Callable[[int, G], Tensor]] = {
    "funnel": _funnel,
    "swiss_roll": _swiss_roll,
    "two_moons": _two_moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "circles": _circles,
}


def toy_data(
    name: str | GaussianMixture,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``n`` points ``(n, 2)`` from a named toy set, or ``(n, D)`` from a mixture."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if isinstance(name, GaussianMixture):
        return name.sample(n, generator).to(dtype)
    try:
        fn = TOY_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}") from None
    return fn(n, generator).to(dtype)
