"""Particle bookkeeping shared by the SMC posterior samplers: ESS, systematic resampling.

Each of ``B`` measurements has its own ``K`` weighted particles; log-weights are ``(B, K)`` and
particles are stored flat, ``(B K, *D)``, measurement-major.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sampling.noise import NoiseSource

__all__ = ["effective_sample_size", "resample_low_ess", "systematic_resample", "uniform_per_row"]


def effective_sample_size(log_w: Tensor) -> Tensor:
    """``(sum w)^2 / sum w^2`` per row of ``log_w: (B, K)`` (Kong et al. 1994)."""
    return torch.exp(2 * torch.logsumexp(log_w, 1) - torch.logsumexp(2 * log_w, 1))


def systematic_resample(log_w: Tensor, u: Tensor) -> Tensor:
    """Systematic resampling (Kitagawa 1996): indices ``(B, K)`` with one uniform ``u: (B,)`` per row.

    Particle ``k`` is copied ``floor`` or ``ceil`` of ``K w_k`` times, the lowest variance of the
    standard schemes.
    """
    k = log_w.shape[1]
    w = torch.softmax(log_w.double(), 1)
    cdf = torch.cumsum(w, 1)
    cdf[:, -1] = 1.0
    pos = (u.double()[:, None] + torch.arange(k, dtype=torch.float64, device=log_w.device)) / k
    return torch.searchsorted(cdf, pos).clamp_max(k - 1)


def uniform_per_row(noise: NoiseSource, b: int, like: Tensor) -> Tensor:
    """One U(0, 1) per measurement from the noise source (so per-sample seeds stay per-sample)."""
    z = noise(torch.empty(b, 1, dtype=torch.float64, device=like.device)).reshape(b)
    return torch.special.ndtr(z).clamp(1e-12, 1 - 1e-12)


def resample_low_ess(
    log_w: Tensor, threshold: float, u: Tensor
) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
    """Systematic resampling of the rows whose ESS is below ``threshold * K``.

    Args:
        log_w: log-weights ``(B, K)``.
        threshold: the ESS fraction that triggers resampling.
        u: one uniform per row ``(B,)`` (drawn whether or not a row resamples).

    Returns:
        ``(flat, do_res, log_w, log_mean_w)``: ``flat`` indexes the flat particles ``(B K,)``
        (``None`` when no row resamples), ``do_res: (B,)`` which rows did, the new log-weights
        (zero on resampled rows), and each resampled row's log mean weight (0 elsewhere), the
        factor the evidence estimate collects there.
    """
    b, k = log_w.shape
    do_res = effective_sample_size(log_w) < float(threshold) * k
    zero = torch.zeros(b, dtype=log_w.dtype, device=log_w.device)
    if not bool(do_res.any()):
        return None, do_res, log_w, zero
    idx = systematic_resample(log_w, u)
    idx = torch.where(do_res[:, None], idx, torch.arange(k, device=log_w.device).expand(b, k))
    flat = (idx + k * torch.arange(b, device=log_w.device)[:, None]).reshape(-1)
    log_mean = torch.where(do_res, torch.logsumexp(log_w, 1) - math.log(k), zero)
    return flat, do_res, torch.where(do_res[:, None], torch.zeros_like(log_w), log_w), log_mean
