"""The MCGdiff particle filter for linear inverse problems (Cardoso et al. 2023).

Target: ``p(x_0 | y) ∝ p(x_0) N(y; A x_0, s_y^2 I)``.  With the SVD ``A = U S V^T`` (rank ``r``),
the measurement only sees the coordinates ``c = V^T x`` (``r`` of them) and, in those, reads

    y_bar = S^{-1} U^T y = c_0 + kappa * n,   kappa_j = s_y / S_j,

so every coordinate is its own 1-D inverse problem and the ancestral kernel of the reverse
process, ``N(mu_i, v_i I)`` (isotropic, hence independent across the rotated coordinates), stays
Gaussian in them.  MCGdiff bridges the observed coordinates towards the *noised* observation:
the intermediate target at grid time ``t_i`` is ``p_chain(x_i) g_i(x_i)`` with the potential

    g_i(x) = N(c(x); s(t_i) y_bar, sigma(t_i)^2 + s(t_i)^2 kappa^2)

the law of ``x_{t_i}``'s observed coordinates under the forward process started from the
measurement (a flat prior on ``c_0``; :mod:`scoresde.guidance.measurement`).  For ``s_y = 0``
this is the forward process's own variance, the construction of Cardoso et al. (2023, Sec. 3,
noiseless case).  The last grid time ``eps`` keeps that potential and then moves to the
measurement itself (:func:`~scoresde.guidance.measurement.finish_on_measurement`): an exact
weight correction to ``N(y; A x_end, s_y^2 I)`` with noise, ``A x_end = y`` set noise-free (a
move of order ``sigma(eps)``).  Ending on the exact likelihood instead would collapse the
weights: the last kernel's variance is far below the spread the potential left.  For ``s_y > 0`` the
measurement's variance is folded into the potential; Cardoso et al. instead pin coordinate ``j``
at the time where ``sigma_hat = kappa_j`` and run the prior's kernel below it (a different
sequence of potentials with the same final target).

Each step is fully adapted (the optimal proposal, Pitt & Shephard 1999): the proposal is the
kernel times the next potential, a Gaussian in the observed coordinates,

    q(c' | x_i) ∝ N(c'; V^T mu_i, v_i) N(c'; s_{i+1} y_bar, gamma_{i+1}),

the unobserved coordinates follow the kernel, and the weight depends only on ``x_i``:

    w_{i+1} = N(V^T mu_i; s_{i+1} y_bar, v_i + gamma_{i+1}) / g_i(x_i).

So the weights are computed *before* the move, resampling picks the parents, and the children
are drawn afterwards.  Near ``t = 0`` kernel and potential variances shrink together, which keeps
the last weights flat.  Cost per step: one network evaluation, no gradient.  The potentials
ignore the prior on the observed coordinates, so far from ``t = 0`` they are cruder than the
twisted sampler's; on multimodal posteriors it needs more particles for the same error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from scoresde._core.progress import Progress, make_progress
from scoresde.guidance.measurement import finish_on_measurement, forward_potential, gaussian_move, log_normal
from scoresde.guidance.particles import (
    FilterResult,
    ParticleProblem,
    effective_sample_size,
    resample_low_ess,
    uniform_per_row,
)
from scoresde.sampling.predictors import ancestral_posterior

__all__ = ["MCGdiffProposal", "mcgdiff_filter"]


@dataclass(frozen=True)
class MCGdiffProposal:
    """``proposal=MCGdiffProposal()`` of :func:`scoresde.guidance.smc_sample`: the MCGdiff filter
    (the module docstring; Cardoso et al. 2023).  Fully adapted, gradient-free: it has no
    options of its own (the twisted proposal's ``twist_cov``, ``twist_var_scale`` and
    ``drift_clip`` do not apply to it)."""

    name: ClassVar[str] = "mcgdiff"

    def run(self, problem: ParticleProblem) -> FilterResult:
        """Run the filter on ``problem``."""
        return mcgdiff_filter(problem)


def mcgdiff_filter(problem: ParticleProblem) -> FilterResult:
    """Run the MCGdiff filter (see the module docstring) on ``B`` measurements at once.

    The resampling threshold is not applied at the last step (the returned weights carry it).

    Returns:
        A :class:`~scoresde.guidance.particles.FilterResult`.
    """
    model, sde, ts, noise, coords = problem.model, problem.sde, problem.ts, problem.noise, problem.coords
    labels, callback, dtype = problem.labels, problem.callback, problem.dtype
    resample_threshold = problem.resample_threshold
    b, k = problem.batch, problem.particles
    bk = b * k
    dev = ts.device
    y_bar = coords.repeat(k)  # (B K, r)
    n = len(ts) - 1

    # x_T from the prior N(0, pi^2 I) times g_T (exact: both Gaussian in c).
    pi2 = sde.prior_std() ** 2
    x = noise(torch.empty((bk, *problem.item_shape), device=dev, dtype=dtype)) * math.sqrt(pi2)
    mean, var = forward_potential(sde, ts[0], y_bar, coords.kappa2)
    c = coords.coord(x)
    c = pi2 * mean / (pi2 + var) + torch.sqrt(var / (pi2 + var)) * c
    x = coords.moved(x, c - coords.coord(x))
    log_g = log_normal(c, mean, var)
    log_z = log_normal(torch.zeros_like(mean), mean, pi2 + var).reshape(b, k)[:, 0]
    log_w = torch.zeros(b, k, dtype=torch.float64, device=dev)
    ess_hist, res_hist = [], []
    bar = make_progress(problem.progress, n, "smc (mcgdiff)")
    for i in range(n):
        t, t_next = ts[i], ts[i + 1]
        # The unconditional ancestral kernel N(mu, v I) with the model's x0_hat.
        x0 = model.denoise(x, t.to(dtype).expand(bk), labels)
        mu, v = ancestral_posterior(sde, x, x0, t, t_next, "posterior")
        mean, var = forward_potential(sde, t_next, y_bar, coords.kappa2)
        # Fully adapted weight: the kernel's predictive density of the next potential over g_i.
        inc = log_normal(coords.coord(mu), mean, v + var) - log_g
        log_w = log_w + inc.reshape(b, k)
        log_w = torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)
        u = uniform_per_row(noise, b, x)  # drawn every step: each row's stream is batch-independent
        if i + 1 < n:
            ess_hist.append(effective_sample_size(log_w))
            flat, do_res, log_w, log_mean = resample_low_ess(log_w, resample_threshold, u)
            log_z = log_z + log_mean
            if flat is not None:
                mu = mu[flat]
        else:
            do_res = torch.zeros(b, dtype=torch.bool, device=dev)
        res_hist.append(do_res)
        # Move: the kernel on the unobserved coordinates, kernel x potential on the observed ones.
        x, c = gaussian_move(coords, mu, v, mean, var, noise)
        log_g = log_normal(c, mean, var)
        if i + 1 == n:
            x, corr = finish_on_measurement(coords, x, c, y_bar, mean, var)
            log_w = log_w + corr.reshape(b, k)
            ess_hist.append(effective_sample_size(log_w))
        bar.update(1, nfe=getattr(model, "nfe", 0))
        if callback is not None:
            callback(i, t_next, x)
    if not isinstance(problem.progress, Progress):
        bar.close()
    return FilterResult(x, log_w, log_z + coords.log_const, torch.stack(ess_hist), torch.stack(res_hist))
