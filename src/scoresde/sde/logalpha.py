"""Variance-preserving SDEs given by their log signal scale ``log s(t)`` (any noise schedule).

A VP diffusion keeps ``s(t)^2 + sigma(t)^2 = 1``, so one monotone function ``log s(t)`` (DDPM's
``log sqrt(alpha_bar)``) fixes everything: ``sigma = sqrt(1 - s^2)``, ``f = d log s / dt``,
``beta(t) = g(t)^2 = -2 f`` (Song et al. 2021, Eq. 11 with a general ``beta``), the half log-SNR
``lambda = log s - log sigma`` and its inverse ``log s = -softplus(-2 lambda) / 2``.  Tabulated
DDPM schedules (:mod:`scoresde.sde.discrete`) and Nichol & Dhariwal's cosine schedule
(:mod:`scoresde.sde.cosine`) only supply ``log s``, its derivative and its inverse.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["LogAlphaVPSDE"]


class LogAlphaVPSDE(SDE):
    """A VP SDE ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw`` defined through ``log s(t)``.

    Subclasses implement :meth:`log_alpha` (``log s(t)``, decreasing, ``<= 0``), its derivative
    :meth:`dlog_alpha` and its inverse :meth:`t_of_log_alpha`.  The prior is ``N(0, I)``.
    """

    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """``log s(t)``: DDPM's ``log sqrt(alpha_bar)`` (DPM-Solver's ``log alpha_t``)."""

    @abstractmethod
    def dlog_alpha(self, t: Tensor) -> Tensor:
        """``d log s / dt = f(t) = -beta(t) / 2``."""

    @abstractmethod
    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        """Inverse of :meth:`log_alpha`."""

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        la = self.log_alpha(torch.as_tensor(t))
        # sigma^2 = 1 - s^2 = -expm1(2 log s), accurate near t = 0.
        return torch.exp(la), torch.sqrt(-torch.expm1(2 * la))

    def drift_coef(self, t: Tensor) -> Tensor:
        return self.dlog_alpha(torch.as_tensor(t))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.clamp(-2 * self.dlog_alpha(torch.as_tensor(t)), min=0.0))

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = g(t)^2 = -2 d log s / dt``."""
        return -2 * self.dlog_alpha(torch.as_tensor(t))

    def prior_std(self) -> float:
        return 1.0

    def lambda_t(self, t: Tensor) -> Tensor:
        la = self.log_alpha(torch.as_tensor(t))
        return la - 0.5 * torch.log(-torch.expm1(2 * la))

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        # s^2 = sigmoid(2 lambda)  =>  log s = -softplus(-2 lambda) / 2.
        la = -0.5 * torch.nn.functional.softplus(-2 * torch.as_tensor(lam))
        return self.t_of_log_alpha(la)
