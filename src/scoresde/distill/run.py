"""A distillation *run*: a teacher checkpoint distilled into a run folder, resumable.

:func:`scoresde.distill.distill` is the loop for the API (tensors in, a model out).  A run of
``scoresde distill`` needs what ``scoresde train`` has: a run folder (layout, lock, atomic writes,
``last``: :class:`~scoresde.io.run_folder.RunFolder`), periodic safetensors checkpoints
(:class:`~scoresde.train.checkpointer.Checkpointer`), ``metrics.jsonl``
(:class:`~scoresde.train.logger.RunLogger`), the learning-rate schedule
(:class:`~scoresde.train.schedule.LRSchedule`), the weight average
(:class:`~scoresde.train.ema.EMA`) and an exact resume.  :class:`Distiller` puts the consistency
distillation objective (Song et al. 2023, Alg. 2; :class:`~scoresde.distill.ConsistencyLoss`)
into those parts; :class:`~scoresde.distill.progressive_run.ProgressiveDistiller` puts progressive
distillation (Salimans & Ho 2022) into the same parts (``DistillConfig(method="progressive")``;
:func:`~scoresde.distill.make.make_distiller` picks the class).

Every random draw of step ``k`` (data indices, the grid index ``n`` of each group, the noise,
dropout masks) comes from seeds derived from ``(seed, k)``
(:func:`~scoresde._core.seeds.derive_seed`), and a checkpoint holds the student's weights, their
EMA and the optimiser state, so a resumed run continues bit for bit (on one machine, same thread
count).  The target network is the student itself under a stop gradient (``mu = 0``, Song &
Dhariwal 2023), so it needs no state of its own.

The student is saved as an ordinary checkpoint of its denoiser (the teacher's network, fine-tuned)
with ``extra["consistency"] = {"sigma_data", "t_min"}``;
:func:`scoresde.io.loaded.load_model` (what ``scoresde sample`` reads) wraps such a checkpoint in
:class:`~scoresde.distill.ConsistencyModel`, so ``scoresde sample --checkpoint RUN --method
consistency --steps 2 --no-denoise`` draws from it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde._core.progress import make_progress
from scoresde._core.seeds import derive_seed
from scoresde.distill.consistency import DISTANCES, WEIGHTINGS, ConsistencyLoss, ConsistencyModel
from scoresde.distill.progressive import PROGRESSIVE_WEIGHTINGS
from scoresde.io.run_folder import RunFolder
from scoresde.models.wrapper import ScoreModel
from scoresde.parallel.process_group import DistInfo
from scoresde.sampling.grids import time_grid
from scoresde.train.checkpointer import Checkpointer
from scoresde.train.config import SCHEDULES
from scoresde.train.ema import EMA
from scoresde.train.logger import LossWindow, RunLogger
from scoresde.train.optim import adamw, gradient_norm
from scoresde.train.schedule import LRSchedule, TimeBudget

__all__ = [
    "DISTILL_METHODS",
    "DISTILL_RESUMABLE_KEYS",
    "DistillConfig",
    "DistillRun",
    "DistillRunResult",
    "Distiller",
    "consistency_extra",
    "load_teacher",
    "teacher_data",
]

DISTILL_RESUMABLE_KEYS = frozenset({"steps", "minutes", "out", "name", "log_every", "save_every", "progress"})
"""Options that may differ between a consistency distillation checkpoint and the run that resumes it."""

DISTILL_METHODS = ("consistency", "progressive")
"""What ``scoresde distill --method`` distils into."""

_ONE_PROCESS = DistInfo()
"""A distillation run is one process (the time budget's process group)."""

_PROGRESSIVE_ONLY = frozenset({"rounds", "teacher_steps", "grid"})
_CONSISTENCY_ONLY = frozenset({"num_scales", "solver", "distance", "groups"})

# The defaults that differ between the methods (``None`` in a DistillConfig: the method's).
_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "consistency": {"schedule": "constant", "final_lr": 0.1, "weighting": "uniform"},
    # Salimans & Ho 2022: the learning rate decays linearly to 0 in each round; truncated-SNR weight.
    "progressive": {"schedule": "linear", "final_lr": 0.0, "weighting": "truncated_snr"},
}


