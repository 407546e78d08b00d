"""Sequential Monte Carlo posterior sampling for linear inverse problems (Wu et al. 2023, TDS).

Target: ``p(x_0 | y) ∝ p(x_0) N(y; A x_0, s_y^2 I)`` (``s_y = 0``: the noise-free ``A x_0 = y``)
with only the prior's score model.  ``K`` particles per measurement follow the ancestral
(posterior) kernel of the reverse process, ``p(x_{i+1} | x_i) = N(mu_i, v_i I)``
(:func:`~scoresde.sampling.predictors.ancestral_posterior`), twisted towards the measurement by
the Gaussian twisting functions of the Twisted Diffusion Sampler (Wu et al. 2023, Eq. 8-9):

    p~_i(y | x_i) = N(y; A x0_hat(x_i, t_i), (s_y^2 + r_i^2) I),  r_i^2 = sigma_hat_i^2 / (1 + sigma_hat_i^2)

(``r_i^2``: the posterior variance of ``x_0`` given ``x_i`` for data of unit variance, as in
PiGDM, Song et al. 2023).  Each step proposes from the twisted kernel
``q = N(mu_i + v_i grad log p~_i(y | x_i), v_i I)`` (TDS, Eq. 10) and reweights by

    w_{i+1} = p(x_{i+1} | x_i) p~_{i+1}(y | x_{i+1}) / (q(x_{i+1} | x_i) p~_i(y | x_i))

(TDS, Alg. 1); the last step instead samples the Gaussian kernel conditioned *exactly* on the
measurement (Matheron's rule) with weight ``N(y; A mu, v A A^T + s_y^2 I) / p~(y | x)``, which
also makes noise-free measurements exact.  Whatever the twists, the weighted particles target
``p_chain(x_end) N(y; A x_end, s_y^2)``, the chain's end-point law times the likelihood, so the
sampler is asymptotically exact in ``K`` (up to the chain's own discretisation error, which
falls with ``steps``).  Resampling is systematic, triggered when the effective sample size
falls below ``resample_threshold * K``; the product of mean weights is an unbiased estimate of
the evidence ``p(y)`` under the chain.

Cost per step: one network evaluation and one backward pass per particle (the last step: none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._utils import append_dims
from scoresde.guidance.operators import LinearOperator
from scoresde.guidance.projection import start_inverse_problem
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.predictors import ancestral_posterior
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["SMCResult", "effective_sample_size", "smc_sample", "systematic_resample"]


@dataclass
class SMCResult:
    """What :func:`smc_sample` returns.

    Attributes:
        x: one posterior sample per measurement, drawn from the final weighted particles, ``(B, *D)``.
        particles: the final particles ``(B, K, *D)``.
        log_weights: their normalised log-weights ``(B, K)`` (``logsumexp = 0`` per row).
        ess: effective sample size after each step's reweighting ``(steps, B)``.
        resampled: whether the particles were resampled before each step ``(steps, B)``.
        log_evidence: log of the SMC estimate of ``p(y)`` under the chain ``(B,)``.
        nfe: network evaluations (batched calls over all ``B K`` particles).
        times: the time grid.
    """

    x: Tensor
    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    log_evidence: Tensor
    nfe: int
    times: Tensor

    def posterior_mean(self) -> Tensor:
        """The weighted particle mean ``(B, *D)``."""
        w = self.log_weights.exp()
        return (append_dims(w, self.particles.ndim) * self.particles).sum(1)


def effective_sample_size(log_w: Tensor) -> Tensor:
    """``(sum w)^2 / sum w^2`` per row of ``log_w: (B, K)`` (Kong et al. 1994)."""
    return torch.exp(2 * torch.logsumexp(log_w, 1) - torch.logsumexp(2 * log_w, 1))


def systematic_resample(log_w: Tensor, u: Tensor) -> Tensor:
    """Systematic resampling (Kitagawa 1996): indices ``(B, K)`` with one uniform ``u: (B,)`` per row.

    Particle ``k`` is copied ``floor`` or ``ceil`` of ``K w_k`` times, the lowest variance of the
    standard schemes.
    """
    k = log_w.shape[1]
    w = torch.softmax(log_w.double(), 1)
    cdf = torch.cumsum(w, 1)
    cdf[:, -1] = 1.0
    pos = (u.double()[:, None] + torch.arange(k, dtype=torch.float64, device=log_w.device)) / k
    return torch.searchsorted(cdf, pos).clamp_max(k - 1)


def _uniform(noise: NoiseSource, b: int, like: Tensor) -> Tensor:
    """One U(0, 1) per measurement from the noise source (so per-sample seeds stay per-sample)."""
    z = noise(torch.empty(b, 1, dtype=torch.float64, device=like.device)).reshape(b)
    return torch.special.ndtr(z).clamp(1e-12, 1 - 1e-12)


def _twist(
    model: ScoreFunction,
    operator: LinearOperator,
    y_rep: Tensor,
    x: Tensor,
    t: Tensor,
    var: float,
    labels: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(log p~(y | x), grad_x log p~(y | x), x0_hat(x))`` per particle: one NFE, one backward."""
    m = operator.out_features
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        x0 = model.denoise(x_in, t.to(x.dtype).expand(x.shape[0]), labels)
        resid = (y_rep - operator.forward(x0)).reshape(x.shape[0], -1)
        logp = -0.5 * resid.pow(2).sum(1) / var - 0.5 * m * math.log(2 * math.pi * var)
        (grad,) = torch.autograd.grad(logp.sum(), x_in)
    return logp.detach().double(), grad.detach(), x0.detach()


