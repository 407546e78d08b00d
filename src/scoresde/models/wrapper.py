"""``ScoreModel``: a score model around any ``nn.Module`` ``net(x, t[, y])``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scoresde._utils import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

__all__ = ["ScoreModel", "TIME_INPUTS"]

TIME_INPUTS = ("t", "log_sigma")


class ScoreModel(ScoreFunction):
    """Wrap a network that predicts the score, epsilon, x0, v or velocity.

    The network sees a unit-scale input: ``x / sqrt(s^2 sigma_data^2 + sigma^2)`` when
    ``scale_input`` is set (the standard deviation of ``x_t`` for data of standard deviation
    ``sigma_data``; EDM's ``c_in``, Karras et al. 2022, Table 1), and as time either ``t``
    itself or EDM's ``c_noise = log(sigma_hat) / 4``.

    Args:
        net: ``net(x, t)`` or, for class-conditional models, ``net(x, t, y)``.
        sde: the forward SDE.
        prediction: what ``net`` predicts: ``score``, ``eps``, ``x0``, ``v`` or ``velocity``.
        scale_input: divide the input by its marginal standard deviation.
        sigma_data: standard deviation of the (scaled) data, for ``scale_input``.
        time_input: ``t`` or ``log_sigma``.
    """

    def __init__(
        self,
        net: nn.Module,
        sde: SDE,
        prediction: str = "eps",
        scale_input: bool = True,
        sigma_data: float = 1.0,
        time_input: str = "t",
    ) -> None:
        super().__init__(sde, prediction)
        if time_input not in TIME_INPUTS:
            raise ValueError(f"unknown time_input {time_input!r}; choose one of {list(TIME_INPUTS)}")
        self.net = net
        self.scale_input = bool(scale_input)
        self.sigma_data = float(sigma_data)
        self.time_input = time_input

    def _net_dtype(self) -> torch.dtype | None:
        """The dtype of the network's first floating parameter (``None`` without one)."""
        for p in self.net.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        s, sigma = self.sde.marginal(t)
        x_in = x
        if self.scale_input:
            x_in = x / append_dims(torch.sqrt((s * self.sigma_data) ** 2 + sigma**2), x.ndim)
        t_in = t if self.time_input == "t" else 0.25 * torch.log(sigma / s)
        # Inputs in another precision than the network's (float16 data, a float32 net) run in
        # the network's dtype and come back in the input's; autocast does its own casting.
        net_dtype = self._net_dtype()
        cast = net_dtype is not None and x.dtype != net_dtype and not torch.is_autocast_enabled(x.device.type)
        if cast:
            x_in, t_in = x_in.to(net_dtype), t_in.to(net_dtype)
        out = self.net(x_in, t_in) if y is None else self.net(x_in, t_in, y)
        return out.to(x.dtype) if cast and torch.is_tensor(out) else out

    def config(self) -> dict:
        """JSON-serialisable wrapper settings (used by checkpoints)."""
        return {
            "prediction": self.prediction,
            "scale_input": self.scale_input,
            "sigma_data": self.sigma_data,
            "time_input": self.time_input,
        }
