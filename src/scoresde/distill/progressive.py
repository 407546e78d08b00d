"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models", Alg. 2).

A student learns to take in one DDIM step what its teacher takes in two: on a grid
``t_0 = T > t_1 > ... > t_N = t_min`` (``N`` even), from ``x_{t_i}`` at an even ``i`` the teacher
takes two DDIM steps to ``x_{t_{i+2}}``, and the student's denoiser is regressed onto the one
``x0`` whose single DDIM step from ``x_{t_i}`` lands exactly there.  Then the student, sampled
with DDIM on every other time of the grid (``N / 2`` steps), imitates the teacher at ``N``; the
student becomes the next round's teacher, halving the steps again.

DDIM (Song et al. 2021b) is the first-order exponential integrator of the probability-flow ODE;
in the variables ``x_hat = x / s(t)``, ``sigma_hat = sigma(t) / s(t)`` (Karras et al. 2022) of any
linear SDE it is ``x_hat' = r x_hat + (1 - r) D(x, t)`` with ``r = sigma_hat' / sigma_hat``
(the library's ``method="ddim"``).  Inverting it for the two-step target (Salimans & Ho 2022,
Alg. 2, ``x~``)::

    x0_target = (x_hat_{t_{i+2}} - r x_hat_{t_i}) / (1 - r),  r = sigma_hat_{i+2} / sigma_hat_i.

The loss is ``w(t) |x0_target - D_theta(x_t, t)|^2`` with the paper's truncated-SNR weighting
``w = max(SNR, 1)``, ``SNR = 1 / sigma_hat^2`` (or ``uniform``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.sampling.grids import check_grid
from scoresde.train.ema import EMA
from scoresde.train.optim import optimize

__all__ = [
    "PROGRESSIVE_WEIGHTINGS",
    "ProgressiveResult",
    "ProgressiveRound",
    "progressive_distill",
    "progressive_loss",
    "two_step_target",
]

PROGRESSIVE_WEIGHTINGS = ("truncated_snr", "uniform")
"""The weightings of :func:`progressive_loss`."""


def _ddim(model: ScoreFunction, x: Tensor, t: Tensor, t_next: Tensor, y: Tensor | None) -> Tensor:
    """One DDIM step ``x_t -> x_{t_next}`` with per-sample times ``t``, ``t_next``: ``(B,)``."""
    sde = model.sde
    s, _ = sde.marginal(t)
    s_next, _ = sde.marginal(t_next)
    r = append_dims(sde.sigma_hat(t_next) / sde.sigma_hat(t), x.ndim).to(x.dtype)
    x_hat = x / append_dims(s, x.ndim).to(x.dtype)
    x_hat_next = r * x_hat + (1 - r) * model.denoise(x, t.to(x.dtype), y)
    return append_dims(s_next, x.ndim).to(x.dtype) * x_hat_next


@torch.no_grad()
def two_step_target(
    teacher: ScoreFunction, x: Tensor, t: Tensor, t_mid: Tensor, t_next: Tensor, y: Tensor | None = None
) -> Tensor:
    """The ``x0`` whose one DDIM step from ``x_t`` to ``t_next`` equals two teacher DDIM steps
    ``t -> t_mid -> t_next`` (Salimans & Ho 2022, Alg. 2); times ``(B,)``, ``x: (B, *D)``."""
    sde = teacher.sde
    x_mid = _ddim(teacher, x, t, t_mid, y)
    x_next = _ddim(teacher, x_mid, t_mid, t_next, y)
    s, _ = sde.marginal(t)
    s_next, _ = sde.marginal(t_next)
    r = append_dims(sde.sigma_hat(t_next) / sde.sigma_hat(t), x.ndim).to(x.dtype)
    x_hat = x / append_dims(s, x.ndim).to(x.dtype)
    x_hat_next = x_next / append_dims(s_next, x.ndim).to(x.dtype)
    return (x_hat_next - r * x_hat) / (1 - r)


def progressive_loss(
    student: ScoreFunction,
    teacher: ScoreFunction,
    x0: Tensor,
    ts: Tensor,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    weighting: str = "truncated_snr",
) -> Tensor:
    """The progressive distillation loss of one batch on the teacher's grid ``ts`` (``N + 1``
    decreasing times, ``N`` even): each sample draws an even ``i``, is perturbed to ``t_i`` and
    regressed onto :func:`two_step_target` over ``t_i -> t_{i+1} -> t_{i+2}``."""
    if weighting not in PROGRESSIVE_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(PROGRESSIVE_WEIGHTINGS)}")
    sde = student.sde
    n_pairs = (ts.numel() - 1) // 2
    b = x0.shape[0]
    i = 2 * torch.randint(0, n_pairs, (b,), generator=generator)
    t, t_mid, t_next = ts[i], ts[i + 1], ts[i + 2]
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = sde.perturb(x0, t.to(x0.dtype), z)
    target = two_step_target(teacher, x_t, t, t_mid, t_next, y)
    pred = student.denoise(x_t, t.to(x0.dtype), y)
    err = (pred - target).flatten(1).pow(2).mean(1)
    if weighting == "truncated_snr":
        err = err * torch.clamp(sde.sigma_hat(t).pow(-2), min=1.0).to(err.dtype)
    return err.mean()