@dataclass
class DistillConfig:
    """The settings of a distillation run (``scoresde distill``).

    Attributes:
        teacher: the teacher's checkpoint file or run folder (``scoresde train``).
        method: ``consistency`` (Song et al. 2023) or ``progressive`` (Salimans & Ho 2022).
        raw_teacher: use the teacher's raw weights instead of its EMA weights.
        data: the data the student sees (default: the teacher's training split of it; see
            :func:`scoresde.data.heldout.load_model_data`).
        steps: optimiser steps (consistency: the total, a resumed run continues to it;
            progressive: per round).
        minutes: a wall-clock budget (``None``: none); the run stops at whichever of ``steps`` or
            ``minutes`` comes first, and a decaying learning-rate schedule decays over the
            budget's spent fraction when that ends first (as ``scoresde train --minutes``;
            :class:`~scoresde.train.schedule.TimeBudget`).  Consistency: the budget of this call
            (a resume gets ``minutes`` more), like training's.  Progressive: the whole run's,
            a resume included, split equally over the rounds still to run: each round ends at
            whichever of ``steps`` or its share comes first, its schedule decaying over that
            share (see :class:`~scoresde.distill.progressive_run.ProgressiveDistiller`).  Time
            then places the stops, so a budgeted run does not resume bit for bit.
        batch_size: images per step.
        lr, warmup, schedule, final_lr: AdamW's learning rate and its schedule
            (:class:`~scoresde.train.schedule.LRSchedule`; ``None``: the method's, constant as in
            Song et al. 2023, or linear to 0 within each round as in Salimans & Ho 2022).
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip the gradient norm (``None``: no clipping).
        num_scales: ``N``, the steps of the EDM grid (``rho = 7``) between ``T`` and ``t_min``
            whose adjacent points are paired (Song et al. 2023 use 18 on CIFAR-10).
        solver: the teacher's ODE step (a fixed-step deterministic key of :data:`scoresde.SAMPLERS`).
        distance, groups: of :class:`~scoresde.distill.ConsistencyLoss`.
        weighting: of :class:`~scoresde.distill.ConsistencyLoss` (default ``uniform``) or of
            :func:`~scoresde.distill.progressive_loss` (default ``truncated_snr``).
        rounds: progressive: halvings of the teacher's DDIM steps.
        teacher_steps: progressive: the first teacher's DDIM steps (``None``:
            ``2 * 2**rounds``, so that the last student takes 2); divisible by ``2**rounds``.
        grid: progressive: the first teacher's DDIM grid (a name of :data:`scoresde.GRIDS`);
            each student samples on every ``2**k``-th of its times.
        ema_decay: decay of the student's weight average (the weights sampled).
        seed: seed of every random draw.
        save_every, log_every: checkpoint and ``metrics.jsonl`` intervals (steps).
        out, name: the run folder is ``<out>/<name>``.
        overwrite: replace an earlier run in that folder.
        progress: show a progress bar.
    """

    teacher: str
    method: str = "consistency"
    raw_teacher: bool = False
    data: str = "digits"
    steps: int = 2000
    minutes: float | None = None
    batch_size: int = 64
    lr: float = 1e-4
    warmup: int = 0
    schedule: str | None = None
    final_lr: float | None = None
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    num_scales: int = 18
    solver: str = "heun"
    distance: str = "l2"
    weighting: str | None = None
    groups: int = 4
    rounds: int = 3
    teacher_steps: int | None = None
    grid: str = "logsnr"
    ema_decay: float = 0.999
    seed: int = 0
    save_every: int = 500
    log_every: int = 50
    out: str = "runs"
    name: str = "distill"
    overwrite: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ValueError("distillation needs a teacher: --checkpoint RUN (a `scoresde train` run folder)")
        if self.method not in DISTILL_METHODS:
            raise ValueError(
                f"unknown distillation method {self.method!r}; choose one of {list(DISTILL_METHODS)}"
            )
        for key, value in _METHOD_DEFAULTS[self.method].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.method == "progressive" and self.teacher_steps is None:
            self.teacher_steps = 2 * 2**self.rounds if isinstance(self.rounds, int) else None
        for key in ("steps", "batch_size", "num_scales", "groups", "save_every", "log_every", "rounds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.minutes is not None and not (
            isinstance(self.minutes, (int, float))
            and not isinstance(self.minutes, bool)
            and self.minutes > 0
            and math.isfinite(self.minutes)
        ):
            raise ValueError(f"minutes must be a positive, finite number of minutes, got {self.minutes!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {list(DISTANCES)}")
        weightings = WEIGHTINGS if self.method == "consistency" else PROGRESSIVE_WEIGHTINGS
        if self.weighting not in weightings:
            raise ValueError(
                f"unknown {self.method} weighting {self.weighting!r}; choose one of {list(weightings)}"
            )
        if self.method == "progressive":
            self._check_progressive()
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def _check_progressive(self) -> None:
        from scoresde.sampling.grids import GRIDS

        n = self.teacher_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"teacher_steps must be an integer >= 2, got {n!r}")
        if n % 2**self.rounds != 0:
            raise ValueError(
                f"teacher_steps {n} is not divisible by 2**rounds = {2**self.rounds}: {self.rounds} "
                f"halving(s) need a teacher grid of a multiple of {2**self.rounds} DDIM steps"
            )
        if self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r}; choose one of {list(GRIDS)}")

    def lr_schedule(self) -> LRSchedule:
        """The learning rate of step ``s`` of the run (consistency) or of a round (progressive:
        the schedule restarts each round)."""
        assert self.schedule is not None and self.final_lr is not None  # resolved by __post_init__
        return LRSchedule(self.lr, self.warmup, self.schedule, self.final_lr, self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The settings, without the other method's (a consistency run records what it did
        before progressive distillation existed, so that its older checkpoints resume)."""
        other = _PROGRESSIVE_ONLY if self.method == "consistency" else _CONSISTENCY_ONLY
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in other}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DistillConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class DistillRunResult:
    """What :meth:`Distiller.fit` returns."""

    step: int
    losses: list[float]
    seconds: float
    run_dir: Path
    checkpoint: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def consistency_extra(student: ConsistencyModel) -> dict[str, Any]:
    """The checkpoint entry that makes a loader wrap the saved denoiser in a
    :class:`ConsistencyModel` (``extra["consistency"]``)."""
    return {"sigma_data": student.sigma_data, "t_min": student.t_min}


def load_teacher(config: DistillConfig, device: torch.device) -> tuple[Any, ScoreModel]:
    """The teacher checkpoint of ``config`` and its model (EMA weights unless ``raw_teacher``),
    frozen and in eval mode.

    Raises:
        ValueError: the checkpoint is a distilled student: a consistency model has no
            probability-flow ODE (no score) to distil, and a progressive student is only valid
            on its own DDIM grid (resume its run with more ``--rounds`` instead).
    """
    from scoresde.io.checkpoint import load_checkpoint
    from scoresde.io.info import checkpoint_file

    ckpt = load_checkpoint(checkpoint_file(config.teacher), ema=not config.raw_teacher, device=device)
    extra = ckpt.config.get("extra") or {}
    if "consistency" in extra:
        raise ValueError(
            f"the teacher {ckpt.path} is a consistency model (a student of `scoresde distill`): it has "
            "no probability-flow ODE map (no score) to distil; give the checkpoint it was distilled from"
        )
    if "progressive" in extra:
        raise ValueError(
            f"the teacher {ckpt.path} is a progressive-distillation student, valid only on its own "
            f"{extra['progressive'].get('steps')}-step DDIM grid: resume its run with more --rounds instead"
        )
    teacher = ckpt.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return ckpt, teacher


def teacher_data(config: DistillConfig, info: Any, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``(x, y)``: the teacher's own training split of ``config.data`` (the student never sees its
    held-out data); ``y`` the labels of a class-conditional teacher, else ``None``."""
    from scoresde.data.heldout import load_model_data

    data = load_model_data(config.data, info, 10**9, config.seed, split="train")
    y = None if (info.num_classes is None or data.y is None) else data.y.to(device)
    return data.x.to(device), y


