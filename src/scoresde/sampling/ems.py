"""Estimating DPM-Solver-v3's empirical model statistics from the model (Zheng et al. 2023, Sec. 3.2, App. C).

A tuner above :func:`scoresde.sample`: :func:`compute_ems` runs pilot trajectories through it
and returns the :class:`~scoresde.sampling.dpm_solver_v3.EMS` that the sampler
``dpm_solver_v3`` takes as ``ems=``; the sampler and ``sample`` never import this module.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.dpm_solver_v3 import EMS
from scoresde.sde.base import SDE

__all__ = ["compute_ems", "jvp", "jvp_by_double_vjp"]


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def jvp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``(fn(x), J v)``, ``J`` the Jacobian of ``fn`` at ``x``: by forward mode
    (``torch.func.jvp``) where every operator of ``fn`` has a forward-mode derivative, else by
    reverse over reverse (:func:`jvp_by_double_vjp`), which needs only double backward.  Both run
    attention on the composite ("math") kernel of ``scaled_dot_product_attention``: the fused CPU
    kernels have neither derivative (torch 2.13), and a diffusers ``UNet2DModel`` calls them.

    Raises:
        whatever ``fn`` raises, or its backward: the fallback runs ``fn`` once more, so an error
        of ``fn`` itself surfaces as it is.
    """
    with _math_attention(), torch.enable_grad():
        try:
            # torch annotates jvp as a pair or a triple (no overload on has_aux); without has_aux
            # it returns the pair (output, JVP).
            out, jv = torch.func.jvp(fn, (x,), (v,))  # type: ignore[misc]
        except (RuntimeError, NotImplementedError):
            # torch 2.13's forward-mode GroupNorm fails on tangents that are not contiguous (a
            # diffusers attention block's output), and some operators have no forward mode.
            return jvp_by_double_vjp(fn, x, v)
    return out.detach(), jv.detach()


