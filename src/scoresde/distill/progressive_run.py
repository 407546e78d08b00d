"""A progressive distillation *run* (``scoresde distill --method progressive``), resumable.

:func:`scoresde.distill.progressive_distill` is the API (tensors in, a model out); this is the
same objective (Salimans & Ho 2022, Alg. 2; :func:`~scoresde.distill.progressive_loss`) in the
run folder, checkpoints, ``metrics.jsonl`` and exact resume of
:class:`~scoresde.distill.run.Distiller`, whose loop (:class:`~scoresde.distill.run.DistillRun`)
it shares.

The first teacher (the checkpoint) takes ``teacher_steps`` DDIM steps on its ``grid`` (log-SNR by
default); round ``k = 0 .. rounds - 1`` trains, for ``steps`` optimiser steps, a student that
starts as a copy of its teacher to take in one DDIM step what the teacher takes in two, on every
``2**k``-th time of that grid; the round's EMA student becomes the next round's teacher.  The run's
step counter is global (``k * steps + s``); the learning rate follows its schedule within each
round (linear to 0 by default, as in the paper) and each round starts a fresh AdamW state and EMA,
as :func:`~scoresde.distill.progressive_distill` does.

Exact resume: every random draw of round ``k``'s step ``s`` (data indices, grid indices, noise,
dropout masks) comes from seeds derived from ``(seed, k, s)``
(:func:`~scoresde._core.seeds.derive_seed`); a checkpoint holds the student, its EMA, the
optimiser state and, from round 1 on, the round's teacher (``teacher.*`` tensors: the previous
round's EMA student), so a run resumed mid-round continues bit for bit (one machine, same thread
count).  A checkpoint at a round's end holds that round's EMA student, which the resumed run turns
into the next round's teacher exactly as an uninterrupted one does.

Every checkpoint is an ordinary score-model checkpoint whose EMA weights are the current round's
student, with ``extra["progressive"] = {"steps", "grid", "grid_name", "round", "rounds",
"teacher_steps"}``: the DDIM steps and the times it samples on (``grid``, ``steps + 1`` decreasing
times).  :func:`scoresde.io.loaded.load_model` reads it, so ``scoresde sample --checkpoint RUN``
samples the student with DDIM on exactly that grid.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde.distill.progressive import progressive_loss
from scoresde.distill.run import DistillConfig, DistillRun, load_teacher, teacher_data
from scoresde.io.run_folder import RunFolder
from scoresde.models.wrapper import ScoreModel
from scoresde.sampling.grids import time_grid
from scoresde.train.checkpointer import Checkpointer
from scoresde.train.ema import EMA
from scoresde.train.optim import adamw

__all__ = ["PROGRESSIVE_RESUMABLE_KEYS", "ProgressiveDistiller", "progressive_extra"]

PROGRESSIVE_RESUMABLE_KEYS = frozenset({"rounds", "out", "name", "log_every", "save_every", "progress"})
"""Options that may differ between a progressive checkpoint and the run that resumes it: more
``rounds`` continue the halving (``teacher_steps`` must stay divisible by ``2**rounds``); ``steps``
(per round) may not change, it places the rounds' boundaries."""

_TEACHER = "teacher"
"""The tensor-name prefix of a round's teacher in a checkpoint."""


def progressive_extra(grid: Tensor, config: DistillConfig, round_index: int) -> dict[str, Any]:
    """The checkpoint entry of round ``round_index``'s student (``extra["progressive"]``): it
    samples with ``steps`` DDIM steps on ``grid``."""
    return {
        "steps": grid.numel() - 1,
        "grid": [float(t) for t in grid.tolist()],
        "grid_name": config.grid,
        "round": round_index + 1,
        "rounds": config.rounds,
        "teacher_steps": config.teacher_steps,
    }


