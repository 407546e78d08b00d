"""Which checkpoint a resumed run continues from, and the training settings it recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from scoresde.io.checkpoint import read_checkpoint_metadata, resume_checkpoint
from scoresde.io.run_folder import RunFolder
from scoresde.train.config import TrainConfig
from scoresde.train.legacy import saved_train_config

__all__ = ["resume_path", "resumed_settings"]


def resume_path(resume: str, out: str | Path, name: str) -> Path | None:
    """The checkpoint ``resume`` names, or ``None`` for none.

    ``resume`` is ``""`` (no resume), ``"auto"`` (``<out>/<name>/checkpoints/last.safetensors``),
    a run folder (its ``checkpoints/last.safetensors``) or a checkpoint file.
    """
    if not resume:
        return None
    if resume == "auto":
        return RunFolder(Path(out) / name).last
    return RunFolder.resolve(resume)


def resumed_settings(path: Path) -> dict[str, Any]:
    """The :class:`~scoresde.train.config.TrainConfig` fields recorded in the checkpoint at
    ``path`` (a missing or corrupt ``last.safetensors``: the newest intact step checkpoint's);
    options the checkpoint predates take their :data:`~scoresde.train.legacy.LEGACY_VALUES`."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    path, _ = resume_checkpoint(path)
    saved = saved_train_config(read_checkpoint_metadata(path))
    return {k: v for k, v in saved.items() if k in fields}
