"""DEIS and iPNDM (Zhang & Chen 2023): multistep exponential integrators in ``sigma_hat``.

With ``y = x / s`` and ``sigma_hat = sigma / s = e^{-lambda}`` the probability-flow ODE of every
linear SDE is ``dy / dsigma_hat = eps(x, t)`` (Zhang & Chen 2023, Eq. 11 after their change of
variables; Lu et al. 2022, Eq. 3.4), so

    y_{i+1} = y_i + int_{sigma_hat_i}^{sigma_hat_{i+1}} eps(x_tau, tau) dsigma_hat(tau),

and a multistep method replaces ``eps`` by a polynomial through its last ``k`` evaluations:

- **DEIS-tAB** (their Eq. 14-15): a Lagrange polynomial in *time* ``t``; its weights
  ``C_ij = int L_j(tau) dsigma_hat(tau)`` are computed once per grid by Gauss-Legendre
  quadrature in ``lambda`` (where the integrand ``L_j(t(lambda)) e^{-lambda}`` is smooth);
- **DEIS-rhoAB**: the same polynomial in ``rho = sigma_hat`` (variable-step Adams-Bashforth);
- **iPNDM** (their App. B, "improved PNDM"): the classical fixed-step Adams-Bashforth weights
  ``(1), (3, -1)/2, (23, -16, 5)/12, (55, -59, 37, -9)/24`` applied to the steps in
  ``sigma_hat``, with lower order during warm-up.  On a grid whose steps in ``sigma_hat`` are not
  equal, fixed weights are exact only for constant ``eps``' step ratios, so the asymptotic order
  is 2 whatever the nominal order (tests/sampling/test_ode.py fits it); it is kept because at
  very few steps it is often the best of the three.

All weights are float64 Python numbers; each step is a few fused tensor operations, 1 NFE.
A step that ends at ``sigma = 0`` is the DDIM step (``x = s x0``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from scoresde._core.tensors import lincomb, scalar
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import fixed_times
from scoresde.sampling.dpm_solver import multistep_order
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import grid_schedule
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["IPNDM_WEIGHTS", "deis", "ipndm", "lagrange_step_weights"]

IPNDM_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    2: (3.0 / 2.0, -1.0 / 2.0),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    4: (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}
"""Adams-Bashforth weights of ``eps_i, eps_{i-1}, ...`` for equal steps (iPNDM)."""

_QUAD_NODES = 12


@lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def lagrange_step_weights(sde: SDE, lam0: float, lam1: float, nodes: list[float], basis: str) -> list[float]:
    """``C_j = int_{lambda_0}^{lambda_1} L_j(tau(lambda)) (-e^{-lambda}) dlambda`` for each node.

    ``L_j`` is the Lagrange basis polynomial of node ``j`` in the variable ``tau`` (``t`` for
    DEIS-tAB, ``sigma_hat`` for rhoAB), so that ``sum_j C_j eps_j`` is the integral of the
    interpolated ``eps`` against ``dsigma_hat`` over one step (Zhang & Chen 2023, Eq. 15).

    Args:
        sde: the SDE (for ``t(lambda)``).
        lam0, lam1: the step's ends in ``lambda`` (finite).
        nodes: the interpolation nodes ``tau_j`` (distinct).
        basis: ``"t"`` or ``"sigma_hat"``.
    """
    z, w = _gauss_legendre(_QUAD_NODES)
    half = 0.5 * (lam1 - lam0)
    lam = torch.tensor(lam0 + half * (z + 1.0), dtype=torch.float64)
    if basis == "t":
        tau = sde.t_of_lambda(lam)
    elif basis == "sigma_hat":
        tau = torch.exp(-lam)
    else:
        raise ValueError(f"basis must be 't' or 'sigma_hat', got {basis!r}")
    dsig = -torch.exp(-lam) * torch.tensor(w * half, dtype=torch.float64)
    out = []
    for j, tj in enumerate(nodes):
        lj = torch.ones_like(tau)
        for m, tm in enumerate(nodes):
            if m != j:
                lj = lj * (tau - tm) / (tj - tm)
        out.append(float((lj * dsig).sum()))
    return out


def _step_quadrature(sde: SDE, lam: list[float], basis: str) -> tuple[np.ndarray, np.ndarray]:
    """The quadrature of :func:`lagrange_step_weights` for every step of a grid at once: ``tau`` at
    the Gauss-Legendre nodes of each step in ``lambda`` and the weights of ``dsigma_hat`` there,
    both ``(N, Q)``, with one call of ``t_of_lambda`` (rows of steps that end at ``sigma = 0``
    are unused)."""
    z, w = _gauss_legendre(_QUAD_NODES)
    lam0, lam1 = np.asarray(lam[:-1]), np.asarray(lam[1:])
    half = 0.5 * (np.where(np.isfinite(lam1), lam1, lam0) - lam0)
    nodes = lam0[:, None] + half[:, None] * (z[None, :] + 1.0)
    tau = sde.t_of_lambda(torch.from_numpy(nodes)).numpy() if basis == "t" else np.exp(-nodes)
    return tau, -np.exp(-nodes) * (w[None, :] * half[:, None])


def _lagrange_weights(tau: np.ndarray, dsig: np.ndarray, nodes: list[float]) -> list[float]:
    """:func:`lagrange_step_weights` from one step's row of :func:`_step_quadrature`."""
    out = []
    for j, tj in enumerate(nodes):
        lj = np.ones_like(tau)
        for m, tm in enumerate(nodes):
            if m != j:
                lj = lj * (tau - tm) / (tj - tm)
        out.append(float((lj * dsig).sum()))
    return out


