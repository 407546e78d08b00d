"""FID, KID and the Inception Score from network features and logits.

- FID (Heusel et al. 2017, Eq. 6): the Frechet distance between Gaussians fitted to two feature
  sets, ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``, here from the statistics
  ``(mu, S)`` through scipy's matrix square root, the computation of the reference
  implementation (TTUR).  The library's other Frechet distance,
  :func:`scoresde.evaluation.metrics.frechet_distance_features`, uses the symmetric eigenvalue form; both
  agree on the same features (tested).
- KID (Binkowski et al. 2018, "Demystifying MMD GANs", Sec. 3): the unbiased squared MMD with
  the cubic polynomial kernel ``k(a, b) = (a.b / d + 1)^3``, averaged over random subsets
  (mean and standard deviation reported, as torch-fidelity does).
- IS (Salimans et al. 2016, Sec. 4): ``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` parts
  cut at ``i * N // splits`` (as the original code and torch-fidelity), from softmax class
  probabilities.  The reference code takes the logits ``pool3 . W`` of the
  1008-way head *without* its bias; :func:`inception_logits` does the same by default.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FeatureStats",
    "compute_features",
    "feature_stats",
    "fid_from_features",
    "fid_from_stats",
    "inception_logits",
    "inception_score",
    "kernel_inception_distance",
]


@dataclass
class FeatureStats:
    """Mean ``(d,)`` and covariance ``(d, d)`` (float64) of ``n`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_stats(features: Tensor | np.ndarray) -> FeatureStats:
    """Gaussian fit of features ``(N, d)``: mean and unbiased covariance (``N - 1``)."""
    f = np.asarray(features.detach().cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, d) with N >= 2, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    return FeatureStats(mu=f.mean(0), sigma=np.cov(f, rowvar=False), n=f.shape[0])


def fid_from_stats(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """The Frechet distance of two Gaussian fits (Heusel et al. 2017, Eq. 6).

    ``tr((S_a S_b)^{1/2})`` through ``scipy.linalg.sqrtm``; if the product is singular enough
    for the square root to fail, ``eps I`` is added to both covariances (as TTUR does).
    """
    from scipy import linalg

    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    diff = a.mu - b.mu
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular products: handled below, as TTUR does
        covmean = linalg.sqrtm(a.sigma @ b.sigma)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(a.sigma.shape[0]) * eps
        covmean = linalg.sqrtm((a.sigma + offset) @ (b.sigma + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives tiny imaginary parts; large ones mean the covariances are broken.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, np.abs(covmean).max())):
            raise ValueError(
                f"imaginary component {np.abs(covmean.imag).max():.3g} in the matrix square root"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * np.trace(covmean))


def fid_from_features(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """FID between feature sets ``a: (N, d)`` and ``b: (M, d)`` (see :func:`fid_from_stats`)."""
    return fid_from_stats(feature_stats(a), feature_stats(b))


def kernel_inception_distance(
    a: Tensor,
    b: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3`` over random subsets (Binkowski et al. 2018).

    Each of ``subsets`` rounds draws ``m = min(subset_size, N, M)`` rows of each set without
    replacement and computes ``(sum_{i!=j} k(a_i, a_j) + sum_{i!=j} k(b_i, b_j)) / (m (m - 1))
    - 2 sum_{i,j} k(a_i, b_j) / m^2``.

    Returns:
        ``(mean, std)`` over the subsets.
    """
    fa, fb = a.detach().double().cpu(), b.detach().double().cpu()
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"KID needs features (N, d) and (M, d), got {tuple(fa.shape)} and {tuple(fb.shape)}")
    m = min(subset_size, fa.shape[0], fb.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors in each set")
    d = fa.shape[1]
    values = []
    for _ in range(subsets):
        x = fa[torch.randperm(fa.shape[0], generator=generator)[:m]]
        y = fb[torch.randperm(fb.shape[0], generator=generator)[:m]]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(off - 2 * kxy.mean()))
    v = np.array(values)
    return float(v.mean()), float(v.std())


def inception_logits(features: Tensor, fc: torch.nn.Linear, bias: bool = False) -> Tensor:
    """Class logits from pool features; ``bias=False`` as the reference IS code (``pool3 . W``)."""
    out = features @ fc.weight.T
    return out + fc.bias if bias else out


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` (Salimans et al. 2016), mean and std over splits.

    The ``N`` rows are cut into ``splits`` consecutive parts at the boundaries ``i * N // splits``
    (``i = 0, ..., splits``), as the original TensorFlow code (``improved-gan``'s
    ``inception_score.py``) and torch-fidelity cut them: when ``N`` is not divisible by
    ``splits`` the longer parts are spread out rather than all at the front.  Each part gets its
    own marginal ``p(y)`` (the part's mean of ``p(y|x)``) and its own score; the standard
    deviation is the population one (``ddof = 0``, ``np.std``), as in the references.

    Args:
        logits: ``(N, K)`` class logits; softmax gives ``p(y|x)``.
        splits: the number of parts scored separately (``1 <= splits <= N``).

    Returns:
        ``(mean, std)`` of the per-part scores.
    """
    if logits.ndim != 2 or splits < 1 or logits.shape[0] < splits:
        raise ValueError(f"need (N, K) logits with N >= splits = {splits} >= 1, got {tuple(logits.shape)}")
    n = logits.shape[0]
    logp = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):
        part = logp[i * n // splits : (i + 1) * n // splits]
        p = part.exp()
        log_py = torch.logsumexp(part, dim=0) - np.log(part.shape[0])  # log of the part's marginal p(y)
        kl = (p * (part - log_py)).sum(1).mean()
        scores.append(float(kl.exp()))
    s = np.array(scores)
    return float(s.mean()), float(s.std())


@torch.no_grad()
def compute_features(
    fn: Callable[[Tensor], Tensor],
    images: Tensor,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Apply ``fn`` to ``images`` in batches (on ``device``) and concatenate the results on the CPU."""
    out = []
    for i in range(0, images.shape[0], batch_size):
        xb = images[i : i + batch_size]
        out.append(fn(xb.to(device) if device is not None else xb).float().cpu())
    return torch.cat(out)
