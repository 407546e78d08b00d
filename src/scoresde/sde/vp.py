"""Variance-preserving and sub-VP SDEs with a linear ``beta(t)`` (Song et al. 2021, Eq. 11, Eq. 12)."""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["VPSDE", "SubVPSDE"]


class _LinearBeta(SDE):
    """Shared ``beta(t) = beta_min + t (beta_max - beta_min) / T`` and its integral ``B(t)``."""

    def __init__(self, beta_min: float, beta_max: float, T: float, eps: float) -> None:
        if not (0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        super().__init__(T=T, eps=eps)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def config(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, **super().config()}

    def beta(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return self.beta_min + t * (self.beta_max - self.beta_min) / self.T

    def int_beta(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta(u) du``."""
        t = torch.as_tensor(t)
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min) / self.T

    def t_of_int_beta(self, b: Tensor) -> Tensor:
        """Inverse of :meth:`int_beta`: the positive root of ``d t^2 / 2 + beta_min t = B``."""
        d = (self.beta_max - self.beta_min) / self.T
        return 2 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * b))

    def drift_coef(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)


class VPSDE(_LinearBeta):
    """``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw`` (Song et al. 2021, Eq. 11): DDPM's limit.

    ``s(t) = exp(-B(t)/2)``, ``sigma(t) = sqrt(1 - exp(-B(t)))``; prior ``N(0, I)``.
    """

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3
    ) -> None:
        super().__init__(beta_min, beta_max, T, eps)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        b = self.int_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def prior_std(self) -> float:
        return 1.0

    def lambda_t(self, t: Tensor) -> Tensor:
        # log(s / sigma) = -log(exp(B) - 1) / 2, stable for small and large B.
        b = self.int_beta(t)
        return -0.5 * torch.log(torch.expm1(b))

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        # exp(B) - 1 = exp(-2 lam)  =>  B = log1p(exp(-2 lam)).
        b = torch.nn.functional.softplus(-2 * torch.as_tensor(lam))
        return self.t_of_int_beta(b)


class SubVPSDE(_LinearBeta):
    """``dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2 B(t)))) dw`` (Song et al. 2021, Eq. 12).

    ``s(t) = exp(-B/2)``, ``sigma(t) = 1 - exp(-B)``: the variance is bounded by the VP SDE's
    at every ``t``.  Prior ``N(0, I)``.
    """

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3
    ) -> None:
        super().__init__(beta_min, beta_max, T, eps)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        b = self.int_beta(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def diffusion(self, t: Tensor) -> Tensor:
        b = self.int_beta(t)
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * b))

    def prior_std(self) -> float:
        return 1.0

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        # With a = exp(-B/2): exp(lam) (1 - a^2) = a, a quadratic in a.
        lam = torch.as_tensor(lam)
        e = torch.exp(lam)
        a = 2.0 * e / (1.0 + torch.sqrt(1.0 + 4.0 * e**2))  # = (sqrt(1 + 4 e^2) - 1) / (2 e), stable
        return self.t_of_int_beta(-2.0 * torch.log(a))