@torch.no_grad()
def smc_sample(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    *,
    noise_std: float = 0.0,
    particles: int = 64,
    steps: int = 200,
    grid: str | Tensor = "uniform",
    resample_threshold: float = 0.5,
    twist_var_scale: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> SMCResult:
    """Sample ``x`` given ``y_obs = A x + N(0, noise_std^2 I)`` by twisted SMC (Wu et al. 2023, Alg. 1).

    Args:
        model: the prior's score model (class-conditional with ``y``).
        operator: the measurement ``A`` (any :class:`~scoresde.guidance.LinearOperator`; its dense
            matrix is formed once, ``(M, D)``, for the exact last step).
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        sde: the forward SDE (default ``model.sde``).
        shape: ``(B, *D)``: ``B`` measurements (independent SMC runs).
        noise_std: the measurement noise ``s_y`` (0: noise-free).
        particles: ``K`` particles per measurement.
        steps, grid: the time grid from ``T`` to ``eps``.
        resample_threshold: resample when ``ESS < resample_threshold * K`` (1: every step; 0: never).
        twist_var_scale: multiplies ``r_i^2`` in the twisting functions (the data's variance
            scale; 1 for data of unit variance).
        generator, seed: randomness; with ``seed``, measurement ``b``'s result depends only on the
            seed, ``b`` and ``K`` (not on the batch size).
        y: class labels ``(B,)`` for class-conditional models.
        callback: ``callback(i, t, particles)`` after each step, particles ``(B K, *D)``.
        device, dtype, progress: as for :func:`scoresde.sample`.

    Returns:
        An :class:`SMCResult`.
    """
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be an integer >= 1, got {particles!r}")
    if not (0.0 <= float(resample_threshold) <= 1.0):
        raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold}")
    if not (float(noise_std) >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    if not (float(twist_var_scale) > 0 and math.isfinite(twist_var_scale)):
        raise ValueError(f"twist_var_scale must be finite and > 0, got {twist_var_scale}")
    if shape is None:
        raise ValueError("give shape=(B, *D): B measurements, each with its own particles")
    shape = tuple(int(s) for s in shape)
    b, k = shape[0], particles
    sde, ts, noise, x_b, y_obs = start_inverse_problem(
        model,
        operator,
        y_obs,
        sde,
        None,
        steps,
        grid,
        torch.zeros(shape, device=device, dtype=dtype),
        generator,
        seed,
        y,
        device,
        dtype,
    )
    dshape = x_b.shape[1:]
    labels = None if y is None else y.repeat_interleave(k, 0)
    y_rep = y_obs.to(dtype).repeat_interleave(k, 0)
    a_mat = operator.to_matrix(torch.float64).to(device)  # (M, D)
    m = a_mat.shape[0]
    s_y2 = float(noise_std) ** 2
    counted = CountingModel(model)
    ts_dev = ts.to(x_b.device)
    n_steps = len(ts) - 1

    def twist_var(t: Tensor) -> float:
        sh = float(sde.sigma_hat(t.double().cpu()))
        return s_y2 + float(twist_var_scale) * sh**2 / (1.0 + sh**2)

    x = noise(torch.empty((b * k, *dshape), device=x_b.device, dtype=dtype)) * sde.prior_std()
    log_w = torch.zeros(b, k, dtype=torch.float64, device=x.device)
    log_z = torch.zeros(b, dtype=torch.float64, device=x.device)
    ess_hist, res_hist = [], []
    logp_tw = grad = None
    if n_steps > 1:
        logp_tw, grad, x0 = _twist(counted, operator, y_rep, x, ts_dev[0], twist_var(ts_dev[0]), labels)
        log_w = log_w + logp_tw.reshape(b, k)
    else:
        x0 = counted.denoise(x, ts_dev[0].to(dtype).expand(x.shape[0]), labels)
    rng = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="smc", leave=False)
    for i in rng:
        t, t_next = ts_dev[i], ts_dev[i + 1]
        # Resample (systematic) when the effective sample size is low.
        do_res = effective_sample_size(log_w) < float(resample_threshold) * k
        u_res = _uniform(noise, b, x)  # drawn every step, so each row's stream is batch-independent
        if bool(do_res.any()):
            idx = systematic_resample(log_w, u_res)
            idx = torch.where(do_res[:, None], idx, torch.arange(k, device=x.device).expand(b, k))
            flat = (idx + k * torch.arange(b, device=x.device)[:, None]).reshape(-1)
            x = x[flat]
            x0 = x0[flat]
            if logp_tw is not None:
                logp_tw, grad = logp_tw[flat], grad[flat]
            log_z = log_z + torch.where(do_res, torch.logsumexp(log_w, 1) - math.log(k), 0.0)
            log_w = torch.where(do_res[:, None], torch.zeros_like(log_w), log_w)
        res_hist.append(do_res)
        # The unconditional ancestral kernel N(mu, v I) with the model's x0_hat.
        mu, v = ancestral_posterior(sde, x, x0, t, t_next, "posterior")
        if i + 1 == n_steps:
            # Exact last step: the Gaussian kernel conditioned on y = A x + N(0, s_y^2 I).
            flat_mu = mu.reshape(b * k, -1).double()
            c = v * a_mat @ a_mat.T + s_y2 * torch.eye(m, dtype=torch.float64, device=x.device)
            chol = torch.linalg.cholesky(c)
            resid = y_rep.reshape(b * k, -1).double() - flat_mu @ a_mat.T
            sol = torch.cholesky_solve(resid.T, chol).T  # C^{-1} (y - A mu)
            log_ml = (
                -0.5 * (resid * sol).sum(1) - chol.diagonal().log().sum() - 0.5 * m * math.log(2 * math.pi)
            )
            x_tilde = flat_mu + math.sqrt(v) * noise(torch.empty_like(flat_mu.to(dtype))).double()
            n_y = math.sqrt(s_y2) * noise(torch.empty(b * k, m, device=x.device, dtype=dtype)).double()
            r2 = y_rep.reshape(b * k, -1).double() - x_tilde @ a_mat.T - n_y
            x_new = x_tilde + v * torch.cholesky_solve(r2.T, chol).T @ a_mat
            x = x_new.to(dtype).reshape(b * k, *dshape)
            inc = log_ml - (logp_tw if logp_tw is not None else 0.0)
        else:
            # Twisted proposal N(mu + v grad, v I) and the TDS weight.
            shift = v * grad
            x = mu + shift + math.sqrt(v) * noise(mu)
            logp_new, grad_new, x0 = _twist(counted, operator, y_rep, x, t_next, twist_var(t_next), labels)
            d = (x - mu).reshape(b * k, -1).double()
            g = grad.reshape(b * k, -1).double()
            log_kernel_ratio = -(g * d).sum(1) + 0.5 * v * g.pow(2).sum(1)
            inc = log_kernel_ratio + logp_new - logp_tw
            logp_tw, grad = logp_new, grad_new
        log_w = log_w + inc.reshape(b, k)
        log_w = torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)
        ess_hist.append(effective_sample_size(log_w))
        if callback is not None:
            callback(i, t_next, x)
    log_z = log_z + torch.logsumexp(log_w, 1) - math.log(k)
    log_w_norm = log_w - torch.logsumexp(log_w, 1, keepdim=True)
    # One sample per measurement from the weighted particles (inverse CDF with one uniform).
    cdf = torch.cumsum(log_w_norm.exp(), 1)
    pick = torch.searchsorted(cdf, _uniform(noise, b, x)[:, None]).clamp_max(k - 1).reshape(b)
    parts = x.reshape(b, k, *dshape)
    return SMCResult(
        x=parts[torch.arange(b, device=x.device), pick],
        particles=parts,
        log_weights=log_w_norm,
        ess=torch.stack(ess_hist),
        resampled=torch.stack(res_hist),
        log_evidence=log_z,
        nfe=counted.nfe,
        times=ts,
    )
