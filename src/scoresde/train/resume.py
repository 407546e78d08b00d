"""Which checkpoint a resumed run continues from, and the training settings it recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["resume_path", "resumed_settings"]


def resume_path(resume: str, out: str | Path, name: str) -> Path | None:
    """The checkpoint ``resume`` names, or ``None`` for none.

    ``resume`` is ``""`` (no resume), ``"auto"`` (``<out>/<name>/checkpoints/last.safetensors``),
    a run folder (its ``checkpoints/last.safetensors``) or a checkpoint file.
    """
    if not resume:
        return None
    if resume == "auto":
        return Path(out) / name / "checkpoints" / "last.safetensors"
    path = Path(resume)
    return path / "checkpoints" / "last.safetensors" if path.is_dir() else path


def resumed_settings(path: Path) -> dict[str, Any]:
    """The :class:`~scoresde.train.config.TrainConfig` fields recorded in the checkpoint at
    ``path`` (a missing or corrupt ``last.safetensors``: the newest intact step checkpoint's);
    options the checkpoint predates take their :data:`~scoresde.train.config.LEGACY_VALUES`."""
    from scoresde.io.checkpoint import read_checkpoint_metadata, resume_checkpoint
    from scoresde.train.config import LEGACY_VALUES, TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    path, _ = resume_checkpoint(path)
    saved = {**LEGACY_VALUES, **read_checkpoint_metadata(path).get("train", {})}
    return {k: v for k, v in saved.items() if k in fields}
