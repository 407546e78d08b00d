"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Alg. 1)."""

from __future__ import annotations

import math

from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import grid_schedule
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["consistency"]


def consistency(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Multistep consistency sampling: jump to the end, re-noise, jump again.

    ``model`` is a consistency function (:class:`scoresde.distill.ConsistencyModel`: its
    ``denoise`` is ``f(x, t) = x_hat_{t_min}``).  At each time ``t_i`` of the grid but the last,
    ``x0 = f(x, t_i)``; then ``x <- s_{i+1} (x0 + sqrt(sigma_hat_{i+1}^2 - sigma_hat_N^2) z)``, the
    exact perturbation from ``t_min = ts[-1]`` to ``t_{i+1}`` (Song et al. 2023, Alg. 1, in the
    variables ``x / s``, ``sigma / s``).  The result is ``s(t_min) x0``.  ``steps`` NFE; use
    ``denoise=False`` (the output is already the trajectory's end).  On a model that is not a
    consistency function it is the "denoise, then re-noise" sampler.
    """
    sch = grid_schedule(sde, ts)
    tx = ts.to(x.dtype)
    sig_end = sch.sigma_hat[-1]
    for i in range(sch.steps):
        # Jump to the end of the trajectory through x_{t_i}.
        x0 = model.denoise(x, tx[i], y)
        if i + 1 < sch.steps:
            # Re-noise to t_{i+1} (the marginal from t_min, exact for Gaussian increments).
            std = math.sqrt(max(sch.sigma_hat[i + 1] ** 2 - sig_end**2, 0.0))
            x = sch.s[i + 1] * (x0 + std * noise(x0))
        else:
            x = sch.s[i + 1] * x0
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x