class DistillRun:
    """What every distillation run shares: its settings' record, the loop (logging and saving on
    schedule) and the checkpoints; a method's class adds ``train_step`` (and ``resume``).

    Attributes:
        config: the run's :class:`DistillConfig`.
        teacher_info: the teacher checkpoint's info.
        x_data, y_data: the training data the student sees (and its labels, for a conditional
            teacher).
        student: the model being trained.
        folder: the run folder.
        checkpointer: writes the run's checkpoints.
        extra: the JSON entry of every checkpoint (``extra``).
        step: optimiser steps taken (the run's global count).
    """

    config: DistillConfig
    device: torch.device
    teacher_info: Any
    x_data: Tensor
    y_data: Tensor | None
    student: torch.nn.Module
    folder: RunFolder
    checkpointer: Checkpointer
    extra: dict[str, Any]
    step: int
    resumed_from: Path | None
    last_lr: float
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    budget: TimeBudget
    spent: float

    def train_step(self, budget_spent: float = 0.0) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(loss, gradient norm)`` as 0-d tensors.  ``budget_spent``:
        the fraction of the time budget used so far (the learning rate decays over it too)."""
        raise NotImplementedError

    # ---- the parts of a step ---------------------------------------------------------------- #
    def _begin_step(
        self, lr_step: int, *key: int, budget_spent: float = 0.0
    ) -> tuple[torch.Generator, Tensor, Tensor | None]:
        """Seed the step ``key`` (its generator from ``(seed, *key, 0)``, torch's global RNG, for
        dropout masks, from ``(seed, *key, 1)``: a resumed run draws the same), set the learning
        rate of schedule step ``lr_step`` with ``budget_spent`` of the time budget used
        (:meth:`LRSchedule.__call__ <scoresde.train.schedule.LRSchedule.__call__>`), put the
        student in training mode; returns the generator and the step's batch ``(x0, y)`` (``y``
        ``None`` for an unconditional teacher)."""
        c = self.config
        g = torch.Generator(device="cpu").manual_seed(derive_seed(c.seed, *key, 0))
        torch.manual_seed(derive_seed(c.seed, *key, 1))
        idx = torch.randint(0, self.x_data.shape[0], (c.batch_size,), generator=g).to(self.device)
        self.last_lr = self.schedule(lr_step, budget_spent)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        self.student.train()
        return g, self.x_data[idx], None if self.y_data is None else self.y_data[idx]

    def _finish_step(self, loss: Tensor, ema: EMA, averaged: torch.nn.Module) -> tuple[Tensor, Tensor]:
        """Backward, clip, optimiser step, ``ema.update(averaged)``; counts the step and returns
        ``(loss, gradient norm)`` detached."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = gradient_norm(self.student.parameters(), self.config.grad_clip)
        self.optimizer.step()
        ema.update(averaged)
        self.step += 1
        return loss.detach(), grad_norm.detach()

    def record(self) -> dict[str, Any]:
        """The run's settings, with the teacher's data split (what :class:`CheckpointInfo` reads
        for held-out data: ``test_fraction``, ``data_seed``, ``label_dropout``)."""
        info = self.teacher_info
        return {
            **self.config.to_dict(),
            "test_fraction": info.test_fraction,
            "data_seed": info.data_seed,
            "label_dropout": info.label_dropout,
        }

    @property
    def total_steps(self) -> int:
        """The optimiser steps of the whole run."""
        return self.config.steps

    def save(self) -> Path:
        return self.checkpointer.save(self.step)

    def resume(self, path: str | Path) -> int:
        """Load the run's state from a checkpoint; returns its step.

        Raises:
            ValueError: the run's total steps not beyond the checkpoint's step, or settings that
                differ from the checkpoint's in anything its checkpointer lets differ.
        """
        self.step = self.checkpointer.restore(path, self.device, self.total_steps)
        self.resumed_from = self.checkpointer.last
        return self.step

    # ---- the time budget ------------------------------------------------------------------ #
    def _open_budget(self) -> None:
        """Start the clock of the time budget as :meth:`fit` starts: ``minutes`` of this call,
        as ``scoresde train``'s."""
        self.budget, self.spent = TimeBudget(self.config.minutes, _ONE_PROCESS), 0.0

    def _time_left(self) -> float | None:
        """The seconds of the budget left (``None``: no budget), for the progress bar."""
        c = self.config
        return None if c.minutes is None else 60.0 * c.minutes - self.budget.seconds()

    def _after_step(self) -> tuple[bool, bool]:
        """``(save, last)`` after a step: whether to save it besides the ``save_every`` interval,
        and whether it ends the run (``total_steps`` reached or the budget used up)."""
        self.spent = self.budget.spent()
        last = self.step >= self.total_steps or self.spent >= 1.0
        return last, last

    # ---- the loop ------------------------------------------------------------------------- #
    def fit(self) -> DistillRunResult:
        """Distil from ``self.step`` to ``config.steps``, logging and saving on schedule.

        With ``config.minutes`` set, the loop also stops at the first step that ends after the
        budget (see :class:`DistillConfig`); that step is saved like a final one.

        Raises:
            RunFolderBusyError: another live process writes into the same folder.
            FileExistsError: the folder holds a run and neither resume nor ``overwrite``.
        """
        c = self.config
        with self.folder.lock():
            self.folder.prepare(resuming=self.resumed_from is not None, overwrite=c.overwrite)
            self.folder.write_record(self.record())
            logger = RunLogger(self.folder.metrics, None)
            try:
                return self._fit(logger)
            finally:
                logger.close()

    def _fit(self, logger: RunLogger) -> DistillRunResult:
        c = self.config
        self._open_budget()
        bar = make_progress(
            c.progress, self.total_steps, c.name, initial=self.step, time_limit=self._time_left()
        )
        window = LossWindow()
        seconds, start, checkpoint, last = 0.0, self.step, None, False
        while self.step < self.total_steps and not last:
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step(self.spent)
            seconds += time.perf_counter() - t0
            window.add(loss)
            boundary, last = self._after_step()
            postfix: dict[str, str] = {}
            if self.step % c.log_every == 0 or last:
                mean = float(window.mean())
                postfix["loss"] = f"{mean:.4g}"
                done = self.step - start
                logger.log_train(
                    self.step, mean, float(grad_norm), self.last_lr, done, seconds, c.batch_size, 0
                )
            bar.update(1, **postfix)
            if self.step % c.save_every == 0 or boundary:
                checkpoint = self.save()
        bar.close()
        return DistillRunResult(
            self.step, window.history(), seconds, self.folder.root, checkpoint, self.extra
        )


