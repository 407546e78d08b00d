"""Rectified-flow reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast", Sec. 2.2-2.3).

Reflow couples noise and data through a flow that already exists: draw ``x_1`` from the prior,
integrate the teacher's probability-flow ODE to ``x_0 = ODE(x_1)``, and fit a new velocity
field on the straight paths ``x_t = (1 - t) x_0 + t x_1`` by flow matching on these pairs
(Liu et al. 2023, Eq. 1 with the coupling ``(x_0, x_1)``).  The new flow's paths are
straighter (Liu et al. 2023, Thm. 3.7), so few-step Euler follows them better.  The student is
any :class:`~scoresde.models.ScoreFunction` under :class:`~scoresde.sde.StraightSDE` (the
flow-matching path, the zero-diffusion case of the library), sampled with ``method="euler"``.

The straightness of a flow, ``S = int E || (x_1 - x_0) - dx_t/dt ||^2 dt`` (Liu et al. 2023,
Eq. 6, with time running from 1 to 0 here), is :func:`straightness`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.progress import Progress
from scoresde.models.base import ScoreFunction
from scoresde.sampling.api import sample
from scoresde.sampling.grids import time_grid
from scoresde.train.ema import EMA
from scoresde.train.losses import flow_matching_loss
from scoresde.train.optim import optimize

__all__ = ["ReflowResult", "reflow", "reflow_pairs", "straightness"]


@torch.no_grad()
def reflow_pairs(
    teacher: ScoreFunction,
    shape: Sequence[int],
    method: str = "dpm_solver_pp_2m",
    steps: int = 20,
    grid: str = "logsnr",
    seed: int = 0,
    batch_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Couplings ``(x_0, x_1)``: ``x_1 ~ N(0, I)``, ``x_0`` the teacher's ODE solution from ``x_1``.

    The teacher starts at ``x_T = prior_std * x_1`` (a VE prior is wide); its ODE is solved
    with ``method`` on ``steps`` steps with the final denoising step (the library's
    :func:`~scoresde.sample`).  Each pair depends only on ``seed`` and its index.

    Returns:
        ``(x0, x1)``, both ``shape``.
    """
    n = int(shape[0])
    if n < 1:
        raise ValueError(f"need at least one pair, got shape {tuple(shape)}")
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(tuple(shape), generator=gen)
    std = teacher.sde.prior_std()
    x0 = torch.empty_like(x1)
    for a in range(0, n, batch_size):
        b = min(n, a + batch_size)
        x0[a:b] = sample(teacher, x_T=std * x1[a:b], method=method, steps=steps, grid=grid, seed=seed).x
    return x0, x1


@dataclass
class ReflowResult:
    """What :func:`reflow` returns: the EMA model, losses per step, wall time, steps."""

    model: ScoreFunction
    losses: list[float]
    seconds: float
    steps: int


def reflow(
    student: ScoreFunction,
    x0: Tensor,
    x1: Tensor,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    ema_decay: float = 0.999,
    generator: torch.Generator | None = None,
    progress: bool | str | Progress = False,
) -> ReflowResult:
    """Fit ``student`` by flow matching on the coupling ``(x0, x1)`` (one reflow round).

    Args:
        student: a model under :class:`~scoresde.sde.StraightSDE` (``prediction="velocity"``
            ideal); its parameters are updated in place.
        x0, x1: paired data and noise ``(N, *D)`` (e.g. from :func:`reflow_pairs`).
        steps, batch_size, lr: AdamW settings (cosine decay).
        ema_decay: decay of the returned weight average.
        generator: RNG for minibatches and times.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if student.sde.name != "StraightSDE":
        raise ValueError(f"reflow fits a straight-path model (StraightSDE); got a {student.sde.name} model")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ema = EMA(student, ema_decay)

    def loss(step: int) -> Tensor:
        idx = torch.randint(0, x0.shape[0], (batch_size,), generator=g)
        return flow_matching_loss(student, x0[idx], generator=g, noise=x1[idx]).loss

    student.train()
    run = optimize(
        student.parameters(), loss, steps, lr, after_step=lambda: ema.update(student), progress=progress
    )
    student.eval()
    return ReflowResult(ema.module, run.losses, run.seconds, steps)


@torch.no_grad()
def straightness(model: ScoreFunction, x_T: Tensor, steps: int = 50, y: Tensor | None = None) -> Tensor:
    """Per-sample straightness of the probability-flow ODE paths from ``x_T`` (Liu et al. 2023, Eq. 6).

    Integrates ``dx/dt = u(x, t)`` (``model.velocity``) from ``T`` to ``eps`` by Euler on a
    uniform grid of ``steps`` steps and returns the mean over the steps of
    ``|u(x_t, t) - (x_T - x_eps) / (T - eps)|^2`` (summed over coordinates): zero exactly for
    straight paths traversed at constant speed.

    Returns:
        ``(B,)``.
    """
    sde = model.sde
    ts = time_grid(sde, steps, "uniform").to(x_T.dtype)
    x = x_T
    vs = []
    for i in range(steps):
        t = ts[i].expand(x.shape[0])
        u = model.velocity(x, t, y)
        vs.append(u)
        # Euler step.
        x = x + u * (ts[i + 1] - ts[i])
    chord = (x_T - x) / (ts[0] - ts[-1])
    return torch.stack([(u - chord).flatten(1).pow(2).sum(1) for u in vs]).mean(0)
