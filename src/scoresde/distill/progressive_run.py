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

A time budget (``minutes``) is the whole run's, a resume included, split equally over the rounds
still to run: round ``k`` starts with ``S_k`` seconds of the run spent and gets the share
``(60 minutes - S_k) / (rounds - k)`` (so time a round leaves unused by ending at ``steps`` goes
to the later ones); it ends at whichever of ``steps`` or its share comes first, its learning rate
decaying over the share's spent fraction when that ends first
(:class:`~scoresde.train.schedule.TimeBudget`, :class:`~scoresde.train.schedule.LRSchedule`),
and its end is saved.  Every round takes at least one step, so a round cut short by time still
leaves a valid student for its grid.  Round ``k`` then starts at the global step ``k0`` where the
last one ended (no longer ``k * steps``) and its step ``s`` is ``k0 + s``.

Exact resume: every random draw of round ``k``'s step ``s`` (data indices, grid indices, noise,
dropout masks) comes from seeds derived from ``(seed, k, s)``
(:func:`~scoresde._core.seeds.derive_seed`); a checkpoint holds the student, its EMA, the
optimiser state and, from round 1 on, the round's teacher (``teacher.*`` tensors: the previous
round's EMA student), so a run resumed mid-round continues bit for bit (one machine, same thread
count).  A checkpoint at a round's end holds that round's EMA student, which the resumed run turns
into the next round's teacher exactly as an uninterrupted one does.  A budgeted run resumes into
the right round with the rest of its share (the checkpoint records the round's first step and
the seconds spent), but not bit for bit: time places its rounds' ends.

