"""Stochastic samplers beyond the score-SDE paper: EDM's churn sampler and SDE-DPM-Solver++(2M).

Both are written for any linear SDE through the rescaled variable ``x / s(t)`` and the noise
level ``sigma_hat(t) = sigma(t) / s(t)`` (or the half log-SNR ``lambda = -log sigma_hat``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["dpm_solver_pp_2m_sde", "heun_sde"]

SOLVER_TYPES = ("midpoint", "heun")


def _batch(t: Tensor, x: Tensor) -> Tensor:
    return t.to(x.dtype).expand(x.shape[0])


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

    def denoise(y_: Tensor, t_: Tensor, s_: float) -> Tensor:
        return model.denoise(s_ * y_, _batch(t_, y_), y)

    for i in range(n):
        t, t_next = ts[i], ts[i + 1]
        s, s_next = float(sde.marginal(t)[0]), float(sde.marginal(t_next)[0])
        sh, sh_next = float(sde.sigma_hat(t)), float(sde.sigma_hat(t_next))
        y_i = x / s
        # Increase noise temporarily.
        gamma = gamma_max if S_tmin <= sh <= S_tmax else 0.0
        sh_up = min(sh * (1.0 + gamma), max(sigma_cap, sh))
        if sh_up > sh:
            t_up = sde.t_of_lambda(torch.tensor(-math.log(sh_up), dtype=torch.float64)).clamp(max=sde.T)
            t_up = t_up.to(ts.device)
            y_up = y_i + math.sqrt(sh_up**2 - sh**2) * S_noise * noise(y_i)
        else:
            sh_up, t_up, y_up = sh, t, y_i
        s_up = float(sde.marginal(t_up)[0])
        # Euler step.
        d = (y_up - denoise(y_up, t_up, s_up)) / sh_up
        y_next = y_up + (sh_next - sh_up) * d
        # Apply 2nd order correction.
        if sh_next > 0:
            d_next = (y_next - denoise(y_next, t_next, s_next)) / sh_next
            y_next = y_up + (sh_next - sh_up) * (0.5 * d + 0.5 * d_next)
        x = s_next * y_next
        if callback is not None:
            callback(i, t_next, x)
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
    x0_prev: Tensor | None = None
    h_prev = 0.0
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        sigma = float(sde.marginal(t)[1])
        s_next, sigma_next = (float(c) for c in sde.marginal(t_next))
        x0 = model.denoise(x, _batch(t, x), y)
        if sigma_next == 0:
            # Last step to sigma = 0: the denoised data.
            x, x0_prev = s_next * x0, None
        else:
            h = float(sde.lambda_t(t_next) - sde.lambda_t(t))
            phi = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
            # First-order (data-prediction) step.
            x = (sigma_next / sigma) * math.exp(-h) * x + s_next * phi * x0
            # Second-order multistep correction.
            if x0_prev is not None:
                d1h = (x0 - x0_prev) * (h / h_prev)
                coef = 0.5 * phi if solver_type == "midpoint" else 1.0 - phi / (2.0 * h)
                x = x + s_next * coef * d1h
            # Exact noise of the linear part.
            x = x + sigma_next * math.sqrt(phi) * noise(x)
            x0_prev, h_prev = x0, h
        if callback is not None:
            callback(i, t_next, x)
    return x
