"""Particle bookkeeping shared by the SMC posterior samplers: ESS, systematic resampling, and
the problem a filter runs on and the result it returns (:class:`ParticleProblem`,
:class:`FilterResult`).

Each of ``B`` measurements has its own ``K`` weighted particles; log-weights are ``(B, K)`` and
particles are stored flat, ``(B K, *D)``, measurement-major.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.guidance.measurement import SVDCoordinates
from scoresde.models.base import CountingModel
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = [
    "FilterResult",
    "ParticleProblem",
    "effective_sample_size",
    "resample_low_ess",
    "systematic_resample",
    "uniform_per_row",
]


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


@dataclass
class ParticleProblem:
    """What an SMC filter runs on: ``B`` measurements, ``K`` particles each
    (:func:`scoresde.guidance.smc_sample`).

    Attributes:
        model: the prior's score model in a counting wrapper (its ``nfe`` is the run's NFE).
        sde: the forward SDE.
        ts: the decreasing time grid, on the particles' device.
        noise: the noise source (per-sample with a seed).
        coords: the SVD coordinates of the operator and the ``B`` observations
            (:func:`~scoresde.guidance.measurement.svd_coordinates`).
        batch: ``B``; particles: ``K``; item_shape: ``D``.
        resample_threshold: resample when ``ESS < resample_threshold * K``.
        labels: class labels per particle ``(B K,)``, or ``None``.
        callback: ``callback(i, t, particles)`` after each step, particles ``(B K, *D)``.
        progress: as for :func:`scoresde.sample`.
        dtype: of the particles.
    """

    model: CountingModel
    sde: SDE
    ts: Tensor
    noise: NoiseSource
    coords: SVDCoordinates
    batch: int
    particles: int
    item_shape: tuple[int, ...]
    resample_threshold: float
    labels: Tensor | None = None
    callback: Callback | None = None
    progress: bool | str | Progress = False
    dtype: torch.dtype = torch.float32

    def prior_draw(self) -> Tensor:
        """``B K`` draws of the prior ``N(0, prior_std^2 I)``, ``(B K, *D)``."""
        shape = (self.batch * self.particles, *self.item_shape)
        return self.noise(torch.empty(shape, device=self.ts.device, dtype=self.dtype)) * self.sde.prior_std()


@dataclass
class FilterResult:
    """What an SMC filter returns (before the final normalisation and draw of :func:`smc_sample`).

    Attributes:
        x: the particles ``(B K, *D)``.
        log_w: their unnormalised log-weights ``(B, K)``.
        log_z: the log evidence ``(B,)`` without the final normalisation.
        ess: the effective sample size after each step's reweighting ``(steps, B)``.
        resampled: whether each step resampled ``(steps, B)``.
    """

    x: Tensor
    log_w: Tensor
    log_z: Tensor
    ess: Tensor
    resampled: Tensor
