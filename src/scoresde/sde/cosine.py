"""The continuous cosine noise schedule of Nichol & Dhariwal 2021 as a VP SDE.

``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos((t + s) / (1 + s) * pi / 2)^2`` and offset
``s = 0.008`` (Nichol & Dhariwal 2021, "Improved DDPM", Eq. 17), read in continuous time.  The
signal scale is ``s(t) = sqrt(alpha_bar(t))``, so ``f(t) = d log s / dt = -pi/2 tan(u) / (1 + s)``
with ``u = (t + s)/(1 + s) pi/2``.  ``alpha_bar(1) = 0`` has no finite log-SNR; the default
``T ~ 0.998`` is where ``beta(t) = -2 f(t)`` reaches 999, as in DPM-Solver's
``NoiseScheduleVP('cosine')`` (its ``cosine_t_max`` for ``cosine_beta_max = 999``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sde.logalpha import LogAlphaVPSDE

__all__ = ["CosineVPSDE"]


def _default_t_max(offset: float, beta_max: float = 999.0) -> float:
    """Time where ``beta(t) = pi tan(u) / (1 + s)`` reaches ``beta_max`` (DPM-Solver's ``cosine_t_max``)."""
    return math.atan(beta_max * (1.0 + offset) / math.pi) * 2.0 * (1.0 + offset) / math.pi - offset


class CosineVPSDE(LogAlphaVPSDE):
    """VP SDE with Nichol & Dhariwal's cosine ``alpha_bar(t)`` (see the module doc).

    Args:
        offset: the small offset ``s`` (0.008 in the paper).
        T: end time (< 1; default where ``beta(T) = 999``).
        eps: the time at which sampling stops and likelihoods start.
    """

    def __init__(self, offset: float = 0.008, T: float | None = None, eps: float = 1e-3) -> None:
        if not (0 < offset < 1):
            raise ValueError(f"offset must lie in (0, 1), got {offset}")
        T = _default_t_max(offset) if T is None else float(T)
        if not (0 < T < 1):
            raise ValueError(f"the cosine schedule needs 0 < T < 1 (alpha_bar(1) = 0), got {T}")
        super().__init__(T=T, eps=eps)
        self.offset = float(offset)
        self._log_cos0 = math.log(math.cos(self.offset / (1 + self.offset) * math.pi / 2))

    def config(self) -> dict:
        return {"offset": self.offset, **super().config()}

    def _u(self, t: Tensor) -> Tensor:
        return (t + self.offset) / (1 + self.offset) * (math.pi / 2)

    def log_alpha(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return torch.log(torch.cos(self._u(t))) - self._log_cos0

    def dlog_alpha(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        return -torch.tan(self._u(t)) * (math.pi / 2) / (1 + self.offset)

    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        la = torch.as_tensor(log_alpha)
        u = torch.acos(torch.clamp(torch.exp(la + self._log_cos0), max=1.0))
        return u * 2 * (1 + self.offset) / math.pi - self.offset
