"""``ScoreModel``: a score model around any ``nn.Module`` ``net(x, t[, y])``.

What the network takes as its time input is a declared, saved property of the wrapper
(``time_input``), never guessed by a sampler.  Samplers always speak continuous time ``t`` of the
SDE; :func:`time_input_value` turns it into what the network was trained on:

- ``t``: ``t`` itself;
- ``scaled_t``: ``time_scale * t`` (the paper's continuous VP DDPM++ and NCSN++ models take
  ``999 t``, Song et al. 2021, score_sde_pytorch ``get_score_fn``);
- ``timestep``: the SDE's fractional timestep ``n(t)`` (:meth:`DiscreteVPSDE.timestep
  <scoresde.sde.DiscreteVPSDE.timestep>`), equal to the integer ``n`` at the table's times:
  discrete-time models (DDPM, diffusers) evaluated between their timesteps by interpolation, as
  k-diffusion's ``DiscreteSchedule(quantize=False)``;
- ``timestep_nearest``: that timestep rounded to the nearest integer (k-diffusion's
  ``quantize=True``);
- ``sigma``: the noise level ``sigma_hat = sigma / s`` (the paper's VE NCSN++ and diffusers'
  ``ScoreSdeVe`` models, where ``s = 1``; EDM's ``sigma``);
- ``log_sigma``: EDM's ``c_noise = log(sigma_hat) / 4`` (Karras et al. 2022, Table 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from scoresde._core.tensors import append_dims, scalar
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

__all__ = ["ScoreModel", "TIME_INPUTS", "check_time_input", "time_input_value"]

TIME_INPUTS = ("t", "scaled_t", "timestep", "timestep_nearest", "sigma", "log_sigma")

_TIMESTEP_INPUTS = ("timestep", "timestep_nearest")


def check_time_input(time_input: str, sde: SDE) -> str:
    """Return ``time_input`` if it is known and ``sde`` supports it, else raise ``ValueError``."""
    if time_input not in TIME_INPUTS:
        raise ValueError(f"unknown time_input {time_input!r}; choose one of {list(TIME_INPUTS)}")
    if time_input in _TIMESTEP_INPUTS and sde.num_timesteps is None:
        raise ValueError(
            f"time_input {time_input!r} needs an SDE with a timestep table (e.g. DiscreteVPSDE); "
            f"{sde.name} has none: use 'scaled_t' with time_scale for a continuous-time model"
        )
    return time_input


def time_input_value(time_input: str, sde: SDE, t: Tensor, time_scale: float = 999.0) -> Tensor:
    """What a network with time input ``time_input`` takes at times ``t: (B,)`` (same dtype).

    For ``timestep`` a value within float rounding of an integer (``2 N`` ulps of ``t``: the
    error of ``t_n = (n + 1)/N`` stored in ``t``'s dtype) is snapped to it, so the network sees
    exactly the integer timesteps it was trained on at the table's times.
    """
    if time_input == "t":
        return t
    if time_input == "scaled_t":
        return time_scale * t
    if time_input in _TIMESTEP_INPUTS:
        num = sde.num_timesteps
        if num is None:
            raise ValueError(
                f"time_input {time_input!r} needs an SDE with a timestep table; {sde.name} has none"
            )
        n = sde.timestep(t)
        near = torch.round(n)
        if time_input == "timestep_nearest":
            n = near.clamp(0, num - 1)
        else:
            tol = 2 * num * torch.finfo(t.dtype).eps
            n = torch.where((n - near).abs() <= tol, near, n)
        return n.to(t.dtype)
    s, sigma = sde.marginal(t)
    if time_input == "sigma":
        return sigma / s
    if time_input == "log_sigma":
        return 0.25 * torch.log(sigma / s)
    raise ValueError(f"unknown time_input {time_input!r}; choose one of {list(TIME_INPUTS)}")


def _tensor_output(out: object) -> Tensor:
    """The network's output tensor, unwrapping a tensor ``.sample`` (diffusers' ``UNet2DOutput``)."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    raise TypeError(
        f"the network returned a {type(out).__name__}, not a tensor (nor an object with a tensor .sample); "
        "wrap it so that it returns the prediction tensor"
    )


