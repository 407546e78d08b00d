"""Langevin dynamics on a score of a fixed density ``p_0`` (no noise annealing).

Unadjusted Langevin (ULA; Roberts & Tweedie 1996, the sampler behind Song & Ermon 2019):

    x <- x + eps grad log p(x) + sqrt(2 eps) z,

which targets ``p`` only as ``eps -> 0``; given ``log p`` the proposal is Metropolis-adjusted
(MALA; Roberts & Tweedie 1996) and the chain leaves ``p`` exactly invariant for any ``eps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.checks import check_data
from scoresde._core.tensors import sum_except_batch
from scoresde.sampling.noise import make_noise

__all__ = ["LangevinResult", "langevin_dynamics"]


@dataclass
class LangevinResult:
    """What :func:`langevin_dynamics` returns.

    Attributes:
        x: the final states ``(B, *D)``.
        acceptance_rate: fraction of accepted proposals over all chains and steps (MALA), else
            ``None``.
        acceptance: per-chain acceptance fraction ``(B,)`` (MALA), else ``None``.
        trajectory: states ``(R, B, *D)`` every ``record_stride`` steps (the start first),
            else ``None``.
        nfe: number of (batched) score evaluations.
        n_steps: number of steps taken.
        step_size: the step size ``eps``.
    """

    x: Tensor
    acceptance_rate: float | None
    acceptance: Tensor | None
    trajectory: Tensor | None
    nfe: int
    n_steps: int
    step_size: float


def _normal_cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2.0))


@torch.no_grad()
def langevin_dynamics(
    score_fn: Callable[[Tensor], Tensor],
    x0: Tensor,
    step_size: float,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    log_prob_fn: Callable[[Tensor], Tensor] | None = None,
    record_stride: int | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> LangevinResult:
    """Run ``B`` independent Langevin chains on ``p`` from ``x0: (B, *D)``.

    ULA when ``log_prob_fn`` is ``None``; otherwise MALA: the proposal
    ``x' = x + eps s(x) + sqrt(2 eps) z`` is accepted with probability

        min(1, p(x') q(x | x') / (p(x) q(x' | x))),  log q(a | b) = -||a - b - eps s(b)||^2 / (4 eps) + c.

    Args:
        score_fn: ``x: (B, *D) -> grad log p(x): (B, *D)``.
        x0: starting states.
        step_size: ``eps > 0``.
        n_steps: number of steps (>= 0).
        generator: RNG for all noise (``torch.Generator``).
        seed: instead of ``generator``: per-chain noise, so that chain ``b`` depends only on the
            seed and ``b``, not on the number of chains.
        log_prob_fn: ``x -> log p(x)`` of shape ``(B,)`` (up to a constant); turns on the
            Metropolis adjustment.
        record_stride: keep every ``record_stride``-th state in ``trajectory``.
        callback: ``callback(k, x)`` after step ``k``.

    Returns:
        A :class:`LangevinResult`.  NFE: ``n_steps`` score evaluations for ULA, ``n_steps + 1``
        for MALA.
    """
    check_data(x0, "x0")
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
        raise TypeError(f"step_size must be a number, got {type(step_size).__name__}")
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be positive and finite, got {step_size}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    if record_stride is not None and (not isinstance(record_stride, int) or record_stride < 1):
        raise ValueError(f"record_stride must be an integer >= 1, got {record_stride!r}")
    eps = float(step_size)
    noise = make_noise(generator, seed)
    mala = log_prob_fn is not None
    x = x0.clone()
    b = x.shape[0]
    nfe = 0
    traj = [x.clone()] if record_stride is not None else None
    accepted = torch.zeros(b, dtype=torch.float64, device=x.device)

    def score(v: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        out = score_fn(v)
        if out.shape != v.shape:
            raise ValueError(f"score_fn returned shape {tuple(out.shape)} for input {tuple(v.shape)}")
        return out

    def log_prob(v: Tensor) -> Tensor:
        assert log_prob_fn is not None  # called for MALA only
        out = log_prob_fn(v)
        if out.shape != (b,):
            raise ValueError(f"log_prob_fn must return shape ({b},), got {tuple(out.shape)}")
        return out

    s = lp = None
    if mala:
        s, lp = score(x), log_prob(x)
    for k in range(n_steps):
        if s is None or not mala:
            s = score(x)
        z = noise(x)
        # Langevin proposal.
        prop = x + eps * s + math.sqrt(2 * eps) * z
        if mala:
            assert s is not None and lp is not None  # MALA evaluates both before the loop
            s_prop, lp_prop = score(prop), log_prob(prop)
            # log q(x | x') - log q(x' | x); ||x' - x - eps s(x)||^2 = 2 eps ||z||^2.
            log_q_ratio = -(
                sum_except_batch((x - prop - eps * s_prop) ** 2) - 2 * eps * sum_except_batch(z**2)
            )
            log_alpha = lp_prop - lp + log_q_ratio / (4 * eps)
            u = _normal_cdf(noise(torch.empty(b, 1, dtype=torch.float64, device=x.device))[:, 0])
            accept = torch.log(u) < log_alpha.to(torch.float64)  # NaN proposals are rejected
            accepted += accept
            mask = accept.reshape(b, *([1] * (x.ndim - 1)))
            x = torch.where(mask, prop, x)
            s = torch.where(mask, s_prop, s)
            lp = torch.where(accept, lp_prop, lp)
        else:
            x = prop
        if (
            traj is not None
            and record_stride is not None
            and ((k + 1) % record_stride == 0 or k + 1 == n_steps)
        ):
            traj.append(x.clone())
        if callback is not None:
            callback(k, x)
    acceptance = accepted / max(n_steps, 1) if mala else None
    return LangevinResult(
        x=x,
        acceptance_rate=float(acceptance.mean()) if acceptance is not None else None,
        acceptance=acceptance,
        trajectory=torch.stack(traj) if traj is not None else None,
        nfe=nfe,
        n_steps=n_steps,
        step_size=eps,
    )
