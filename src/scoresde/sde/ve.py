"""Variance-exploding SDEs: the SMLD / NCSN limit (Song et al. 2021, Eq. 9) and EDM's."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["VESDE", "EDMSDE"]


class VESDE(SDE):
    """``dx = sqrt(d[sigma^2(t)]/dt) dw`` with ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``.

    The continuous limit of SMLD's noise scales (Song et al. 2021, Eq. 9).  The marginal is the
    exact one of App. B, Eq. 30: ``x_t = x_0 + sqrt(sigma(t)^2 - sigma(0)^2) n``, so ``s = 1`` and
    ``marginal(t)[1]^2 = sigma_min^2 ((sigma_max/sigma_min)^(2t) - 1)``; it reaches
    ``sigma_max`` at ``T = 1`` to within ``sigma_min^2 / sigma_max^2``.  The prior is
    ``N(0, sigma_max^2 I)``.

    ``kernel="geometric"`` selects the paper's *code* convention instead: the perturbation
    kernel ``N(x_0, sigma(t)^2 I)`` with ``sigma(t) = sigma_min (sigma_max/sigma_min)^t`` itself
    (score_sde_pytorch's ``VESDE.marginal_prob``; the forward SDE started from ``x_0 +
    sigma_min n``), on which the paper's NCSN++ checkpoints and diffusers' ``ScoreSdeVeScheduler``
    were made.  Its drift and diffusion are the same; only ``marginal`` (and so ``lambda``, the
    denoiser and the transitions) differs, and ``sigma(0) = sigma_min > 0``.

    Args:
        kernel: ``"exact"`` (default) or ``"geometric"`` (see above).
    """

    KERNELS = ("exact", "geometric")

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        T: float = 1.0,
        eps: float = 1e-5,
        kernel: str = "exact",
    ) -> None:
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if kernel not in self.KERNELS:
            raise ValueError(f"unknown VE kernel {kernel!r}; choose one of {list(self.KERNELS)}")
        super().__init__(T=T, eps=eps)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.kernel = kernel
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def config(self) -> dict:
        cfg = {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **super().config()}
        if self.kernel != "exact":
            cfg["kernel"] = self.kernel
        return cfg

    def _sigma_geo(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio / self.T)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t)
        if self.kernel == "geometric":
            return torch.ones_like(t), self._sigma_geo(t)
        # sigma_min^2 (r^(2t) - 1) written with expm1 for accuracy near t = 0.
        var = self.sigma_min**2 * torch.expm1(2 * t * self._log_ratio / self.T)
        return torch.ones_like(t), torch.sqrt(var)

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(torch.as_tensor(t))

    def diffusion(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return self._sigma_geo(t) * math.sqrt(2 * self._log_ratio / self.T)

    def prior_std(self) -> float:
        return self.sigma_max

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        sigma = torch.exp(-torch.as_tensor(lam))
        if self.kernel == "geometric":
            return self.T * torch.log(sigma / self.sigma_min) / self._log_ratio
        return self.T * torch.log1p((sigma / self.sigma_min) ** 2) / (2 * self._log_ratio)


class EDMSDE(SDE):
    """Karras et al. 2022 (EDM): ``s(t) = 1``, ``sigma(t) = t``, ``dx = sqrt(2t) dw``.

    Time *is* the noise level, so ``T = sigma_max`` (default 80) and ``eps = sigma_min``
    (default 0.002).  The prior is ``N(0, sigma_max^2 I)``.  Samplers default to the ``edm``
    grid (Karras et al. 2022, Eq. 5): a uniform grid in ``t = sigma`` leaves the last step from
    ``sigma ~ T / steps`` to ``eps``.
    """

    default_grid = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        super().__init__(T=sigma_max, eps=sigma_min)

    def config(self) -> dict:
        return {"sigma_min": self.eps, "sigma_max": self.T}

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t)
        return torch.ones_like(t), t.clone()

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(torch.as_tensor(t))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(2 * torch.as_tensor(t))

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        return torch.exp(-torch.as_tensor(lam))
