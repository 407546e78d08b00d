"""Sample-quality metrics between two point clouds ``(N, *D)`` and ``(M, *D)``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scoresde._core.checks import check_finite

__all__ = [
    "classifier_accuracy",
    "energy_distance",
    "frechet_distance_features",
    "mean_se",
    "mmd_rbf",
    "sliced_wasserstein",
]


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

    The one accuracy of the library: :func:`scoresde.evaluation.digits.classifier_accuracy` (clean images)
    and :func:`scoresde.guidance.classifier_accuracy` (noised inputs at a time ``t``) call it.
    """
    out = logits(x)
    if out.ndim != 2 or out.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must have shape ({labels.shape[0]}, C), got {tuple(out.shape)}")
    return float((out.argmax(1) == labels.to(out.device)).double().mean())


def frechet_distance_features(fa: Tensor, fb: Tensor) -> float:
    """Frechet distance between Gaussian fits of features ``fa: (N, d)`` and ``fb: (M, d)``.

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})`` (Heusel et al. 2017,
    Eq. 6), in float64 through the symmetric form of the cross term, whose eigenvalues are real
    and non-negative.
    """
    fa, fb = fa.double(), fb.double()
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"features must be (N, d) and (M, d), got {tuple(fa.shape)} and {tuple(fb.shape)}")
    if fa.shape[0] < 2 or fb.shape[0] < 2:
        raise ValueError("the Frechet distance needs at least 2 images in each set")
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    s_a, s_b = torch.cov(fa.T).reshape(fa.shape[1], -1), torch.cov(fb.T).reshape(fb.shape[1], -1)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross)


def mean_se(values: Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean of a 1-D tensor (``nan`` error for one value)."""
    v = values.double()
    n = v.numel()
    se = float(v.std() / math.sqrt(n)) if n > 1 else float("nan")
    return float(v.mean()), se
