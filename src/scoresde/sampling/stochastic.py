"""Stochastic samplers beyond the score-SDE paper: EDM's churn sampler and SDE-DPM-Solver++(2M).

Both are written for any linear SDE through the rescaled variable ``x / s(t)`` and the noise
level ``sigma_hat(t) = sigma(t) / s(t)`` (or the half log-SNR ``lambda = -log sigma_hat``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde._core.tensors import lincomb, scalar
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import fixed_times
from scoresde.sampling.dpm_solver import scaled_prediction
from scoresde.sampling.noise import NoiseSource, scaled_draw
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["dpm_solver_pp_2m_sde", "heun_sde"]

SOLVER_TYPES = ("midpoint", "heun")


def _check_nonneg(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and not math.isnan(value) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def heun_sde(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    S_churn: float = 40.0,
    S_tmin: float = 0.05,
    S_tmax: float = 50.0,
    S_noise: float = 1.0,
) -> Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2) for any linear SDE.

    In ``y = x / s(t)`` every linear SDE is EDM's ``sigma(t) = sigma_hat(t)`` (Karras et al.
    2022, Eq. 4-6 with ``s`` factored out).  Each step ``t_i -> t_{i+1}``:

    1. ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` if ``S_tmin <= sigma_hat_i <= S_tmax`` else 0;
       raise the noise level to ``sigma_up = (1 + gamma_i) sigma_hat_i`` (capped at
       ``sigma_hat(T)`` so the model is never asked beyond ``T``) and add noise:
       ``y_up = y_i + sqrt(sigma_up^2 - sigma_hat_i^2) S_noise z``.
    2. Euler step of ``dy / dsigma_hat = (y - D(y; sigma_hat)) / sigma_hat`` to
       ``sigma_hat_{i+1}``, then the second-order (Heun) correction when
       ``sigma_hat_{i+1} > 0``.

    NFE: 2 per step (1 for a last step that ends at ``sigma_hat = 0``).  With ``S_churn = 0``
    it is EDM's deterministic Heun sampler (Alg. 1).  Weak order 1 when ``S_churn > 0``.

    Args:
        S_churn: overall amount of stochasticity (>= 0).
        S_tmin, S_tmax: the ``sigma_hat`` range where noise is added.
        S_noise: noise inflation (Karras et al. use 1.003-1.007 to offset imperfect
            networks; 1 is exact for an exact score).
    """
    S_churn = _check_nonneg(S_churn, "S_churn")
    S_tmin = _check_nonneg(S_tmin, "S_tmin")
    S_tmax = _check_nonneg(S_tmax, "S_tmax")
    S_noise = _check_nonneg(S_noise, "S_noise")
    n = len(ts) - 1
    gamma_max = min(S_churn / n, math.sqrt(2.0) - 1.0)
    sigma_cap = float(sde.sigma_hat(torch.tensor(sde.T, dtype=torch.float64)))
    # Everything that depends only on the grid, tabulated once: s, sigma_hat at every time, the
    # raised noise level of every step and its time (one t_of_lambda call for all of them).
    s_all, sigma_all = sde.marginal(ts)
    s_t, sh_t = s_all.double().tolist(), (sigma_all / s_all).double().tolist()
    gammas = [gamma_max if S_tmin <= sh <= S_tmax else 0.0 for sh in sh_t[:-1]]
    sh_up = [min(sh * (1.0 + g), max(sigma_cap, sh)) for sh, g in zip(sh_t[:-1], gammas)]
    up = [i for i in range(n) if sh_up[i] > sh_t[i]]
    up_set = set(up)
    sh_up = [v if i in up_set else sh_t[i] for i, v in enumerate(sh_up)]
    t_up = ts[:-1].clone()
    if up:
        lam_up = torch.tensor([-math.log(sh_up[i]) for i in up], dtype=torch.float64)
        t_up[up] = sde.t_of_lambda(lam_up).clamp(max=sde.T).to(ts.device, ts.dtype)
    s_up = sde.marginal(t_up)[0].double().tolist()
    at, at_up = fixed_times(model, ts, x, y), fixed_times(model, t_up, x, y)
    t_out = ts.unbind()

    for i in range(n):
        y_i = x / scalar(s_t[i], x.dtype)
        sh, sh_next, s_next = sh_up[i], sh_t[i + 1], s_t[i + 1]
        # Increase noise temporarily.
        if i in up_set:
            y_up = torch.add(y_i, noise(y_i), alpha=math.sqrt(sh**2 - sh_t[i] ** 2) * S_noise)
        else:
            y_up = y_i
        # Euler step: y + (sh_next - sh) (y - D) / sh.
        k = (sh_next - sh) / sh
        d_up = at_up.denoise(y_up * scalar(s_up[i], y_up.dtype), i)
        y_next = lincomb(1.0 + k, y_up, (-k, d_up))
        # Apply 2nd order correction: y + (sh_next - sh) ((y - D) / sh + (y' - D') / sh_next) / 2.
        if sh_next > 0:
            half, half_next = 0.5 * k, 0.5 * (sh_next - sh) / sh_next
            d_next = at.denoise(y_next * scalar(s_next, y_next.dtype), i + 1)
            y_next = lincomb(1.0 + half, y_up, (-half, d_up), (half_next, y_next), (-half_next, d_next))
        x = y_next * scalar(s_next, y_next.dtype)
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def dpm_solver_pp_2m_sde(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    solver_type: str = "midpoint",
) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Sec. 5 / App.): a multistep exponential integrator.

    Write the reverse SDE (Song et al. 2021, Eq. 6) in the data prediction
    ``x0_hat = (x + sigma^2 score) / s`` and the half log-SNR ``lambda``; variation of
    constants from ``t`` to ``t_next`` with ``h = lambda(t_next) - lambda(t) > 0`` gives exactly

        x_next = (sigma_next / sigma) e^{-h} x + s_next int_0^h 2 e^{2(u - h)} x0_hat(lambda + u) du
                 + sigma_next sqrt(1 - e^{-2h}) z.

    With ``x0_hat`` constant the integral is ``(1 - e^{-2h}) x0_hat`` (first order: the
    ancestral step with posterior variance).  The 2M method extrapolates ``x0_hat`` linearly
    from the previous step (``r = h_prev / h``, ``D1 h = (x0_hat - x0_hat_prev) / r``) and adds

    - ``midpoint`` (Lu et al. 2022b; the default): ``s_next (1 - e^{-2h}) D1 h / 2``;
    - ``heun`` (the exact integral of the linear extrapolant):
      ``s_next (h - (1 - e^{-2h}) / 2) D1``.

    The first step is first order; a step that ends at ``sigma = 0`` returns ``s x0_hat``.
    1 NFE per step.  Weak order 1 (the noise is integrated exactly, the multistep correction
    raises only the drift's order).  Use it on a grid uniform in ``lambda`` (``grid="logsnr"``):
    on a grid uniform in ``t`` the last steps of the VP SDE have large ``h`` and the
    extrapolation (``heun`` most) is markedly less accurate at 25-50 steps.

    Args:
        solver_type: ``"midpoint"`` or ``"heun"``, as above.
    """
    if solver_type not in SOLVER_TYPES:
        raise ValueError(f"unknown solver_type {solver_type!r}; choose one of {list(SOLVER_TYPES)}")
    # The grid's coefficients, tabulated once.
    s_all, sigma_all = (c.double() for c in sde.marginal(ts))
    lam = sde.lambda_t(ts).double()
    s_next_t, sigma_t = s_all.tolist(), sigma_all.tolist()
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    steps = len(ts) - 1
    # Per step: the coefficients of x, x0 and x0_prev, and of the noise (c_noise = 0: the last
    # step to sigma = 0, which returns s x0_hat).
    plan: list[tuple[float, float, float, float]] = []
    h_prev = 0.0
    for i in range(steps):
        sigma, s_next, sigma_next = sigma_t[i], s_next_t[i + 1], sigma_t[i + 1]
        if sigma_next == 0:
            plan.append((0.0, s_next, 0.0, 0.0))
            h_prev = 0.0
            continue
        h = float(lam[i + 1] - lam[i])
        phi = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
        # First-order (data-prediction) step, the second-order multistep correction
        # (s_next coef (x0 - x0_prev) h / h_prev) and the exact noise of the linear part.
        c0, c1 = s_next * phi, 0.0
        if h_prev:
            coef = 0.5 * phi if solver_type == "midpoint" else 1.0 - phi / (2.0 * h)
            c1 = s_next * coef * (h / h_prev)
            c0 += c1
        plan.append(((sigma_next / sigma) * math.exp(-h), c0, -c1, sigma_next * math.sqrt(phi)))
        h_prev = h
    # With x0_i = a out + b x_i (FixedTimes.linear) folded into the step's coefficients, the
    # history kept as scaled_prediction's (u, k) and the noise drawn scaled.
    past: tuple[Tensor, float] | None = None  # x0_{i-1} as (u, k) (scaled_prediction)
    for i in range(steps):
        cx, c0, c1, c_noise = plan[i]
        out, a, b = at.linear("x0", x, i)
        if sigma_t[i + 1] == 0:
            x_next = lincomb(c0 * b, x, (c0 * a, out))  # s x0_hat
        else:
            x_next = scaled_draw(noise, x, c_noise).add_(x, alpha=cx + c0 * b).add_(out, alpha=c0 * a)
            if past is not None:
                x_next.add_(past[0], alpha=c1 * past[1])
        past = scaled_prediction(out, x, a, b) if i + 1 < steps and plan[i + 1][2] != 0.0 else None
        x = x_next
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x