class ProgressiveDistiller(DistillRun):
    """Distil a teacher checkpoint by progressive distillation, in a run folder.

    Args:
        config: the run's :class:`~scoresde.distill.run.DistillConfig` (``method="progressive"``).
        device: where the teachers and students run.

    Raises:
        ValueError: not a progressive config, or a distilled student as the teacher.
    """

    student: ScoreModel

    def __init__(self, config: DistillConfig, device: torch.device | str = "cpu") -> None:
        if config.method != "progressive":
            raise ValueError(f"ProgressiveDistiller runs progressive distillation, not {config.method!r}")
        n = config.teacher_steps
        assert n is not None  # DistillConfig resolves it
        self.config = c = config
        self.device = torch.device(device)
        ckpt, self.first_teacher = load_teacher(c, self.device)
        self.teacher_info = info = ckpt.info
        self.x_data, self.y_data = teacher_data(c, info, self.device)
        self.ts = time_grid(self.first_teacher.sde, n, c.grid)
        self.folder = RunFolder(Path(c.out) / c.name)
        self.extra: dict[str, Any] = {"teacher": {"path": str(ckpt.path), "step": ckpt.step}}
        self.schedule = c.lr_schedule()  # within each round
        self._data_info = dict(ckpt.config.get("data", {}) or {})
        self.step = 0
        self.resumed_from = None
        self.last_lr = c.lr
        self.round = -1
        self._start_round(0, self.first_teacher)

    # ---- rounds --------------------------------------------------------------------------- #
    def _start_round(self, k: int, teacher: ScoreModel) -> None:
        """Round ``k``: ``teacher`` on every ``2**k``-th time of the first grid, a student that
        starts as its copy, a fresh EMA and AdamW state."""
        c = self.config
        self.round = k
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.grid = self.ts[:: 2**k]
        self.student = copy.deepcopy(teacher)
        for p in self.student.parameters():
            p.requires_grad_(True)
        self.ema = EMA(self.student, c.ema_decay)
        self.optimizer = adamw(self.student.parameters(), c.lr, c.weight_decay, self.device)
        self.extra["progressive"] = progressive_extra(self.grid[::2], c, k)
        self.checkpointer = Checkpointer(
            self.folder,
            self.student,
            self.ema,
            self.optimizer,
            self.record,
            self._data_info,
            extra=self.extra,
            resumable=PROGRESSIVE_RESUMABLE_KEYS,
            tensors=self._teacher_tensors,
        )

    def _teacher_tensors(self) -> dict[str, Tensor]:
        """The round's teacher, saved from round 1 on (round 0's is the teacher checkpoint)."""
        if self.round == 0:
            return {}
        return {f"{_TEACHER}.{k}": v for k, v in self.teacher.net.state_dict().items()}

    def _next_teacher(self) -> ScoreModel:
        """The finished round's EMA student, detached from it (the next round's teacher)."""
        return copy.deepcopy(self.ema.module)

    @property
    def total_steps(self) -> int:
        return self.config.rounds * self.config.steps

    @property
    def model(self) -> ScoreModel:
        """The EMA student of the current round (sample it with DDIM on ``grid[::2]``)."""
        return self.ema.module

    # ---- one step ------------------------------------------------------------------------- #
    def train_step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step of the round that holds ``self.step``; returns ``(loss, gradient
        norm)`` as 0-d tensors.  The first step of a round turns the last round's EMA student
        into its teacher."""
        c = self.config
        k, s = divmod(self.step, c.steps)
        if k != self.round:
            self._start_round(k, self._next_teacher())
        g, x0, y = self._begin_step(s, k, s)  # the schedule restarts in each round
        loss = progressive_loss(
            self.student, self.teacher, x0, self.grid, y=y, generator=g, weighting=str(c.weighting)
        )
        return self._finish_step(loss, self.ema, self.student)

    def resume(self, path: str | Path) -> int:
        """Load the round's teacher, the student, its EMA and the optimiser state from a
        checkpoint; returns its step.

        Raises:
            ValueError: ``rounds * steps`` not beyond the checkpoint's step, settings that
                differ from the checkpoint's in anything but :data:`PROGRESSIVE_RESUMABLE_KEYS`,
                or a checkpoint of round ``k >= 1`` without its teacher.
        """
        from scoresde.io.checkpoint import load_checkpoint, resume_checkpoint

        file, _ = resume_checkpoint(path)
        saved = load_checkpoint(file, ema=False, device=self.device)
        # The round of its last step (under its own steps per round: a changed --steps is refused
        # by the checkpointer's settings check below).
        per_round = int((saved.config.get("train") or {}).get("steps", self.config.steps))
        k = max(saved.step - 1, 0) // per_round
        if k > 0:
            state = {
                n[len(_TEACHER) + 1 :]: v for n, v in saved.tensors.items() if n.startswith(_TEACHER + ".")
            }
            if not state:
                raise ValueError(
                    f"{saved.path}: a progressive checkpoint of round {k + 1} without its teacher"
                )
            teacher = copy.deepcopy(self.first_teacher)
            teacher.net.load_state_dict(state)
            self._start_round(k, teacher)
        return super().resume(path)