Every checkpoint is an ordinary score-model checkpoint whose EMA weights are the current round's
student, with ``extra["progressive"] = {"steps", "grid", "grid_name", "round", "rounds",
"teacher_steps"}``: the DDIM steps and the times it samples on (``grid``, ``steps + 1`` decreasing
times).  :func:`scoresde.io.loaded.load_model` reads it, so ``scoresde sample --checkpoint RUN``
samples the student with DDIM on exactly that grid.  The same entry records where the run stands
(:func:`progressive_clock`): ``round_start`` (the global step before the round's first),
``round_done`` (the checkpoint ends its round), ``round_seconds`` and ``run_seconds`` (wall
seconds spent in the round and in the run).
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
from scoresde.parallel.process_group import DistInfo
from scoresde.sampling.grids import time_grid
from scoresde.train.checkpointer import Checkpointer
from scoresde.train.ema import EMA
from scoresde.train.optim import adamw
from scoresde.train.schedule import TimeBudget

__all__ = ["PROGRESSIVE_RESUMABLE_KEYS", "ProgressiveDistiller", "progressive_clock", "progressive_extra"]

PROGRESSIVE_RESUMABLE_KEYS = frozenset(
    {"rounds", "minutes", "out", "name", "log_every", "save_every", "progress"}
)
"""Options that may differ between a progressive checkpoint and the run that resumes it: more
``rounds`` continue the halving (``teacher_steps`` must stay divisible by ``2**rounds``), another
``minutes`` budget re-divides what is left of it; ``steps`` (per round) may not change, it places
the rounds' boundaries."""

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


def progressive_clock(
    entry: dict[str, Any], step: int, steps_per_round: int
) -> tuple[int, int, bool, float, float]:
    """Where a checkpoint of step ``step`` stands, from its ``extra["progressive"]``: ``(round
    index k, global step before the round's first, whether the checkpoint ends the round, seconds
    spent in the round, seconds spent in the run)``.  Checkpoints older than the time budget
    record none of it: their rounds are ``steps_per_round`` long and their seconds unknown (0)."""
    if "round_start" not in entry:
        k = max(step - 1, 0) // steps_per_round
        return k, k * steps_per_round, step - k * steps_per_round >= steps_per_round, 0.0, 0.0
    return (
        int(entry["round"]) - 1,
        int(entry["round_start"]),
        bool(entry["round_done"]),
        float(entry["round_seconds"]),
        float(entry["run_seconds"]),
    )


class ProgressiveDistiller(DistillRun):
    """Distil a teacher checkpoint by progressive distillation, in a run folder.

    Args:
        config: the run's :class:`~scoresde.distill.run.DistillConfig` (``method="progressive"``).
        device: where the teachers and students run.

    Attributes:
        round: the current round's index ``k`` (0-based).
        round_start: the global step before the round's first (``k * steps`` without a budget).
        round_done: the last step taken ended the round (the next step starts the next one).

    Raises:
        ValueError: not a progressive config, or a distilled student as the teacher.
    """

    student: ScoreModel
    round: int
    round_start: int
    round_done: bool

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
        self._before_round = 0.0  # seconds of the run spent before the round started
        self._open_round_budget()

    # ---- rounds --------------------------------------------------------------------------- #
    def _start_round(self, k: int, teacher: ScoreModel) -> None:
        """Round ``k``: ``teacher`` on every ``2**k``-th time of the first grid, a student that
        starts as its copy, a fresh EMA and AdamW state; the round starts after the current step."""
        c = self.config
        self.round, self.round_start, self.round_done = k, self.step, False
        self._round_elapsed = 0.0  # seconds spent in the round before the budget's clock started
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
        """The last step the run can reach: ``rounds * steps`` without a budget, less where
        rounds ended early."""
        c = self.config
        if self.round_done:
            return self.step + (c.rounds - self.round - 1) * c.steps
        return self.round_start + (c.rounds - self.round) * c.steps

    # ---- the time budget ------------------------------------------------------------------ #
    def _open_round_budget(self) -> None:
        """The round's share of the run's budget: what the run had left as the round started,
        over the rounds still to run then; ``_round_elapsed`` seconds of it already used."""
        c, minutes = self.config, None
        if c.minutes is not None:
            share = (60.0 * c.minutes - self._before_round) / max(1, c.rounds - self.round)
            minutes = max(share, 1e-9) / 60.0  # none left: the round's first step ends it
        self.budget = TimeBudget(minutes, DistInfo(), self._round_elapsed)
        self.spent = self.budget.spent()

    def _run_seconds(self) -> float:
        """Wall seconds spent in the run (earlier calls included)."""
        return self._before_round + self.budget.seconds()

    def _open_budget(self) -> None:
        self._open_round_budget()

    def _time_left(self) -> float | None:
        c = self.config
        return None if c.minutes is None else 60.0 * c.minutes - self._run_seconds()

    def _after_step(self) -> tuple[bool, bool]:
        """The round ends at ``steps`` or at its share of the budget; the run with its last round.
        A budgeted round's end is saved."""
        c = self.config
        self.spent, self._round_elapsed = self.budget.spent(), self.budget.seconds()
        self.round_done = self.step - self.round_start >= c.steps or self.spent >= 1.0
        last = self.round_done and self.round >= c.rounds - 1
        return last or (self.round_done and c.minutes is not None), last

    def save(self) -> Path:
        """Checkpoint the step, with where the run stands (:func:`progressive_clock`)."""
        seconds = self.budget.seconds()
        self.extra["progressive"].update(
            round_start=self.round_start,
            round_done=self.round_done,
            round_seconds=seconds,
            run_seconds=self._before_round + seconds,
        )
        return super().save()

    @property
    def model(self) -> ScoreModel:
        """The EMA student of the current round (sample it with DDIM on ``grid[::2]``)."""
        return self.ema.module

    # ---- one step ------------------------------------------------------------------------- #
    def train_step(self, budget_spent: float = 0.0) -> tuple[Tensor, Tensor]:
        """One optimiser step of the current round, or of the next one once it is done; returns
        ``(loss, gradient norm)`` as 0-d tensors.  The first step of a round turns the last
        round's EMA student into its teacher and opens the round's share of the budget
        (``budget_spent``: the fraction of the current round's share used)."""
        c = self.config
        if self.round_done:
            self._before_round = self._run_seconds()
            self._start_round(self.round + 1, self._next_teacher())
            self._open_round_budget()
            budget_spent = 0.0
        k, s = self.round, self.step - self.round_start
        # The schedule restarts in each round.
        g, x0, y = self._begin_step(s, k, s, budget_spent=budget_spent)
        loss = progressive_loss(
            self.student, self.teacher, x0, self.grid, y=y, generator=g, weighting=str(c.weighting)
        )
        return self._finish_step(loss, self.ema, self.student)

    def resume(self, path: str | Path) -> int:
        """Load the round's teacher, the student, its EMA and the optimiser state from a
        checkpoint; returns its step.

        A budgeted run continues the checkpoint's round with the rest of its share (the share
        is re-derived from the round's start, so a changed ``minutes`` or ``rounds`` re-divides
        what was left then), or starts the next round after a round's end.

        Raises:
            ValueError: a checkpoint that ends the run's last round (or lies beyond
                ``rounds``), settings that differ from the checkpoint's in anything but
                :data:`PROGRESSIVE_RESUMABLE_KEYS`, or a checkpoint of round ``k >= 1`` without
                its teacher.
        """
        from scoresde.io.checkpoint import load_checkpoint, resume_checkpoint

        file, _ = resume_checkpoint(path)
        saved = load_checkpoint(file, ema=False, device=self.device)
        c = self.config
        # Its round (under its own steps per round: a changed --steps is refused by the
        # checkpointer's settings check below).
        per_round = int((saved.config.get("train") or {}).get("steps", c.steps))
        entry = (saved.config.get("extra") or {}).get("progressive") or {}
        k, start, done, round_seconds, run_seconds = progressive_clock(entry, saved.step, per_round)
        if k + int(done) >= c.rounds:
            where = "ends" if done and k + 1 == c.rounds else "lies beyond"
            raise ValueError(
                f"{saved.path} (step {saved.step}, round {k + 1}) {where} the run's {c.rounds} "
                f"round(s): resume with more --rounds to continue halving (nothing was changed)"
            )
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
        self.step, self.round_start, self.round_done = saved.step, start, done  # for total_steps
        self._round_elapsed, self._before_round = round_seconds, run_seconds - round_seconds
        self._open_round_budget()
        return super().resume(path)
