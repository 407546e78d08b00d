"""How training draws the diffusion time ``t`` from the uniform variates of a step.

The trainer draws ``u ~ U(0, 1)`` per example (:mod:`scoresde.train.batches`); an objective maps
them to times.  ``uniform`` is the paper's ``t ~ U(eps, T)`` (Song et al. 2021, Eq. 7).
``lognormal`` is EDM's training distribution (Karras et al. 2022, Sec. 5, Table 1): the noise
level ``sigma_hat(t) = sigma(t) / s(t)`` of the rescaled variable is log-normal,
``ln sigma_hat ~ N(p_mean, p_std^2)`` (defaults -1.2 and 1.2), mapped back to ``t`` through the
SDE's log-SNR: ``t = lambda^{-1}(-ln sigma_hat)``, clipped to ``[eps, T]``.  It spends the steps
on the noise levels where the loss can still be lowered (for VP with the paper's betas, uniform
``t`` puts half of them at ``sigma_hat > 3``, where an epsilon-MSE hardly changes); with it the
objective is a different weighting of the same denoising problem, not an unbiased estimate of the
uniform one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sde.base import SDE

TIME_SAMPLINGS = ("uniform", "lognormal")

__all__ = ["TIME_SAMPLINGS", "lognormal_time", "uniform_time"]


def uniform_time(sde: SDE, u: Tensor) -> Tensor:
    """``t = eps + (T - eps) u``: the paper's uniform times."""
    return sde.eps + (sde.T - sde.eps) * u


def lognormal_time(sde: SDE, u: Tensor, p_mean: float = -1.2, p_std: float = 1.2) -> Tensor:
    """Times whose noise level ``sigma_hat(t)`` is log-normal (Karras et al. 2022, Table 1).

    Args:
        sde: the forward SDE (any: only its half log-SNR ``lambda_t`` and its inverse are used).
        u: uniform variates in ``[0, 1]``, shape ``(B,)``.
        p_mean, p_std: mean and standard deviation of ``ln sigma_hat``.

    Returns:
        ``t`` of ``u``'s dtype and device, in ``[eps, T]``.
    """
    if not (math.isfinite(p_mean) and math.isfinite(p_std) and p_std > 0):
        raise ValueError(f"need a finite p_mean and p_std > 0, got {p_mean}, {p_std}")
    v = u.detach().to(torch.float64).clamp(1e-9, 1.0 - 1e-9)
    log_sigma = p_mean + p_std * math.sqrt(2.0) * torch.erfinv(2.0 * v - 1.0)
    t = sde.t_of_lambda(-log_sigma.cpu()).to(device=u.device, dtype=torch.float64)
    return t.clamp(sde.eps, sde.T).to(u.dtype)
