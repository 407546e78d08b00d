"""A linear Gaussian measurement in the right-singular basis of ``A``, for the SMC samplers.

With the thin SVD ``A = U S V^T`` (rank ``r``), ``y = A x + s_y n`` reads, in the coordinates
``c = V^T x``,

    y_bar = S^{-1} U^T y = c + kappa n',   kappa_j = s_y / S_j,

``r`` independent 1-D problems.  The ancestral kernel ``N(mu, v I)`` of the reverse process is
isotropic, hence independent across these coordinates too, so a Gaussian potential on ``c``
times the kernel is again Gaussian, with a closed-form normaliser (Cardoso et al. 2023, Sec. 3).

The potential of the forward process started from the measurement (a flat prior on ``c_0``),

    g_t(x) = N(c(x); s(t) y_bar, sigma(t)^2 + s(t)^2 kappa^2),

is consistent with the forward transition: ``int N(c; a c', b^2) g_{t'}(c') dc' = g_t(c)`` for
``t > t'`` (``x_t = a x_{t'} + b n``), so a kernel close to the exact backward one keeps weights
that use it flat.  Both samplers end on it at the last grid time ``eps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.guidance.operators import LinearOperator, MatrixOperator
from scoresde.sampling.noise import NoiseSource
from scoresde.sde.base import SDE

__all__ = [
    "SVDCoordinates",
    "finish_on_measurement",
    "forward_potential",
    "gaussian_move",
    "log_normal",
    "svd_coordinates",
]


@dataclass
class SVDCoordinates:
    """The measurement in the right-singular basis of ``A`` (float64).

    Attributes:
        vh: ``V_r^T``, ``(r, D)``: row ``j`` maps ``x`` to observed coordinate ``c_j``.
        singular: the singular values ``S`` ``(r,)``.
        y_bar: ``S^{-1} U_r^T y`` per measurement ``(B, r)``.
        kappa2: the observed coordinates' noise variances ``s_y^2 / S^2`` ``(r,)``.
        log_const: per measurement ``(B,)``, ``log N(y; A x, s_y^2 I) - sum_j log N(y_bar_j; c_j,
            kappa_j^2)`` (independent of ``x``): turns an evidence in ``y_bar`` into ``p(y)``.
    """

    vh: Tensor
    singular: Tensor
    y_bar: Tensor
    kappa2: Tensor
    log_const: Tensor

    def coord(self, x: Tensor) -> Tensor:
        """``c = V_r^T x``: ``(N, *D) -> (N, r)`` in float64."""
        return x.reshape(x.shape[0], -1).double() @ self.vh.T

    def moved(self, x: Tensor, dc: Tensor) -> Tensor:
        """``x + V_r dc``: change the observed coordinates of ``x`` by ``dc: (N, r)``."""
        return x + (dc @ self.vh).to(x.dtype).reshape(x.shape)

    def repeat(self, k: int) -> Tensor:
        """``y_bar`` repeated for ``k`` particles per measurement ``(B K, r)``."""
        return self.y_bar.repeat_interleave(k, 0)


def svd_coordinates(
    operator: LinearOperator, y_obs: Tensor, noise_std: float, rcond: float = 1e-10
) -> SVDCoordinates:
    """The thin SVD of ``A`` (stored for a :class:`MatrixOperator`, else from the dense matrix)
    and the observation ``y_obs: (B, *out_shape)`` in its basis.

    Components of ``y`` outside the range of ``A`` carry no information on ``x``; with
    ``noise_std > 0`` they enter the evidence only, with ``noise_std = 0`` they are ignored (the
    samplers then condition on the projection of ``y`` onto the range).
    """
    if isinstance(operator, MatrixOperator):
        u, s, vh = operator._u, operator._s, operator._vh
    else:
        u, s, vh = torch.linalg.svd(operator.to_matrix(torch.float64), full_matrices=False)
        keep = s > rcond * s.max().clamp_min(1e-300)
        u, s, vh = u[:, keep], s[keep], vh[keep]
    dev = y_obs.device
    u, s, vh = u.to(dev), s.to(dev), vh.to(dev)
    y = y_obs.reshape(y_obs.shape[0], -1).double()
    uty = y @ u
    s_y2 = float(noise_std) ** 2
    log_const = -s.log().sum().expand(y.shape[0]).clone()
    m, r = y.shape[1], s.shape[0]
    if s_y2 > 0 and m > r:
        perp = (y.pow(2).sum(1) - uty.pow(2).sum(1)).clamp_min(0.0)
        log_const = log_const - 0.5 * perp / s_y2 - 0.5 * (m - r) * math.log(2 * math.pi * s_y2)
    return SVDCoordinates(vh=vh, singular=s, y_bar=uty / s, kappa2=s_y2 / s.pow(2), log_const=log_const)


def log_normal(c: Tensor, mean: Tensor, var: Tensor | float) -> Tensor:
    """``sum_j log N(c_j; mean_j, var_j)`` over the last dimension."""
    var = torch.as_tensor(var, dtype=c.dtype, device=c.device)
    return -0.5 * ((c - mean).pow(2) / var + torch.log(2 * math.pi * var)).sum(-1)


def forward_potential(sde: SDE, t: Tensor, y_bar: Tensor, kappa2: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``s(t) y_bar`` and variance ``sigma(t)^2 + s(t)^2 kappa^2`` of the potential ``g_t``."""
    s, sigma = (float(c) for c in sde.marginal(t.double().cpu()))
    return s * y_bar, sigma**2 + s**2 * kappa2