class ScoreModel(ScoreFunction):
    """Wrap a network that predicts the score, epsilon, x0, v or velocity.

    The network sees a unit-scale input: ``x / sqrt(s^2 sigma_data^2 + sigma^2)`` when
    ``scale_input`` is set (the standard deviation of ``x_t`` for data of standard deviation
    ``sigma_data``; EDM's ``c_in``, Karras et al. 2022, Table 1), and as time the value of its
    ``time_input`` (see the module doc).  A network may return a tensor or an object with a
    tensor ``.sample`` (diffusers' ``UNet2DOutput``).

    Args:
        net: ``net(x, t)`` or, for class-conditional models, ``net(x, t, y)``.
        sde: the forward SDE.
        prediction: what ``net`` predicts: ``score``, ``eps``, ``x0``, ``v`` or ``velocity``.
        scale_input: divide the input by its marginal standard deviation.
        sigma_data: standard deviation of the (scaled) data, for ``scale_input``.
        time_input: one of :data:`TIME_INPUTS`.
        time_scale: the factor of ``scaled_t`` (999 for the paper's models).
    """

    def __init__(
        self,
        net: nn.Module,
        sde: SDE,
        prediction: str = "eps",
        scale_input: bool = True,
        sigma_data: float = 1.0,
        time_input: str = "t",
        time_scale: float = 999.0,
    ) -> None:
        super().__init__(sde, prediction)
        self.time_input = check_time_input(time_input, sde)
        self.net = net
        self.scale_input = bool(scale_input)
        self.sigma_data = float(sigma_data)
        self.time_scale = float(time_scale)

    def _net_dtype(self) -> torch.dtype | None:
        """The dtype of the network's first floating parameter (``None`` without one).

        The parameter found is remembered with the module and name it is registered under, and
        read again while it is still registered there (``.to(dtype)`` changes it in place, so its
        dtype is current); a replaced parameter makes it search again.
        """
        probe = self.__dict__.get("_dtype_probe")
        if probe is not None:
            owner, name, p = probe
            if owner._parameters.get(name) is p:
                return p.dtype
        for owner in self.net.modules():
            for name, p in owner._parameters.items():
                if p is not None and p.is_floating_point():
                    self.__dict__["_dtype_probe"] = (owner, name, p)
                    return p.dtype
        return None

    def _native(self, x: Tensor, t: Tensor, y: Tensor | None, at: float | None) -> Tensor:
        return self(x, t, y, at=at)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, *, at: float | None = None) -> Tensor:
        """The network's prediction at ``x: (B, *D)``, ``t: (B,)``.

        ``at``: the one time of a broadcast ``t`` when the caller knows it; the input scaling is
        then computed from the SDE's memoised float coefficients (:meth:`SDE.coefficients_at
        <scoresde.sde.SDE.coefficients_at>`), one tensor operation instead of six.
        """
        x_in = x
        if self.scale_input and at is not None:
            s_at, sigma_at = self.sde.coefficients_at(at, t.dtype)
            x_in = x / scalar(math.sqrt((s_at * self.sigma_data) ** 2 + sigma_at**2), x.dtype)
        elif self.scale_input:
            s, sigma = self.sde.marginal(t)
            x_in = x / append_dims(torch.sqrt((s * self.sigma_data) ** 2 + sigma**2), x.ndim)
        t_in = time_input_value(self.time_input, self.sde, t, self.time_scale)
        # Inputs in another precision than the network's (float16 data, a float32 net) run in
        # the network's dtype and come back in the input's; autocast does its own casting.
        net_dtype = self._net_dtype()
        cast = net_dtype is not None and x.dtype != net_dtype and not torch.is_autocast_enabled(x.device.type)
        if cast:
            x_in, t_in = x_in.to(net_dtype), t_in.to(net_dtype)
        out = _tensor_output(self.net(x_in, t_in) if y is None else self.net(x_in, t_in, y))
        return out.to(x.dtype) if cast else out

    def config(self) -> dict:
        """JSON-serialisable wrapper settings (used by checkpoints)."""
        cfg = {
            "prediction": self.prediction,
            "scale_input": self.scale_input,
            "sigma_data": self.sigma_data,
            "time_input": self.time_input,
        }
        if self.time_input == "scaled_t":
            cfg["time_scale"] = self.time_scale
        return cfg
