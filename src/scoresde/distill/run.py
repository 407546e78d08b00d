"""A consistency distillation *run*: a teacher checkpoint distilled into a run folder, resumable.

:func:`scoresde.distill.distill` is the loop for the API (tensors in, a model out).  A run of
``scoresde distill`` needs what ``scoresde train`` has: a run folder (layout, lock, atomic writes,
``last``: :class:`~scoresde.io.run_folder.RunFolder`), periodic safetensors checkpoints
(:class:`~scoresde.train.checkpointer.Checkpointer`), ``metrics.jsonl``
(:class:`~scoresde.train.logger.RunLogger`), the learning-rate schedule
(:class:`~scoresde.train.schedule.LRSchedule`), the weight average
(:class:`~scoresde.train.ema.EMA`) and an exact resume.  :class:`Distiller` puts the consistency
distillation objective (Song et al. 2023, Alg. 2; :class:`~scoresde.distill.ConsistencyLoss`)
into those parts.

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde._core.progress import make_progress
from scoresde._core.seeds import derive_seed
from scoresde.distill.consistency import DISTANCES, WEIGHTINGS, ConsistencyLoss, ConsistencyModel
from scoresde.io.run_folder import RunFolder
from scoresde.sampling.grids import time_grid
from scoresde.train.checkpointer import Checkpointer
from scoresde.train.config import SCHEDULES
from scoresde.train.ema import EMA
from scoresde.train.logger import LossWindow, RunLogger
from scoresde.train.optim import adamw, gradient_norm
from scoresde.train.schedule import LRSchedule

__all__ = ["DISTILL_RESUMABLE_KEYS", "DistillConfig", "DistillRunResult", "Distiller", "consistency_extra"]

DISTILL_RESUMABLE_KEYS = frozenset({"steps", "out", "name", "log_every", "save_every", "progress"})
"""Options that may differ between a distillation checkpoint and the run that resumes it."""


@dataclass
class DistillConfig:
    """The settings of a consistency distillation run (``scoresde distill``).

    Attributes:
        teacher: the teacher's checkpoint file or run folder (``scoresde train``).
        raw_teacher: use the teacher's raw weights instead of its EMA weights.
        data: the data the student sees (default: the teacher's training split of it; see
            :func:`scoresde.data.heldout.load_model_data`).
        steps: optimiser steps (the total: a resumed run continues to it).
        batch_size: images per step.
        lr, warmup, schedule, final_lr: AdamW's learning rate and its schedule
            (:class:`~scoresde.train.schedule.LRSchedule`; constant as in Song et al. 2023).
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip the gradient norm (``None``: no clipping).
        num_scales: ``N``, the steps of the EDM grid (``rho = 7``) between ``T`` and ``t_min``
            whose adjacent points are paired (Song et al. 2023 use 18 on CIFAR-10).
        solver: the teacher's ODE step (a fixed-step deterministic key of :data:`scoresde.SAMPLERS`).
        distance, weighting, groups: of :class:`~scoresde.distill.ConsistencyLoss`.
        ema_decay: decay of the student's weight average (the weights sampled).
        seed: seed of every random draw.
        save_every, log_every: checkpoint and ``metrics.jsonl`` intervals (steps).
        out, name: the run folder is ``<out>/<name>``.
        overwrite: replace an earlier run in that folder.
        progress: show a progress bar.
    """

    teacher: str
    raw_teacher: bool = False
    data: str = "digits"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    warmup: int = 0
    schedule: str = "constant"
    final_lr: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    num_scales: int = 18
    solver: str = "heun"
    distance: str = "l2"
    weighting: str = "uniform"
    groups: int = 4
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
        for key in ("steps", "batch_size", "num_scales", "groups", "save_every", "log_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {list(SCHEDULES)}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {list(DISTANCES)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {list(WEIGHTINGS)}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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


class Distiller:
    """Distil a teacher checkpoint into a consistency model, in a run folder.

    Args:
        config: the run's :class:`DistillConfig`.
        device: where the teacher and student run.
    """

    def __init__(self, config: DistillConfig, device: torch.device | str = "cpu") -> None:
        from scoresde.data.heldout import load_model_data
        from scoresde.io.checkpoint import load_checkpoint
        from scoresde.io.info import checkpoint_file

        self.config = c = config
        self.device = torch.device(device)
        ckpt = load_checkpoint(checkpoint_file(c.teacher), ema=not c.raw_teacher, device=self.device)
        self.teacher_info = info = ckpt.info
        self.teacher = ckpt.model.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        # The student starts as the teacher's denoiser: f = c_skip x_hat + (1 - c_skip) D.
        denoiser = copy.deepcopy(self.teacher)
        for p in denoiser.parameters():
            p.requires_grad_(True)
        self.student = ConsistencyModel(denoiser)
        # The teacher's own training split: the student never sees its held-out data.
        data = load_model_data(c.data, info, 10**9, c.seed, split="train")
        self.x_data = data.x.to(self.device)
        self.y_data = None if (info.num_classes is None or data.y is None) else data.y.to(self.device)
        ts = time_grid(self.teacher.sde, c.num_scales, "edm", t_end=self.student.t_min)
        self.loss = ConsistencyLoss(ts, self.teacher, c.solver, c.distance, c.weighting, c.groups)
        self.ema = EMA(denoiser, c.ema_decay)
        self.optimizer = adamw(denoiser.parameters(), c.lr, c.weight_decay, self.device)
        self.schedule = LRSchedule(c.lr, c.warmup, c.schedule, c.final_lr, c.steps)
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
            resumable=DISTILL_RESUMABLE_KEYS,
        )
        self.step = 0
        self.resumed_from: Path | None = None
        self.last_lr = c.lr

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
    def model(self) -> ConsistencyModel:
        """The EMA student (the one to sample with ``method="consistency"``)."""
        return ConsistencyModel(self.ema.module, self.student.sigma_data, self.student.t_min)

    # ---- one step ------------------------------------------------------------------------- #
    def train_step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(loss, gradient norm)`` as 0-d tensors."""
        c, step = self.config, self.step
        g = torch.Generator(device="cpu").manual_seed(derive_seed(c.seed, step, 0))
        torch.manual_seed(derive_seed(c.seed, step, 1))  # dropout masks
        idx = torch.randint(0, self.x_data.shape[0], (c.batch_size,), generator=g).to(self.device)
        x0 = self.x_data[idx]
        y = None if self.y_data is None else self.y_data[idx]
        self.last_lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        self.student.train()
        # mu = 0: the target network is the student under a stop gradient (Song & Dhariwal 2023).
        loss = self.loss(self.student, self.student, x0, y, generator=g)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = gradient_norm(self.student.parameters(), c.grad_clip)
        self.optimizer.step()
        self.ema.update(self.student.denoiser)
        self.step += 1
        return loss.detach(), grad_norm.detach()

    def save(self) -> Path:
        return self.checkpointer.save(self.step)

    def resume(self, path: str | Path) -> int:
        """Load the student, its EMA and the optimiser state from a checkpoint; returns its step.

        Raises:
            ValueError: ``steps`` not beyond the checkpoint's step, or settings that differ from
                the checkpoint's in anything but :data:`DISTILL_RESUMABLE_KEYS`.
        """
        self.step = self.checkpointer.restore(path, self.device, self.config.steps)
        self.resumed_from = self.checkpointer.last
        return self.step

    # ---- the loop ------------------------------------------------------------------------- #
    def fit(self) -> DistillRunResult:
        """Distil from ``self.step`` to ``config.steps``, logging and saving on schedule.

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
        bar = make_progress(c.progress, c.steps, c.name, initial=self.step)
        window = LossWindow()
        seconds, start, checkpoint = 0.0, self.step, None
        while self.step < c.steps:
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step()
            seconds += time.perf_counter() - t0
            window.add(loss)
            last = self.step == c.steps
            postfix: dict[str, str] = {}
            if self.step % c.log_every == 0 or last:
                mean = float(window.mean())
                postfix["loss"] = f"{mean:.4g}"
                done = self.step - start
                logger.log_train(
                    self.step, mean, float(grad_norm), self.last_lr, done, seconds, c.batch_size, 0
                )
            bar.update(1, **postfix)
            if self.step % c.save_every == 0 or last:
                checkpoint = self.save()
        bar.close()
        return DistillRunResult(
            self.step, window.history(), seconds, self.folder.root, checkpoint, self.extra
        )
