"""The run folder: the one owner of its layout, its lock, atomic writes and ``last``.

A training run writes everything into ``<out>/<name>/``::

    checkpoints/step_0000100.safetensors   one per save
    checkpoints/last.safetensors           a copy of the newest, replaced atomically
    config.json                            the run's record (written once, never by a resume)
    metrics.jsonl                          one JSON line per log interval / evaluation
    samples/step_0000100.png               evaluation grids
    tensorboard/                           when tensorboard is installed
    .lock                                  the holder of the folder (:mod:`scoresde.io.runlock`)

Every reader (``load_checkpoint``, ``checkpoint_file``, ``--resume``, the commands' default
output folders) resolves "a run folder or a checkpoint file" through :meth:`RunFolder.resolve`,
and every writer goes through :func:`write_atomically`, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoresde.io.runlock import RunLock

__all__ = ["RunFolder", "clean_temp_files", "file_mode", "write_atomically"]

CHECKPOINTS = "checkpoints"
LAST = "last.safetensors"


def file_mode() -> int:
    """``0o666`` less the process umask: the mode an ordinary new file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomically(path: str | Path, write: Callable[[str], object]) -> Path:
    """Write ``path`` through ``write(temporary_name)``, then rename the result over ``path``.

    The temporary file lies in the target's folder under a name unique to this process and call
    (``.<name>.<pid>.<random>.tmp``); it is given the ordinary file mode, flushed to disk
    (``fsync``) and renamed with :func:`os.replace`, which is atomic on local file systems.  On any
    failure the temporary file is removed and the target is untouched; the error propagates.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; written files get the usual mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_temp_files(folder: str | Path) -> list[Path]:
    """Remove orphaned ``.*.tmp`` files of interrupted :func:`write_atomically` calls in ``folder``.

    Only safe while the caller owns the folder (its :class:`~scoresde.io.runlock.RunLock`).
    Returns the files removed.
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


@dataclass(frozen=True)
class RunFolder:
    """The folder ``root`` of one training run (see the module docstring for its layout)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # ---- layout ---------------------------------------------------------------------------- #
    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last(self) -> Path:
        """``checkpoints/last.safetensors``: the newest checkpoint of the run."""
        return self.checkpoints / LAST

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.safetensors"

    def sample_grid(self, step: int) -> Path:
        return self.root / "samples" / f"step_{step:07d}.png"

    # ---- resolution ------------------------------------------------------------------------ #
    @staticmethod
    def resolve(path: str | Path) -> Path:
        """The checkpoint file ``path`` names: a run folder's ``checkpoints/last.safetensors``
        (whether or not it exists: callers word their own errors), else ``path`` itself."""
        p = Path(path)
        return RunFolder(p).last if p.is_dir() else p

    @staticmethod
    def of_checkpoint(checkpoint: str | Path) -> RunFolder:
        """The run folder of a checkpoint at ``<run>/checkpoints/<file>`` (else the file's folder)."""
        parent = Path(checkpoint).parent
        return RunFolder(parent.parent if parent.name == CHECKPOINTS else parent)

    # ---- ownership ------------------------------------------------------------------------- #
    def lock(self) -> RunLock:
        """The folder's lock (not yet taken: ``with folder.lock(): ...``)."""
        return RunLock(self.root)

    def previous_run(self) -> list[Path]:
        """The files that show a run was made here (checkpoints, ``config.json``, ``metrics.jsonl``)."""
        found = sorted(self.checkpoints.glob("*.safetensors")) if self.checkpoints.is_dir() else []
        return found + [p for p in (self.config, self.metrics) if p.exists()]

    def prepare(self, resuming: bool, overwrite: bool) -> None:
        """Make the folder ready for a run (call while holding :meth:`lock`).

        A folder that holds a run is refused unless the run is resumed or ``overwrite`` is set
        (then its results are removed as a whole); orphaned temporary files are removed.

        Raises:
            FileExistsError: the folder holds a run and neither ``resuming`` nor ``overwrite``.
        """
        previous = self.previous_run()
        if previous and not resuming:
            if not overwrite:
                raise FileExistsError(
                    f"the run folder {self.root} already holds a run ({len(previous)} file(s), e.g. "
                    f"{previous[0].name}); resume it, or pass overwrite to replace it, or choose another name"
                )
            for p in previous:
                p.unlink(missing_ok=True)
            for folder in (self.root / "samples", self.tensorboard):
                if folder.is_dir():
                    shutil.rmtree(folder)
        self.root.mkdir(parents=True, exist_ok=True)
        clean_temp_files(self.checkpoints)

    # ---- writes ---------------------------------------------------------------------------- #
    def write_record(self, config: dict[str, Any]) -> None:
        """Write ``config.json``, the record of how the run was made, unless it exists already
        (a resumed run keeps its record)."""
        if not self.config.exists():
            text = json.dumps(config, indent=2)
            write_atomically(self.config, lambda tmp: Path(tmp).write_text(text))

    def publish_last(self, checkpoint: Path) -> Path:
        """Make ``checkpoints/last.safetensors`` an (atomically replaced) copy of ``checkpoint``."""
        return write_atomically(self.last, lambda tmp: shutil.copyfile(checkpoint, tmp))
