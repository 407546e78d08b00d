"""Sample-quality metrics between two point clouds ``(N, *D)`` and ``(M, *D)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scoresde._utils import check_finite

__all__ = ["classifier_accuracy", "energy_distance", "mmd_rbf", "sliced_wasserstein"]


def _flat(x: Tensor, name: str) -> Tensor:
    check_finite(x, name)
    return x.reshape(x.shape[0], -1).to(torch.float64)


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011), averaged over random directions.

    Both clouds are resampled to the same size by quantile interpolation per direction.
    """
    a, b = _flat(x, "x"), _flat(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    dirs = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    n = max(pa.shape[0], pb.shape[0])
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qa = torch.quantile(pa, q, dim=0) if pa.shape[0] != n else pa
    qb = torch.quantile(pb, q, dim=0) if pb.shape[0] != n else pb
    return float(((qa - qb) ** 2).mean().sqrt())


def mmd_rbf(x: Tensor, y: Tensor, bandwidth: float | None = None) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel (median heuristic)."""
    a, b = _flat(x, "x"), _flat(y, "y")
    xy = torch.cat([a, b])
    d2 = torch.cdist(xy, xy) ** 2
    if bandwidth is None:
        bandwidth = float(d2[d2 > 0].median().sqrt())
    k = torch.exp(-d2 / (2 * bandwidth**2))
    n, m = a.shape[0], b.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(
        (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Szekely & Rizzo 2013)."""
    a, b = _flat(x, "x"), _flat(y, "y")
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


@torch.no_grad()
def classifier_accuracy(logits: Callable[[Tensor], Tensor], x: Tensor, labels: Tensor) -> float:
    """Fraction of ``x: (N, ...)`` whose largest logit ``logits(x): (N, C)`` is at ``labels: (N,)``.

    The one accuracy of the library: :func:`scoresde.eval.classifier_accuracy` (clean images)
    and :func:`scoresde.guidance.classifier_accuracy` (noised inputs at a time ``t``) call it.
    """
    out = logits(x)
    if out.ndim != 2 or out.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must have shape ({labels.shape[0]}, C), got {tuple(out.shape)}")
    return float((out.argmax(1) == labels.to(out.device)).double().mean())
