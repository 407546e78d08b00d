"""Fixed-step solvers of the probability-flow ODE (Song et al. 2021, Eq. 13)."""

from __future__ import annotations

from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["euler"]


def euler(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Explicit Euler in ``t`` on the probability-flow ODE: ``x_{i+1} = x_i + u(x_i, t_i) dt``.

    ``u = f x - g^2 score / 2`` is the ODE's drift (``model.velocity``).  Order 1.
    """
    for i in range(len(ts) - 1):
        t = ts[i].to(x.dtype).expand(x.shape[0])
        dt = (ts[i + 1] - ts[i]).to(x.dtype)
        # Euler step.
        x = x + model.velocity(x, t, y) * dt
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x
