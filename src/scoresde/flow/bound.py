"""The likelihood bound of the reverse SDE (Song et al. 2021c, Thm. 3), beside the PF-ODE's likelihood.

:func:`dsm_nll_bound` upper-bounds ``-log p(x)`` of the reverse SDE started from the prior by
denoising errors, without solving any ODE: the cheap companion of
:func:`scoresde.flow.likelihood.log_likelihood`, and the trainer's ``bpd_bound``.  It takes
data in the model's space (dequantized, for discrete data:
:meth:`scoresde.flow.dequantization.Quantization.dequantize_data`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde._core.checks import check_data
from scoresde._core.tensors import LOG_2PI, sum_except_batch
from scoresde.models.base import ScoreFunction
from scoresde.sde.importance import sample_time_importance

__all__ = ["dsm_nll_bound"]


@torch.no_grad()
def dsm_nll_bound(
    model: ScoreFunction,
    x0: Tensor,
    num_samples: int = 1,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo upper bound on ``-log p_theta^SDE(x0)`` in nats (Song et al. 2021c, Thm. 3).

    ``L(x) = -E[log pi(x_T)] + 1/2 int E[g^2 ||s_theta - grad log p_0t||^2 - g^2 ||grad log p_0t||^2
    - 2 div f] dt``.  With ``grad log p_0t = -n / sigma`` this is

        -E[log pi(x_T)] + 1/2 int g^2/sigma^2 E[||eps_theta - n||^2 - ||n||^2] dt - D (log s(T) - log s(eps)),

    where the prior term is exact for the Gaussian prior, and the integral over ``[eps, T]`` is
    estimated with ``t`` importance-sampled from ``p(t) ∝ g^2 / sigma^2`` (it becomes
    ``Z/2 E_p[...]``, see :func:`importance_time`), ``num_samples`` draws per point.  It bounds
    the likelihood of the *reverse SDE* started from the prior (not the probability-flow ODE's);
    the piece on ``[0, eps]`` is left out (it is ``O(eps)``).  For the exact score its mean over
    the data is the data entropy plus ``KL(p_T || pi)``.

    Args:
        model: the score model.
        x0: data ``(B, *D)`` (dequantized, for discrete data).
        num_samples: draws of ``(t, n)`` per point.
        y: optional labels.
        generator: RNG for the draws.

    Returns:
        ``(B,)`` bounds in nats (float64).
    """

    check_data(x0, "x0")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    sde = model.sde
    d = x0[0].numel()
    t_eps, t_T = (torch.tensor(v, dtype=torch.float64) for v in (sde.eps, sde.T))
    (s_T, sigma_T), (s_eps, _) = sde.marginal(t_T), sde.marginal(t_eps)
    std = sde.prior_std()
    # -E[log pi(s_T x0 + sigma_T n)] for pi = N(0, std^2 I), in closed form.
    sq = sum_except_batch(x0.double() ** 2).cpu()
    prior = 0.5 * d * (LOG_2PI + 2 * math.log(std)) + (s_T**2 * sq + sigma_T**2 * d) / (2 * std**2)
    drift = -d * (torch.log(s_T) - torch.log(s_eps))
    z = 2.0 * float(sde.lambda_t(t_eps) - sde.lambda_t(t_T))
    acc = torch.zeros(x0.shape[0], dtype=torch.float64)
    for _ in range(num_samples):
        t = sample_time_importance(sde, x0.shape[0], generator, dtype=x0.dtype).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        eps = model.eps(sde.perturb(x0, t, noise), t, y).to(noise.dtype)
        acc += (sum_except_batch((eps - noise) ** 2) - sum_except_batch(noise**2)).double().cpu()
    return prior + drift + 0.5 * z * acc / num_samples