class Distiller(DistillRun):
    """Distil a teacher checkpoint into a consistency model, in a run folder.

    Args:
        config: the run's :class:`DistillConfig`.
        device: where the teacher and student run.
    """

    student: ConsistencyModel

    def __init__(self, config: DistillConfig, device: torch.device | str = "cpu") -> None:
        if config.method != "consistency":
            raise ValueError(
                f"Distiller runs consistency distillation, not {config.method!r}: use make_distiller"
            )
        self.config = c = config
        self.device = torch.device(device)
        ckpt, self.teacher = load_teacher(c, self.device)
        self.teacher_info = info = ckpt.info
        # The student starts as the teacher's denoiser: f = c_skip x_hat + (1 - c_skip) D.
        denoiser = copy.deepcopy(self.teacher)
        for p in denoiser.parameters():
            p.requires_grad_(True)
        self.student = ConsistencyModel(denoiser)
        self.x_data, self.y_data = teacher_data(c, info, self.device)
        ts = time_grid(self.teacher.sde, c.num_scales, "edm", t_end=self.student.t_min)
        self.loss = ConsistencyLoss(ts, self.teacher, c.solver, c.distance, str(c.weighting), c.groups)
        self.ema = EMA(denoiser, c.ema_decay)
        self.optimizer = adamw(denoiser.parameters(), c.lr, c.weight_decay, self.device)
        self.schedule = c.lr_schedule()
        self.folder = RunFolder(Path(c.out) / c.name)
        self.extra = {
            "consistency": consistency_extra(self.student),
            "teacher": {"path": str(ckpt.path), "step": ckpt.step},
        }
        self.checkpointer = Checkpointer(
            self.folder,
            denoiser,
            self.ema,
            self.optimizer,
            self.record,
            dict(ckpt.config.get("data", {}) or {}),
            extra=self.extra,
            # "method": checkpoints older than progressive distillation do not record it.
            resumable=DISTILL_RESUMABLE_KEYS | {"method"},
        )
        self.step = 0
        self.resumed_from = None
        self.last_lr = c.lr

    @property
    def model(self) -> ConsistencyModel:
        """The EMA student (the one to sample with ``method="consistency"``)."""
        return ConsistencyModel(self.ema.module, self.student.sigma_data, self.student.t_min)

    # ---- one step ------------------------------------------------------------------------- #
    def train_step(self, budget_spent: float = 0.0) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(loss, gradient norm)`` as 0-d tensors (``budget_spent``:
        the fraction of the time budget used, for the learning rate)."""
        g, x0, y = self._begin_step(self.step, self.step, budget_spent=budget_spent)
        # mu = 0: the target network is the student under a stop gradient (Song & Dhariwal 2023).
        loss = self.loss(self.student, self.student, x0, y, generator=g)
        return self._finish_step(loss, self.ema, self.student.denoiser)

    def resume(self, path: str | Path) -> int:
        """Load the student, its EMA and the optimiser state from a checkpoint; returns its step.

        Raises:
            ValueError: ``steps`` not beyond the checkpoint's step, or settings that differ from
                the checkpoint's in anything but :data:`DISTILL_RESUMABLE_KEYS`.
        """
        return super().resume(path)
