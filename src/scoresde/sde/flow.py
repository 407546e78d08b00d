"""The straight (rectified-flow / conditional optimal-transport) path as a linear SDE.

Flow matching (Lipman et al. 2023) and rectified flow (Liu et al. 2023) interpolate
``x_t = (1 - t) x_0 + t n``.  That is the marginal of the linear SDE with
``f(t) = -1/(1 - t)`` and ``g(t)^2 = 2t / (1 - t)``, whose probability-flow ODE is exactly
the flow-matching ODE ``dx/dt = E[n - x_0 | x_t]``.  Flow matching is therefore the
zero-diffusion special case of this library: the same networks, losses and ODE samplers apply.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["StraightSDE"]


class StraightSDE(SDE):
    """``s(t) = 1 - t``, ``sigma(t) = t``: the flow-matching / rectified-flow path.

    ``s(1) = 0`` makes ``lambda(1) = -inf``; the default ``T = 0.999`` keeps every
    log-SNR solver finite (the prior ``N(0, 0.999^2 I)`` then misses the true marginal by a
    ``1e-3`` fraction of the data, less than the VP SDE's ``exp(-B(1)/2) ~ 7e-3``).  Pass
    ``T=1.0`` for the textbook path when only Euler / Heun in ``t`` are used.
    """

    def __init__(self, T: float = 0.999, eps: float = 1e-3) -> None:
        if T > 1.0:
            raise ValueError(f"the straight path needs T <= 1, got {T}")
        super().__init__(T=T, eps=eps)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t)
        return 1.0 - t, t.clone()

    def drift_coef(self, t: Tensor) -> Tensor:
        return -1.0 / (1.0 - torch.as_tensor(t))

    def diffusion(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return torch.sqrt(2 * t / (1 - t))

    def marginal_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t)
        return -torch.ones_like(t), torch.ones_like(t)

    def prior_std(self) -> float:
        return self.T

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-torch.as_tensor(lam))