def jvp_by_double_vjp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``(fn(x), J v)`` by two reverse passes: ``g(u) = J^T u`` is linear in ``u``, so the
    vector-Jacobian product of ``g`` with ``v`` is ``(J^T)^T v = J v`` (the "double vjp" trick)."""
    with _math_attention(), torch.enable_grad():
        x_ = x.detach().requires_grad_(True)
        out = fn(x_)
        u = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, x_, u, create_graph=True)
        (jv,) = torch.autograd.grad(g, u, v)
    return out.detach(), jv.detach()


def _eps_at(model: ScoreFunction, z: Tensor, *, t: Tensor, y: Tensor | None) -> Tensor:
    return model.eps(z, t, y)


def _math_attention() -> contextlib.AbstractContextManager[Any]:
    """``scaled_dot_product_attention`` on its composite kernel (differentiable in every mode)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: the fused kernels are chosen the same way there
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def compute_ems(
    model: ScoreFunction,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    pilot: int = 256,
    knots: int = 200,
    sde: SDE | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    y: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> EMS:
    """Estimate the EMS ``l, s, b`` of ``model`` on ``pilot`` trajectories (Zheng et al. 2023, Sec. 3.2).

    ``pilot`` prior draws are integrated through the ``knots + 1`` times uniform in ``lambda``
    between ``t_start`` and ``t_end`` (UniPC, one step per knot interval).  At each knot
    ``lambda_j`` with states ``x``:

    - ``l_j = E[v * (sigma grad_x eps) v]`` with Rademacher ``v`` (one per pilot sample, the same at
      every knot), the unbiased estimate of ``diag(sigma grad_x eps)`` that minimises
      ``E ||grad_x N||_F^2`` over diagonal ``l`` (Eq. 6), one Jacobian-vector product per knot;
    - ``f = (sigma eps - l x) / alpha``;
    - ``f^(1) = df/dlambda`` along each trajectory, by second-order finite differences between
      neighbouring knots (the paper uses a JVP in ``(x, lambda)``; differencing along the pilot
      trajectory costs no evaluation and includes ``dl/dlambda``, as the solver's ``f`` does);
    - ``s_j = Cov(f^(1), f) / Var(f)``, ``b_j = E[f^(1)] - s_j E[f]`` per dimension, the least
      squares solution of Eq. 8 (``Var(f)`` gets a ``1e-12 E[f^2]`` ridge, so a dimension where
      ``f`` does not vary over the pilot gets ``s = 0``, ``b = E[f^(1)]``).

    Cost: ``knots`` evaluations for the trajectories and ``knots + 1`` JVPs; memory: two
    ``(knots + 1, pilot, *shape)`` tensors.  The model must be differentiable in ``x``.

    Args:
        model: any score model.
        shape: the shape ``D`` of one sample.
        generator: RNG for the pilot prior draws and the probe vectors.
        pilot: number of pilot trajectories.
        knots: number of intervals of the uniform ``lambda`` grid of the statistics.
        sde: defaults to ``model.sde``.
        t_start, t_end: the range they cover (defaults ``sde.T`` and ``sde.eps``); a sampler grid
            must lie inside it.
        y: labels for class-conditional models, ``(pilot,)``.
        dtype, device: of the pilot states (the statistics are accumulated in float64).

    Returns:
        The :class:`EMS`.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"compute_ems needs an explicit torch.Generator, got {type(generator).__name__}")
    _check_int("pilot", pilot, 2)
    _check_int("knots", knots, 4)
    sde = model.sde if sde is None else sde
    t_hi = float(sde.T if t_start is None else t_start)
    t_lo = float(sde.eps if t_end is None else t_end)
    ends = torch.tensor([t_hi, t_lo], dtype=torch.float64)
    s_ends, sig_ends = sde.marginal(ends)
    if not t_hi > t_lo or float(sig_ends[1]) <= 0.0:
        raise ValueError(f"compute_ems needs t_start > t_end with sigma(t_end) > 0, got {t_hi}, {t_lo}")
    lam_ends = torch.log(s_ends) - torch.log(sig_ends)
    lam = torch.linspace(float(lam_ends[0]), float(lam_ends[1]), knots + 1, dtype=torch.float64)
    ts = sde.t_of_lambda(lam).to(torch.float64)
    ts[0], ts[-1] = t_hi, t_lo
    alpha, sigma = (v.tolist() for v in sde.marginal(ts))

    x_T = sde.prior_sample((pilot, *shape), generator=generator, dtype=dtype)
    if device is not None:
        x_T = x_T.to(device)
    traj = sample(
        model,
        sde,
        x_T=x_T,
        method="unipc",
        grid=ts.to(dtype),
        denoise=False,
        record=True,
        y=y,
        lower_order_final=False,
    ).trajectory
    assert traj is not None  # record=True
    v = torch.randint(0, 2, x_T.shape, generator=generator, dtype=torch.int64).to(x_T) * 2 - 1

    l_list, f_list = [], []
    for j in range(knots + 1):
        x = traj[j]
        t = torch.full((pilot,), float(ts[j]), dtype=x.dtype, device=x.device)
        eps, jv = jvp(functools.partial(_eps_at, model, t=t, y=y), x, v)
        eps, jv, xd = eps.double(), jv.double(), x.double()
        l_j = (v.double() * sigma[j] * jv).mean(0)
        l_list.append(l_j)
        f_list.append((sigma[j] * eps - l_j * xd) / alpha[j])
    f = torch.stack(f_list)  # (K, B, *D)
    dlam = (lam[-1] - lam[0]).item() / knots
    df = torch.empty_like(f)
    df[1:-1] = (f[2:] - f[:-2]) / (2 * dlam)
    df[0] = (-3 * f[0] + 4 * f[1] - f[2]) / (2 * dlam)
    df[-1] = (3 * f[-1] - 4 * f[-2] + f[-3]) / (2 * dlam)
    f_mean, df_mean = f.mean(1), df.mean(1)
    var = (f - f_mean[:, None]).pow(2).mean(1)
    cov = ((f - f_mean[:, None]) * (df - df_mean[:, None])).mean(1)
    s = cov / (var + 1e-12 * f.pow(2).mean(1) + 1e-300)
    b = df_mean - s * f_mean
    return EMS(lam=lam, l=torch.stack(l_list).cpu(), s=s.cpu(), b=b.cpu(), pilot=pilot)
