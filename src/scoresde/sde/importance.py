"""Importance sampling of diffusion time for likelihood-weighted objectives (Song et al. 2021c, Sec. 5).

The proposal ``p(t) ∝ g(t)^2 / sigma(t)^2`` is a function of the SDE alone, so it lives with
the SDEs: the likelihood-weighted DSM loss (:mod:`scoresde.train.losses`) and the likelihood
bound (:mod:`scoresde.flow.bound`) both draw from it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["importance_time", "importance_weight", "sample_time_importance"]


def importance_time(sde: SDE, u: Tensor) -> Tensor:
    """Map uniform ``u in [0, 1)`` to ``t ~ p(t) ∝ g(t)^2 / sigma(t)^2`` on ``[eps, T]``.

    For every linear SDE, ``g^2 / sigma^2 = d/dt log(sigma^2 / s^2) = -2 d lambda / dt`` (use
    ``g^2 = d sigma^2/dt - 2 f sigma^2`` and ``f = d log s / dt``), so the proposal's CDF is
    ``(lambda(eps) - lambda(t)) / (lambda(eps) - lambda(T))`` and inverse-CDF sampling is
    ``t = t_of_lambda(lambda(eps) - u (lambda(eps) - lambda(T)))``: exact, no quadrature.
    This is the variance-reduction proposal of Song et al. 2021c (Sec. 5) for any SDE.
    """
    lam_eps = sde.lambda_t(torch.tensor(sde.eps, dtype=torch.float64))
    lam_T = sde.lambda_t(torch.tensor(sde.T, dtype=torch.float64))
    lam = lam_eps - u.double().cpu() * (lam_eps - lam_T)
    t = sde.t_of_lambda(lam).clamp(sde.eps, sde.T)
    return t.to(device=u.device, dtype=u.dtype if u.is_floating_point() else torch.float32)


def importance_weight(sde: SDE, t: Tensor) -> Tensor:
    """``Z / (T - eps)`` with ``Z = 2 (lambda(eps) - lambda(T))`` the proposal's normaliser.

    Multiplying ``g^2/sigma^2``-weighted terms drawn at ``t ~ p(t)`` by ``(sigma^2/g^2) Z/(T - eps)``
    gives unbiased estimates of their ``t ~ U(eps, T)`` averages.
    """
    lam_eps = float(sde.lambda_t(torch.tensor(sde.eps, dtype=torch.float64)))
    lam_T = float(sde.lambda_t(torch.tensor(sde.T, dtype=torch.float64)))
    z = 2.0 * (lam_eps - lam_T)
    return torch.full_like(t, z / (sde.T - sde.eps))


def sample_time_importance(
    sde: SDE, n: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> Tensor:
    """``t ~ p(t) ∝ g(t)^2 / sigma(t)^2`` on ``[eps, T]``, shape ``(n,)`` (see :func:`importance_time`)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return importance_time(sde, u).to(device=device, dtype=dtype)
