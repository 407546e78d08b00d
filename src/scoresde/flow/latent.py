"""Latent-space tools through the probability-flow ODE (Song et al. 2021, Sec. 4.3, Fig. 3, App. D.5).

The probability-flow ODE is a deterministic, invertible map between data at ``t = eps`` and
latents at ``t = T``: :func:`encode` integrates it forwards, :func:`decode` backwards, so that
``decode(encode(x))`` returns ``x`` up to the solver tolerance.  In the latent space, which is
(approximately) the Gaussian prior ``N(0, sigma_T^2 I)``, :func:`slerp` interpolates along
great circles (keeping latents at typical norms) and :func:`temperature` rescales the latent
norm, as in the paper's Fig. 3 (interpolation and temperature rescaling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.checks import check_batch, check_data, check_real_tensor, guard_output
from scoresde._core.tensors import append_dims
from scoresde.flow.integrators import AdaptiveIntegrator, Integrator
from scoresde.flow.pf_ode import Clock, default_time_variable
from scoresde.models.base import ScoreFunction, check_model_sde
from scoresde.sde.base import SDE

__all__ = ["FlowResult", "decode", "encode", "slerp", "temperature"]


@dataclass
class FlowResult:
    """Output of :func:`encode` / :func:`decode`.

    Attributes:
        x: ``(B, *D)`` the end point (latents for ``encode``, data for ``decode``).
        nfe: evaluations of the ODE's vector field.
    """

    x: Tensor
    nfe: int


def _flow(
    model: ScoreFunction,
    sde: SDE | None,
    x: Tensor,
    to_latent: bool,
    y: Tensor | None,
    integrator: Integrator | None,
    time_variable: str | None,
) -> FlowResult:
    sde = check_model_sde(model, sde)
    check_real_tensor(x, "x")
    check_data(x)
    check_batch(x, "x")
    integrator = integrator or AdaptiveIntegrator()
    clock = Clock(sde, time_variable or default_time_variable(sde))
    t_from, t_to = (sde.eps, sde.T) if to_latent else (sde.T, sde.eps)
    nfe = 0

    def field(u: Tensor, state: tuple[Tensor], index: Tensor | None = None) -> tuple[Tensor]:
        # index: the samples in state when only the running ones are evaluated (PerSample).
        nonlocal nfe
        nfe += 1
        b_now = state[0].shape[0]
        t, dt_du = clock(u)
        t_b = t.to(x.dtype).expand(b_now).to(x.device)
        dt_b = dt_du.to(x.dtype).expand(b_now).to(x.device)
        y_now = y if y is None or index is None else y[index]
        v = model.velocity(state[0], t_b, y_now)
        guard_output(v, state[0], t_b, "the probability-flow ODE", f"evaluation {nfe}")
        return (v * append_dims(dt_b, x.ndim),)

    with torch.no_grad():
        (out,) = integrator.solve(field, (x,), clock.u_of_t(t_from), clock.u_of_t(t_to))
    return FlowResult(out, nfe)


def encode(
    model: ScoreFunction,
    sde: SDE | None,
    x: Tensor,
    *,
    y: Tensor | None = None,
    integrator: Integrator | None = None,
    time_variable: str | None = None,
) -> FlowResult:
    """Map data ``x: (B, *D)`` at ``t = eps`` to latents at ``t = T`` by the probability-flow ODE.

    Args:
        model: score model (its ``velocity`` is the ODE drift, Song et al. 2021, Eq. 13).
        sde: the forward SDE (``None``: ``model.sde``; must agree with it).
        x: ``(B, *D)`` data; the ODE runs in ``x``'s dtype.
        y: optional labels ``(B,)``.
        integrator: how the ODE is solved (default
            :class:`~scoresde.flow.integrators.AdaptiveIntegrator`: ``dopri5`` at 1e-5).
        time_variable: ``t`` or ``log_sigma``; ``None`` (default, as in
            :func:`~scoresde.flow.likelihood.log_likelihood`) the SDE's ``pf_ode_clock``.

    Returns:
        :class:`FlowResult` with the latents ``z: (B, *D)``.
    """
    return _flow(model, sde, x, True, y, integrator, time_variable)


def decode(
    model: ScoreFunction,
    sde: SDE | None,
    z: Tensor,
    *,
    y: Tensor | None = None,
    integrator: Integrator | None = None,
    time_variable: str | None = None,
) -> FlowResult:
    """Map latents ``z: (B, *D)`` at ``t = T`` back to data at ``t = eps`` (inverse of
    :func:`encode`; arguments as there)."""
    return _flow(model, sde, z, False, y, integrator, time_variable)


def slerp(z0: Tensor, z1: Tensor, alpha: float | Tensor) -> Tensor:
    """Spherical linear interpolation between latents (Shoemake 1985), per sample.

    ``slerp = sin((1 - a) w) / sin(w) z0 + sin(a w) / sin(w) z1`` with ``w`` the angle between
    ``z0`` and ``z1``; for (nearly) parallel pairs it falls back to linear interpolation.

    Args:
        z0, z1: ``(B, *D)`` end points.
        alpha: a float, or ``(A,)`` fractions in ``[0, 1]``.

    Returns:
        ``(B, *D)`` for a float ``alpha``, ``(A, B, *D)`` for a tensor.
    """
    check_data(z0, "z0")
    check_data(z1, "z1")
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    a = torch.as_tensor(alpha, dtype=z0.dtype, device=z0.device)
    if a.ndim > 1:
        raise ValueError(f"alpha must be a float or a 1-D tensor, got shape {tuple(a.shape)}")
    b = z0.shape[0]
    f0, f1 = z0.reshape(b, -1), z1.reshape(b, -1)
    cos = (f0 * f1).sum(1) / (f0.norm(dim=1) * f1.norm(dim=1)).clamp_min(torch.finfo(z0.dtype).tiny)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))  # (B,)
    aa = a.reshape(-1, 1)  # (A, 1)
    sin_w = torch.sin(omega)
    small = sin_w.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(sin_w), sin_w)
    c0 = torch.where(small, 1 - aa, torch.sin((1 - aa) * omega) / safe)  # (A, B)
    c1 = torch.where(small, aa.expand_as(c0), torch.sin(aa * omega) / safe)
    out = append_dims(c0, z0.ndim + 1) * z0 + append_dims(c1, z0.ndim + 1) * z1
    return out[0] if a.ndim == 0 else out


def temperature(z: Tensor, tau: float | Tensor) -> Tensor:
    """Rescale latents to temperature ``tau``: ``z -> tau z`` (Song et al. 2021, Fig. 3, App. D.5).

    A latent of the prior ``N(0, sigma_T^2 I)`` scaled by ``tau`` is a draw at temperature
    ``tau`` (``N(0, tau^2 sigma_T^2 I)``): its norm is multiplied by ``tau``, its direction kept.

    Args:
        z: ``(B, *D)`` latents.
        tau: a positive float or per-sample ``(B,)`` temperatures.
    """
    check_data(z, "z")
    t = torch.as_tensor(tau, dtype=z.dtype, device=z.device)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != z.shape[0]):
        raise ValueError(f"tau must be a float or have shape ({z.shape[0]},), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError("tau must be positive and finite")
    return z * (append_dims(t, z.ndim) if t.ndim else t)