@lru_cache(maxsize=16)
def _deis_weights(
    sde: SDE, lam: tuple[float, ...], taus: tuple[float, ...], basis: str, order: int, lower_order_final: bool
) -> tuple[tuple[tuple[float, ...] | None, tuple[float, ...] | None], ...]:
    """The weights of every DEIS step on a grid (half log-SNR ``lam``, nodes ``taus``), once per
    grid: ``(c, c_corrected)`` per step, ``c`` of the last ``k`` evaluations (``None`` for a step
    to ``sigma = 0``, the DDIM step) and ``c_corrected`` of a warm-up step re-solved with the
    evaluation at its end included (Adams-Moulton of order ``k + 1``, as UniPC's corrector, at no
    extra NFE: a plain low-order warm-up step would cap the global order at ``k + 1``), else
    ``None``.  Memoised: a run of the same grid reuses them."""
    steps = len(lam) - 1
    tau_q, dsig_q = _step_quadrature(sde, list(lam), basis)  # every step's nodes at once
    table: list[tuple[tuple[float, ...] | None, tuple[float, ...] | None]] = []
    for i in range(steps):
        h = lam[i + 1] - lam[i]
        if not math.isfinite(h):
            table.append((None, None))
            continue
        k = multistep_order(i, steps, order, h, lower_order_final)
        c = _lagrange_weights(tau_q[i], dsig_q[i], [taus[i - j] for j in range(k)])
        corrected = None
        if i + 1 < steps and k < order and i + 1 < order:
            nodes = [taus[i + 1], *(taus[i - j] for j in range(k))]
            corrected = tuple(_lagrange_weights(tau_q[i], dsig_q[i], nodes))
        table.append((tuple(c), corrected))
    return tuple(table)


def _check_order(name: str, order: object, highest: int) -> None:
    if isinstance(order, bool) or order not in range(1, highest + 1):
        raise ValueError(f"{name} order must be an integer in 1..{highest}, got {order!r}")


