"""Saving and restoring the whole state of a training run: weights, EMA, optimiser, step, RNG.

A run's state is its weights, EMA weights (and counter), optimiser state, step and torch's global
RNG state; :class:`Checkpointer` writes all of it into one checkpoint
(:func:`~scoresde.io.checkpoint.save_checkpoint`) in the run folder's layout
(:class:`~scoresde.io.run_folder.RunFolder`) and reads it back for an exact continuation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from scoresde.io.checkpoint import CheckpointWriteError, load_checkpoint, resume_checkpoint, save_checkpoint
from scoresde.io.run_folder import RunFolder
from scoresde.models.wrapper import ScoreModel
from scoresde.nets import net_config
from scoresde.train.config import RESUMABLE_KEYS
from scoresde.train.ema import EMA
from scoresde.train.legacy import check_resumable, saved_net_config, saved_train_config

__all__ = ["Checkpointer"]


class Checkpointer:
    """Writes and reads the checkpoints of one run.

    Args:
        folder: the run folder.
        model: the trained model (its raw weights are saved).
        ema: the weight average.
        optimizer: the optimiser.
        train_config: the run's options as a dict (recorded in every checkpoint).
        data_info: a description of the training data.
        extra: further JSON metadata recorded in every checkpoint (``extra`` of
            :func:`~scoresde.io.checkpoint.save_checkpoint`), e.g. a distilled student's
            consistency parameters.
        resumable: the options that may differ between a checkpoint and the run resuming it.
        tensors: further named tensors saved in every checkpoint (``tensors`` of
            :func:`~scoresde.io.checkpoint.save_checkpoint`), e.g. a progressive distillation
            round's teacher; the caller reads them back.
    """

    def __init__(
        self,
        folder: RunFolder,
        model: ScoreModel,
        ema: EMA,
        optimizer: torch.optim.Optimizer,
        train_config: Callable[[], dict[str, Any]],
        data_info: dict[str, Any],
        extra: dict[str, Any] | None = None,
        resumable: frozenset[str] = RESUMABLE_KEYS,
        tensors: Callable[[], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        self.folder, self.model, self.ema, self.optimizer = folder, model, ema, optimizer
        self.train_config, self.data_info = train_config, data_info
        self.extra, self.resumable, self.tensors = extra, resumable, tensors
        self.last: Path | None = None  # the newest checkpoint written or read (known intact)

    def save(self, step: int, path: str | Path | None = None) -> Path:
        """Write ``checkpoints/step_XXXXXXX.safetensors`` and make ``last.safetensors`` a copy of
        it (or write only ``path`` when given).

        Raises:
            CheckpointWriteError: the write failed; its ``intact`` names the newest intact checkpoint.
        """
        target = Path(path) if path is not None else self.folder.step_checkpoint(step)
        try:
            save_checkpoint(
                target,
                self.model,
                ema=self.ema.module,
                ema_state={"decay": self.ema.decay, "num_updates": self.ema.num_updates},
                optimizer=self.optimizer,
                step=step,
                train_config=self.train_config(),
                data_info=self.data_info,
                rng={"torch_cpu": torch.get_rng_state()},
                extra=self.extra,
                tensors=None if self.tensors is None else self.tensors(),
            )
        except CheckpointWriteError as err:
            err.intact = self.last
            raise
        if path is None:
            try:
                self.folder.publish_last(target)
            except OSError as err:
                raise CheckpointWriteError(self.folder.last, err, intact=target) from err
            self.last = target
        return target

    def restore(
        self, path: str | Path, device: torch.device, planned_steps: int | None = None, warn: bool = True
    ) -> int:
        """Load weights, EMA, optimiser state and RNG state from a checkpoint; returns its step.

        ``path`` is a checkpoint or a run folder; a missing or corrupt ``last.safetensors`` falls
        back to the newest intact step checkpoint (with a warning on stderr when ``warn``).

        Raises:
            ValueError: ``planned_steps`` (the run's total) is not beyond the checkpoint's step
                (nothing is loaded then), or the checkpoint's options differ from this run's in anything but
                :data:`~scoresde.train.config.RESUMABLE_KEYS`, or its network differs.
        """
        path, note = resume_checkpoint(path)
        if note is not None and warn:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        ckpt = load_checkpoint(path, ema=False, device=device)
        if planned_steps is not None and planned_steps <= ckpt.step:
            raise ValueError(
                f"steps {planned_steps}: the checkpoint {ckpt.path} is at step {ckpt.step} already; "
                f"a resumed run continues to a total of steps > {ckpt.step} (nothing was changed)"
            )
        check_resumable(
            str(ckpt.path),
            saved_train_config(ckpt.config),
            self.train_config(),
            saved_net_config(ckpt.config),
            net_config(self.model.net),
            self.resumable,
        )
        self.model.net.load_state_dict(ckpt.net_state())
        ema_state = ckpt.ema_state()
        if ema_state is not None:
            self.ema.module.net.load_state_dict(ema_state)
            self.ema.num_updates = int(ckpt.config["ema"].get("num_updates", ckpt.step))
        opt_state = ckpt.optimizer_state()
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        rng = ckpt.rng_state("torch_cpu")
        if rng is not None:
            torch.set_rng_state(rng.cpu())
        self.last = Path(ckpt.path)
        return ckpt.step