def gaussian_move(
    coords: SVDCoordinates,
    mu: Tensor,
    v: float,
    mean: Tensor,
    var: Tensor,
    noise: NoiseSource,
) -> tuple[Tensor, Tensor]:
    """Draw from ``N(x; mu, v I) N(c(x); mean, var)`` (normalised) with one noise draw.

    The unobserved coordinates follow the kernel; the observed ones, its product with the
    potential, ``N((var c(mu) + v mean) / (v + var), v var / (v + var))``.  The normaliser,
    ``log N(c(mu); mean, v + var)``, is the fully adapted weight (:func:`log_normal`).

    Returns:
        ``(x, c(x))``: the draw ``(N, *D)`` and its observed coordinates ``(N, r)``.
    """
    m = coords.coord(mu)
    x = mu + math.sqrt(v) * noise(mu)
    c = coords.coord(x)
    c_new = (var * m + v * mean) / (v + var) + torch.sqrt(var / (v + var)) * (c - m)
    return coords.moved(x, c_new - c), c_new


def finish_on_measurement(
    coords: SVDCoordinates, x: Tensor, c: Tensor, y_bar: Tensor, mean: Tensor, var: Tensor
) -> tuple[Tensor, Tensor]:
    """From the last target ``p_chain(x) g_eps(x)`` to the measurement's own likelihood.

    With noise (``kappa > 0``) the log-weight correction ``log N(y_bar; c, kappa^2) - log
    g_eps(x)`` makes the weighted particles target ``p_chain(x) N(y; A x, s_y^2 I)`` exactly.
    Noise-free, the observed coordinates are set to ``y_bar`` (a move of order ``sigma(eps)``),
    so ``A x = y`` holds for every particle; the particles then target ``p_chain`` conditioned
    on ``A x = y`` up to that smoothing at scale ``sigma(eps)``.

    Args:
        coords: the measurement; x: particles ``(N, *D)``; c: their coordinates ``(N, r)``;
        y_bar: ``(N, r)``; mean, var: the potential ``g_eps``.

    Returns:
        ``(x, log-weight correction (N,))``.
    """
    if bool((coords.kappa2 > 0).all()):
        return x, log_normal(c, y_bar, coords.kappa2) - log_normal(c, mean, var)
    return coords.moved(x, y_bar - c), torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
