"""Consistency models (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models").

A consistency function maps any point ``x_t`` of a probability-flow ODE trajectory to the
trajectory's end ``x_{t_min}``: ``f(x_t, t) = x_{t_min}`` (Song et al. 2023, Eq. 3), so one
evaluation replaces the whole ODE solve.  For every linear SDE the library writes the
ODE in EDM's variables ``x_hat = x / s(t)`` and ``sigma_hat = sigma(t) / s(t)`` (Karras et al.
2022), where the end point is ``x_hat_{t_min}``; the consistency function is learned there.

The parameterisation keeps the boundary condition ``f(x, t_min) = x_hat`` exact (Song et al.
2023, Eq. 5, with ``sigma_hat`` in place of ``t``)::

    f(x, t) = c_skip(t) x_hat + (1 - c_skip(t)) D_theta(x, t),
    c_skip(t) = sigma_data^2 / ((sigma_hat(t) - sigma_hat(t_min))^2 + sigma_data^2),

where ``D_theta`` is the denoiser (``E[x_0 | x_t]``) of an ordinary score model.  So the student
is a copy of the teacher itself, whatever it is (a scoresde checkpoint, a diffusers folder, a
paper checkpoint): distillation starts from the teacher's one-step denoiser, which is already a
(crude) consistency function far from ``t_min`` (``c_skip -> 0``), and from the identity near it.

Losses (Song et al. 2023, Eq. 7 and Alg. 2-3): on a grid ``t_0 = T > t_1 > ... > t_N = t_min``,
with ``n`` uniform, ``x_{t_n} = s x_0 + sigma z`` and

- distillation (CD): ``x_{t_{n+1}}`` is one step of an ODE solver of the library on the teacher
  from ``x_{t_n}`` (Heun by default, as the paper);
- training (CT, no teacher): ``x_{t_{n+1}} = s x_0 + sigma z`` with the same ``x_0`` and ``z``;

``L = lambda(t_n) d(f_theta(x_{t_n}, t_n), f_theta^-(x_{t_{n+1}}, t_{n+1}))`` with ``theta^-`` an
EMA of ``theta`` (``mu = 0``: a stop-gradient copy, Song & Dhariwal 2023, "Improved techniques").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.models.consistency import ConsistencyModel
from scoresde.sampling.grids import check_grid, time_grid
from scoresde.sampling.registry import SAMPLERS
from scoresde.sde.base import SDE

__all__ = ["DISTANCES", "WEIGHTINGS", "ConsistencyLoss", "ConsistencyModel", "flow_map"]

DISTANCES = ("l2", "pseudo_huber")
"""The distances ``d`` of :class:`ConsistencyLoss`."""
WEIGHTINGS = ("uniform", "inverse_step")
"""The weightings ``lambda`` of :class:`ConsistencyLoss`."""


def flow_map(
    model: ScoreFunction,
    x: Tensor,
    t_start: float,
    t_end: float | None = None,
    method: str = "dopri5",
    steps: int = 64,
    grid: str = "edm",
    rtol: float = 1e-7,
    atol: float = 1e-7,
    y: Tensor | None = None,
) -> Tensor:
    """The probability-flow ODE's flow map ``x_{t_start} -> x_hat_{t_end}``.

    It is what a consistency model learns (Song et al. 2023, Eq. 3), so on exact oracles it is
    the reference a distilled student is measured against.  ``method="dopri5"`` (default)
    solves adaptively to ``rtol``/``atol``; any other ODE solver of
    :data:`scoresde.SAMPLERS` runs ``steps`` steps on ``grid``.  Returns ``x_{t_end} /
    s(t_end)``, the units of :class:`ConsistencyModel`'s output.
    """
    sde = model.sde
    t1 = sde.eps if t_end is None else float(t_end)
    ts = time_grid(sde, steps, grid, t_start=t_start, t_end=t1)
    # Through the registry entry (``Sampler.__call__`` takes each solver's own options); an ODE
    # solver draws no noise.
    solver = SAMPLERS[method]
    with torch.no_grad():
        if method == "dopri5":
            out = solver(model, sde, x, ts, noise=None, y=y, rtol=rtol, atol=atol)
        else:
            out = solver(model, sde, x, ts, noise=None, y=y)
    s_end, _ = sde.marginal(torch.tensor(t1, dtype=torch.float64))
    return out / float(s_end)


def _solver_step(
    teacher: ScoreFunction, sde: SDE, solver: str, x: Tensor, t_hi: Tensor, t_lo: Tensor, y: Tensor | None
) -> Tensor:
    """One step of the library's ODE solver ``solver`` on ``teacher`` from ``t_hi`` to ``t_lo``."""
    ts = torch.stack([t_hi, t_lo]).to(torch.float64)
    return SAMPLERS[solver](teacher, sde, x, ts, noise=None, y=y)