def ipndm(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    order: int = 4,
) -> Tensor:
    """iPNDM (Zhang & Chen 2023, App. B): fixed-weight Adams-Bashforth on ``dy/dsigma_hat = eps``.

    ``y_{i+1} = y_i + (sigma_hat_{i+1} - sigma_hat_i) sum_j b_j eps_{i-j}`` with ``b`` from
    :data:`IPNDM_WEIGHTS` at order ``min(order, i + 1)`` (no Runge-Kutta warm-up: the "improved"
    of iPNDM).  1 NFE per step.

    Args:
        order: the highest order used, 1-4 (default 4, as in the paper).
    """
    _check_order("ipndm", order, 4)
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    s = [scalar(v, x.dtype) for v in sch.s]  # memoised 0-d tensors
    weights = _ipndm_weights(tuple(sch.sigma_hat), order)
    eps_hist: list[Tensor] = []
    y_i = x / s[0]
    for i in range(sch.steps):
        eps = at.eps(x, i)
        eps_hist = [eps, *eps_hist[: order - 1]]
        y_i = lincomb(1.0, y_i, *zip(weights[i], eps_hist))
        x = y_i * s[i + 1]
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


@lru_cache(maxsize=64)
def _ipndm_weights(sigma_hat: tuple[float, ...], order: int) -> tuple[tuple[float, ...], ...]:
    """The weights ``(sigma_hat_{i+1} - sigma_hat_i) b_j`` of every iPNDM step on a grid
    (order ``min(order, i + 1)``), once per grid."""
    return tuple(
        tuple((sigma_hat[i + 1] - sigma_hat[i]) * b for b in IPNDM_WEIGHTS[min(order, i + 1)])
        for i in range(len(sigma_hat) - 1)
    )


def deis(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    order: int = 3,
    basis: str = "t",
    lower_order_final: bool = True,
) -> Tensor:
    """DEIS-tAB (Zhang & Chen 2023, Eq. 14-15; Alg. 1 with the exponential integrator).

    ``eps`` is extrapolated by the Lagrange polynomial through its last ``k`` evaluations in
    time ``t`` (``basis="t"``, tAB) or in ``sigma_hat`` (``basis="sigma_hat"``, rhoAB) and
    integrated exactly against ``dsigma_hat``: ``y_{i+1} = y_i + sum_j C_ij eps_{i-j}`` with the
    weights of :func:`lagrange_step_weights`.  Warm-up steps use order ``i + 1``; see
    :func:`~scoresde.sampling.dpm_solver.multistep_order` for ``lower_order_final``.  1 NFE per
    step.  Order ``order`` (tests/sampling/test_ode.py fits it).

    Args:
        order: the number of past evaluations used, 1-4 (default 3, the paper's tAB3).
        basis: the interpolation variable, ``"t"`` or ``"sigma_hat"``.
        lower_order_final: lower the order over the last steps of short grids.
    """
    _check_order("deis", order, 4)
    if basis not in ("t", "sigma_hat"):
        raise ValueError(f"deis basis must be 't' or 'sigma_hat', got {basis!r}")
    if not isinstance(lower_order_final, bool):
        raise TypeError(f"lower_order_final must be a bool, got {lower_order_final!r}")
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    s = [scalar(v, x.dtype) for v in sch.s]  # memoised 0-d tensors
    taus = sch.t if basis == "t" else sch.sigma_hat
    weights = _deis_weights(sde, tuple(sch.lam), tuple(taus), basis, order, lower_order_final)
    eps_hist: list[Tensor] = []  # eps at t_i, t_{i-1}, ...
    y_i = x / s[0]
    eps = at.eps(x, 0)
    steps = sch.steps
    for i in range(steps):
        eps_hist = [eps, *eps_hist[: order - 1]]
        c, c_corrected = weights[i]
        if c is None:
            # The step to sigma = 0: x = s x0 (DDIM), x0 from the evaluation at t_i.
            ratio = sch.s[i + 1] / sch.s[i]
            x = lincomb(ratio, x, (-ratio * sch.sigma[i], eps))
        else:
            y_next = lincomb(1.0, y_i, *zip(c, eps_hist))
            x = y_next * s[i + 1]
            if i + 1 < steps:
                eps = at.eps(x, i + 1)
                if c_corrected is not None:
                    # Corrected warm-up: re-solve the step with the evaluation at its end included.
                    y_next = lincomb(1.0, y_i, *zip(c_corrected, [eps, *eps_hist[: len(c)]]))
                    x = y_next * s[i + 1]
            y_i = y_next
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x
