"""Time discretisations for samplers, from ``t_start`` (usually ``T``) down to ``t_end``.

- ``uniform``: equal steps in ``t`` (Song et al. 2021);
- ``logsnr``: equal steps in ``lambda(t) = log(s/sigma)`` (Lu et al. 2022, DPM-Solver);
- ``edm``: ``sigma_hat_i = (sigma_max^(1/rho) + i/N (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
  with ``rho = 7`` (Karras et al. 2022, Eq. 5), mapped back to ``t``;
- ``quadratic``: equal steps in ``sqrt(t)`` (time-quadratic; Song et al. 2021b, DDIM).
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sde.base import SDE

GRIDS = ("uniform", "logsnr", "edm", "quadratic")

__all__ = ["GRIDS", "check_grid", "default_grid", "time_grid"]


def default_grid(sde: SDE) -> str:
    """The grid a sampler should take when the user names none: the SDE's ``default_grid``
    (``edm`` under EDM's ``sigma(t) = t``, whose uniform grid leaves Euler-Maruyama's last
    step from ``sigma ~ T / steps`` to ``eps``; ``uniform``, the paper's, otherwise)."""
    return sde.default_grid


def time_grid(
    sde: SDE,
    steps: int,
    kind: str = "uniform",
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Decreasing times ``(steps + 1,)`` from ``t_start`` to ``t_end`` (defaults ``T`` and ``eps``)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    t0 = sde.T if t_start is None else float(t_start)
    t1 = sde.eps if t_end is None else float(t_end)
    if not (0 <= t1 < t0 <= sde.T + 1e-12):
        raise ValueError(f"need 0 <= t_end < t_start <= T={sde.T}, got t_start={t0}, t_end={t1}")
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    ends = torch.tensor([t0, t1], dtype=torch.float64)
    if kind == "uniform":
        ts = t0 + u * (t1 - t0)
    elif kind == "quadratic":
        ts = (t0**0.5 + u * (t1**0.5 - t0**0.5)) ** 2
    elif kind == "logsnr":
        lam = sde.lambda_t(ends)
        _require_finite(lam, kind)
        ts = sde.t_of_lambda(lam[0] + u * (lam[1] - lam[0]))
    elif kind == "edm":
        sig = sde.sigma_hat(ends)
        _require_finite(sig, kind)
        if float(sig[1]) <= 0:
            raise ValueError("the edm grid needs sigma_hat(t_end) > 0: raise t_end")
        inv = 1.0 / rho
        sig_i = (sig[0] ** inv + u * (sig[1] ** inv - sig[0] ** inv)) ** rho
        ts = sde.t_of_lambda(-torch.log(sig_i))
    else:
        raise ValueError(f"unknown grid {kind!r}; choose one of {list(GRIDS)} or pass a tensor of times")
    ts[0], ts[-1] = t0, t1  # remove round-off of the inverse maps at the ends
    return ts.to(dtype)


def _require_finite(v: Tensor, kind: str) -> None:
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"the {kind} grid needs finite log-SNR at both ends; got {v.tolist()}")


def check_grid(ts: Tensor, sde: SDE) -> Tensor:
    """Validate a user grid: 1-D, at least 2 finite times in ``[0, T]``, strictly decreasing."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"a time grid must be 1-D with at least 2 times, got shape {tuple(ts.shape)}")
    sde.check_t(ts, "grid")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("a time grid must be strictly decreasing (from T towards 0)")
    return ts