@dataclass
class ConsistencyLoss:
    """The consistency distillation / training objective (Song et al. 2023, Eq. 7, 10).

    An object with its parameters, called as ``loss(student, target, x0, y, generator)``.

    Args:
        ts: the discretisation ``t_0 = T > ... > t_N = t_min`` (decreasing, ``N >= 1``).
        teacher: the score model whose ODE step gives the adjacent point (distillation); ``None``
            for consistency training, which uses the same noise at both times instead.
        solver: a deterministic one-step-capable key of :data:`scoresde.SAMPLERS` for the
            teacher step (``heun`` as in the paper; ``ddim``, ``dpm_solver_2``, ``euler`` ...).
        distance: ``l2`` (mean squared error) or ``pseudo_huber`` (``sqrt(|a-b|^2 + c^2) - c``
            with ``c = 0.00054 sqrt(d)``, Song & Dhariwal 2023).
        weighting: ``uniform`` (``lambda = 1``) or ``inverse_step`` (``1 / (sigma_hat_n -
            sigma_hat_{n+1})``, Song & Dhariwal 2023).
        groups: the batch is split into this many groups, each with its own ``n`` (the
            teacher step runs on a shared two-point grid per group).
    """

    ts: Tensor
    teacher: ScoreFunction | None = None
    solver: str = "heun"
    distance: str = "l2"
    weighting: str = "uniform"
    groups: int = 4

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {list(DISTANCES)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {list(WEIGHTINGS)}")
        if not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"groups must be a positive integer, got {self.groups!r}")
        if self.teacher is not None:
            if self.solver not in SAMPLERS:
                raise ValueError(f"unknown solver {self.solver!r}; choose a key of scoresde.SAMPLERS")
            if SAMPLERS[self.solver].stochastic or self.solver == "dopri5":
                raise ValueError(
                    f"the teacher step needs a fixed-step probability-flow ODE solver, not {self.solver!r} "
                    "(e.g. heun, ddim, dpm_solver_2, euler)"
                )

    def __call__(
        self,
        student: ConsistencyModel,
        target: ConsistencyModel,
        x0: Tensor,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        sde = student.sde
        ts = check_grid(self.ts, sde)
        n_steps = ts.numel() - 1
        sig = sde.sigma_hat(ts)
        total = x0.new_zeros(())
        chunks = torch.arange(x0.shape[0]).chunk(self.groups)
        for idx in chunks:
            n = int(torch.randint(0, n_steps, (1,), generator=generator))
            t_hi, t_lo = ts[n], ts[n + 1]
            xb = x0[idx]
            yb = None if y is None else y[idx]
            z = torch.randn(xb.shape, generator=generator, dtype=xb.dtype, device=xb.device)
            th = t_hi.to(xb.dtype).expand(xb.shape[0])
            tl = t_lo.to(xb.dtype).expand(xb.shape[0])
            x_hi = sde.perturb(xb, th, z)
            with torch.no_grad():
                if self.teacher is None:
                    # Consistency training: the same x0 and z at the adjacent time (Alg. 3).
                    x_lo = sde.perturb(xb, tl, z)
                else:
                    # Consistency distillation: one ODE step of the teacher (Alg. 2).
                    x_lo = _solver_step(self.teacher, sde, self.solver, x_hi, t_hi, t_lo, yb)
                tgt = target(x_lo, tl, yb)
            pred = student(x_hi, th, yb)
            diff = (pred - tgt).flatten(1)
            if self.distance == "l2":
                d = diff.pow(2).mean(1)
            else:
                c = 0.00054 * math.sqrt(diff.shape[1])
                d = torch.sqrt(diff.pow(2).sum(1) + c**2) - c
            w = 1.0 if self.weighting == "uniform" else float(1.0 / (sig[n] - sig[n + 1]))
            total = total + w * d.sum()
        return total / x0.shape[0]
