"""Grid coefficients for the probability-flow ODE solvers, computed once per call in float64.

Every fixed-step ODE solver in :mod:`scoresde.sampling` works from the marginal of the SDE,
``x_t = s(t) x_0 + sigma(t) n``, and its half log-SNR ``lambda(t) = log(s / sigma)`` only
(``sde.marginal``, ``sde.lambda_t``, ``sde.t_of_lambda``): no solver asks which SDE it was
given.  The coefficients are Python floats, so each step costs a few fused tensor operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = ["GridSchedule", "grid_schedule", "intermediate_times", "phi"]


@dataclass(frozen=True)
class GridSchedule:
    """Marginal coefficients on a time grid ``(N + 1,)``, as float64 Python floats.

    Attributes:
        t: the times.
        s: ``s(t)``.
        sigma: ``sigma(t)`` (may be 0 at the last time).
        lam: ``lambda(t) = log(s / sigma)``; ``+inf`` where ``sigma = 0``.
        sigma_hat: ``sigma / s``.
    """

    t: list[float]
    s: list[float]
    sigma: list[float]
    lam: list[float]
    sigma_hat: list[float]

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    def h(self, i: int) -> float:
        """``lambda(t_{i+1}) - lambda(t_i)`` (``inf`` if the step ends at ``sigma = 0``)."""
        return self.lam[i + 1] - self.lam[i]


def grid_schedule(sde: SDE, ts: Tensor) -> GridSchedule:
    """Evaluate ``s, sigma, lambda`` on the grid ``ts`` in float64.

    Memoised per SDE (the last 16 grids, as :meth:`SDE.coefficients_at
    <scoresde.sde.SDE.coefficients_at>` memoises its floats): every run on the same grid shares
    one (read-only) schedule.

    Raises:
        ValueError: if ``sigma`` vanishes anywhere but at the last time.
    """
    t = ts.detach().to("cpu", torch.float64)
    key = tuple(t.tolist())
    cache: dict[tuple[float, ...], GridSchedule] = sde.__dict__.setdefault("_grid_schedules", {})
    hit = cache.get(key)
    if hit is None:
        hit = _grid_schedule(sde, t)
        if len(cache) >= 16:
            cache.clear()
        cache[key] = hit
    return hit


def _grid_schedule(sde: SDE, t: Tensor) -> GridSchedule:
    s, sigma = sde.marginal(t)
    with torch.no_grad():
        lam = sde.lambda_t(t)
    lam = torch.where(sigma > 0, lam, torch.full_like(lam, math.inf))
    if bool((sigma[:-1] <= 0).any()):
        raise ValueError("the ODE solvers need sigma(t) > 0 at every time of the grid but the last")
    return GridSchedule(
        t=t.tolist(),
        s=s.tolist(),
        sigma=sigma.tolist(),
        lam=lam.tolist(),
        sigma_hat=(sigma / s).tolist(),
    )


def intermediate_times(sde: SDE, sched: GridSchedule, r: float) -> GridSchedule:
    """The times ``t(lambda_i + r h_i)`` inside each step, with their coefficients.

    Used by the singlestep DPM-Solvers (Lu et al. 2022, Alg. 1-2: ``s_i = t_lambda(lambda_{t_{i-1}}
    + r_1 h_i)``).  Steps that end at ``sigma = 0`` get ``nan`` (those steps fall back to order 1).
    """
    lam0 = torch.tensor(sched.lam[:-1], dtype=torch.float64)
    lam1 = torch.tensor(sched.lam[1:], dtype=torch.float64)
    finite = torch.isfinite(lam1)
    lam_mid = torch.where(finite, lam0 + r * (lam1 - lam0), lam0)
    t_mid = sde.t_of_lambda(lam_mid)
    s, sigma = sde.marginal(t_mid)
    nan = torch.full_like(t_mid, math.nan)
    pick = lambda v: torch.where(finite, v, nan).tolist()  # noqa: E731
    return GridSchedule(
        t=pick(t_mid), s=pick(s), sigma=pick(sigma), lam=pick(lam_mid), sigma_hat=pick(sigma / s)
    )


@lru_cache(maxsize=8192)
def phi(h: float, j: int) -> float:
    """``psi_j(h) / h^j`` with ``psi_j(h) = int_0^h exp(-(h - v)) v^j / j! dv``.

    The weight of the ``j``-th Taylor term of the data prediction in the exact solution of the
    probability-flow ODE in ``lambda`` (Lu et al. 2022b, Eq. 9-10).  ``phi(h, 0) = 1 - e^{-h}``;
    for small ``h`` the series ``h sum_m (-h)^m / (m + j + 1)!`` avoids cancellation, else the
    recurrence ``psi_j = h^j / j! - psi_{j-1}``.  ``phi(inf, 0) = 1``.  Memoised: the multistep
    solvers ask for the same few values several times per step, and on every run of a grid.
    """
    if h < 0.1:
        return h * sum((-h) ** m / math.factorial(m + j + 1) for m in range(20))
    val = -math.expm1(-h)
    for k in range(1, j + 1):
        val = 1.0 / math.factorial(k) - val / h
    return val
