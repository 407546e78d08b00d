"""Predictors of the reverse-time SDE (Song et al. 2021, Sec. 4.2 and App. E-F)."""

from __future__ import annotations

from torch import Tensor

from scoresde._utils import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["euler_maruyama"]


def euler_maruyama(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6; App. E).

    ``x_{i+1} = x_i + [f x_i - g^2 score(x_i, t_i)] (t_{i+1} - t_i) + g(t_i) sqrt(t_i - t_{i+1}) z``.
    Weak order 1.
    """
    reverse = sde.reverse(model.score_fn(y))
    for i in range(len(ts) - 1):
        t = ts[i].to(x.dtype).expand(x.shape[0])
        dt = (ts[i + 1] - ts[i]).to(x.dtype)
        drift, g = reverse.discretize(x, t, dt)
        # Euler-Maruyama step.
        x = x + drift + append_dims(g, x.ndim) * noise(x)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x