@dataclass
class ProgressiveRound:
    """One halving: the teacher's step count, the student's, and the losses of its steps."""

    teacher_steps: int
    student_steps: int
    losses: list[float]
    seconds: float


@dataclass
class ProgressiveResult:
    """What :func:`progressive_distill` returns.

    Attributes:
        model: the last student (EMA weights): sample it with ``method="ddim"`` on ``grid``
            (``ts[::2**rounds]`` of the first teacher's grid ``ts``).
        grid: its time grid, ``(steps + 1,)``.
        steps: its DDIM steps.
        rounds: every halving.
    """

    model: ScoreFunction
    grid: Tensor
    steps: int
    rounds: list[ProgressiveRound]


DataSource = Tensor | Callable[[int, torch.Generator], Tensor | tuple[Tensor, Tensor]]
"""Clean data ``(N, *D)``, or ``fn(batch, generator)`` returning ``x0`` or ``(x0, labels)``."""


def _draw(
    data: DataSource, labels: Tensor | None, batch: int, g: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """A batch ``(x0, y)``: ``y`` is ``None`` for unlabelled data."""
    if callable(data):
        out = data(batch, g)
        return out if isinstance(out, tuple) else (out, None)
    idx = torch.randint(0, data.shape[0], (batch,), generator=g)
    return data[idx], None if labels is None else labels[idx].to(data.device)


def progressive_distill(
    teacher: ScoreFunction,
    data: DataSource,
    ts: Tensor,
    rounds: int = 1,
    student: ScoreFunction | None = None,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-4,
    ema_decay: float = 0.999,
    weighting: str = "truncated_snr",
    generator: torch.Generator | None = None,
    progress: bool | str = False,
    labels: Tensor | None = None,
) -> ProgressiveResult:
    """Halve the DDIM steps of ``teacher`` ``rounds`` times (Salimans & Ho 2022, Alg. 2).

    Args:
        teacher: any score model (an exact oracle too, when ``student`` is given).
        data: clean data ``(N, *D)``, or ``fn(batch, generator)`` returning ``x0`` or
            ``(x0, labels)``.
        ts: the teacher's DDIM grid (``N + 1`` decreasing times, ``N`` divisible by
            ``2**rounds``), e.g. ``time_grid(sde, 8, "logsnr")``.
        rounds: halvings; each round's student starts from (a copy of) its teacher.
        student: the first student (default: a copy of the teacher, as in the paper).
        steps, batch_size, lr: AdamW settings of each round (cosine decay).
        ema_decay: decay of the weight average that becomes the next teacher.
        weighting: ``truncated_snr`` (``max(SNR, 1)``, the paper's) or ``uniform``.
        generator: RNG of data, times and noise.
        progress: report progress.
        labels: class labels ``(N,)`` of a tensor ``data``, for a class-conditional teacher: each
            pair's label is passed to teacher and student alike, so the student learns the
            teacher's *conditional* two-step map (Salimans & Ho 2022, Sec. 4, distil the
            conditional model).

    Raises:
        ValueError: a grid whose step count is not divisible by ``2**rounds``, a bad weighting,
            or a teacher without parameters and no student.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if weighting not in PROGRESSIVE_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(PROGRESSIVE_WEIGHTINGS)}")
    ts = check_grid(ts, teacher.sde)
    n = ts.numel() - 1
    if n % (2**rounds) != 0:
        raise ValueError(f"{rounds} halving(s) need a grid of a multiple of {2**rounds} steps, got {n}")
    if labels is not None and (callable(data) or labels.shape[0] != data.shape[0]):
        raise ValueError("labels need a tensor data of the same length (a callable data returns (x0, y))")
    if student is None and not any(True for _ in teacher.parameters()):
        raise ValueError(
            "the teacher has no parameters to copy into a student (an exact oracle?): pass student=..."
        )
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    done: list[ProgressiveRound] = []
    current_teacher = teacher
    for k in range(rounds):
        grid = ts[:: 2**k]
        pupil = student if (k == 0 and student is not None) else copy.deepcopy(current_teacher)
        current_teacher.eval()
        for p in pupil.parameters():
            p.requires_grad_(True)
        ema = EMA(pupil, ema_decay)

        def step_loss(step: int, pupil=pupil, grid=grid, teacher_k=current_teacher) -> Tensor:
            x0, y = _draw(data, labels, batch_size, g)
            return progressive_loss(pupil, teacher_k, x0, grid, y=y, generator=g, weighting=weighting)

        def update_ema(e: EMA = ema, m: ScoreFunction = pupil) -> None:
            e.update(m)

        pupil.train()
        run = optimize(
            pupil.parameters(),
            step_loss,
            steps,
            lr,
            after_step=update_ema,
            progress=progress,
            desc=f"round {k + 1}/{rounds}",
        )
        pupil.eval()
        done.append(ProgressiveRound(grid.numel() - 1, (grid.numel() - 1) // 2, run.losses, run.seconds))
        current_teacher = ema.module
        for p in current_teacher.parameters():
            p.requires_grad_(False)
    final = ts[:: 2**rounds]
    return ProgressiveResult(current_teacher, final, final.numel() - 1, done)
