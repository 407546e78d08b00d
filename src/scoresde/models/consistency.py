"""The consistency-model parameterisation (Song, Dhariwal, Chen & Sutskever 2023, Eq. 5).

``f(x, t) = c_skip(t) x_hat + (1 - c_skip(t)) D_theta(x, t)`` on any denoiser, with the boundary
condition ``f(x, t_min) = x_hat`` exact.  It is a model like any other (loaded from a
``scoresde distill`` checkpoint by :func:`scoresde.io.loaded.load_model`); how it is trained
lives in :mod:`scoresde.distill.consistency`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction

__all__ = ["ConsistencyModel"]


class ConsistencyModel(ScoreFunction):
    """A consistency function ``f(x, t) -> x_hat_{t_min}`` built on any denoiser.

    It is a :class:`~scoresde.models.ScoreFunction` whose native prediction is ``x0`` (the
    trajectory's end, in data units), so the samplers, checkpoints and guards of the library
    take it as they take any model; sample it with ``method="consistency"`` (1-4 steps,
    :func:`scoresde.sampling.consistency.consistency`).

    Args:
        denoiser: the score model whose :meth:`denoise` is ``D_theta`` (typically a copy of
            the teacher; its parameters are the student's).
        sigma_data: the data scale of ``c_skip`` (default: the denoiser's ``sigma_data`` when it
            has one, else 0.5 as in Song et al. 2023).
        t_min: the time the trajectories end at (default ``sde.eps``).
    """

    def __init__(self, denoiser: ScoreFunction, sigma_data: float | None = None, t_min: float | None = None):
        super().__init__(denoiser.sde, "x0")
        self.denoiser = denoiser
        if sigma_data is None:
            sigma_data = float(getattr(denoiser, "sigma_data", 0.5))
        if not (math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be a positive finite number, got {sigma_data}")
        self.sigma_data = float(sigma_data)
        self.t_min = float(self.sde.eps if t_min is None else t_min)
        if not (0.0 <= self.t_min < self.sde.T):
            raise ValueError(f"t_min must lie in [0, T={self.sde.T}), got {self.t_min}")
        self.sigma_hat_min = float(self.sde.sigma_hat(torch.tensor(self.t_min, dtype=torch.float64)))

    def c_skip(self, t: Tensor) -> Tensor:
        """``sigma_data^2 / ((sigma_hat(t) - sigma_hat(t_min))^2 + sigma_data^2)``: 1 at ``t_min``."""
        d = self.sde.sigma_hat(t) - self.sigma_hat_min
        return self.sigma_data**2 / (d**2 + self.sigma_data**2)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        s, _ = self.sde.marginal(t)
        c = append_dims(self.c_skip(t).to(x.dtype), x.ndim)
        x_hat = x / append_dims(s.to(x.dtype), x.ndim)
        return c * x_hat + (1 - c) * self.denoiser.denoise(x, t, y)
