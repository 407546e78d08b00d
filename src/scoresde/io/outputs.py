"""Output folders of a run: an earlier run's results are never overwritten or mixed silently.

The rule every ``scoresde`` command follows (and ``train`` for its run folders): a folder that
already holds the results of a run is refused unless ``overwrite`` is given, and ``overwrite``
replaces those results *as a whole*: the earlier run's result files are deleted before the new
run writes, so no mix of two runs (two PNG sets read as one by an external FID tool, a
``latents.npz`` of one run beside the ``encode.json`` of another) can remain.

Which entries of a folder are an earlier run's results:

- those recorded in the folder's record :data:`RECORD` (written when a run claims the folder,
  completed with the run's outputs when it ends; entries present before the claim are the
  user's and stay untouched),
- ``config.toml`` (every ``scoresde`` command saves its settings there, also before records
  existed),
- the entries matching the command's own output names (``samples_*``, ``latents.npz``, ...),
  whoever wrote them: a file the run would write over is never replaced silently.

Other files in the folder (notes, data the user keeps there) are neither results nor touched.
A run that fails before writing any result removes its claim again, so a corrected rerun into
the same folder is not refused.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MARKERS",
    "RECORD",
    "OutputExistsError",
    "OutputFolder",
    "check_output_dir",
    "finish_output_dir",
    "free_output_dir",
    "prepare_output_dir",
    "previous_results",
]

RECORD = ".scoresde-outputs.json"
"""The record of the run that claimed a folder: command, time, the entries that were there
before (``foreign``) and, once the run ended, its ``outputs``."""

MARKERS = ("config.toml",)
"""Entries that mark a folder as holding a ``scoresde`` run's results, record or not."""

_SHOWN = 6


class OutputExistsError(ValueError):
    """The output folder holds an earlier run's results and ``overwrite`` was not given (a usage
    error: the CLI exits with status 2)."""


@dataclass(frozen=True)
class OutputFolder:
    """A folder claimed by a run (:func:`prepare_output_dir`).

    Attributes:
        path: the folder.
        foreign: entries that were there before the claim and are not this run's.
        replaced: the earlier run's results deleted by ``overwrite`` (empty otherwise).
        created: whether the claim created the folder.
    """

    path: Path
    foreign: tuple[str, ...]
    replaced: tuple[str, ...] = ()
    created: bool = False


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _entries(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} - {RECORD}


def previous_results(path: str | Path, patterns: Sequence[str] = ()) -> list[str]:
    """The names of the earlier run's results in the folder ``path`` (see the module docstring).

    Args:
        path: the output folder (a missing folder holds none).
        patterns: ``fnmatch`` patterns of the names the coming run writes.

    Returns:
        Sorted entry names (files or folders directly in ``path``); ``[]`` for none.
    """
    path = Path(path)
    if not path.is_dir():
        return []
    names = _entries(path)
    found = {n for n in names if n in MARKERS or any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    record = _read_record(path)
    if record is not None:
        outputs = record.get("outputs")
        if isinstance(outputs, list):
            found |= names & {str(n) for n in outputs}
        else:  # a run that never finished: everything it found not there before is its own
            found |= names - {str(n) for n in record.get("foreign", [])}
    return sorted(found)


def _describe(path: Path, found: Sequence[str]) -> str:
    record = _read_record(path) or {}
    by = f"an earlier `scoresde {record['command']}` run" if record.get("command") else "an earlier run"
    shown = ", ".join(found[:_SHOWN]) + (f", ... ({len(found)} entries)" if len(found) > _SHOWN else "")
    return f"{path} already holds the results of {by} ({shown})"


def check_output_dir(
    path: str | Path, overwrite: bool, patterns: Sequence[str] = (), flag: str = "--out"
) -> None:
    """Refuse, before any work, a folder that holds an earlier run's results (read-only).

    Raises:
        OutputExistsError: ``path`` holds results and ``overwrite`` is false; the message names
            the folder, the results and the two ways out.
        NotADirectoryError: ``path`` exists and is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag}: {str(path)!r} exists and is not a folder; choose another {flag}")
    found = previous_results(path, patterns)
    if found and not overwrite:
        raise OutputExistsError(
            f"{flag}: {_describe(path, found)}; pass --overwrite to replace them (the earlier results "
            f"are deleted first, so no mixed set remains), or choose another {flag}"
        )


def prepare_output_dir(
    path: str | Path, overwrite: bool, patterns: Sequence[str] = (), command: str = "", flag: str = "--out"
) -> OutputFolder:
    """Claim ``path`` for a run: check it, delete the earlier results under ``overwrite``, create
    it and write its :data:`RECORD`.

    Args:
        path: the output folder (created with its parents if missing).
        overwrite: replace an earlier run's results (else they are refused).
        patterns: ``fnmatch`` patterns of the names the run writes (:func:`previous_results`).
        command: the command's name, kept in the record for later messages.
        flag: the option that named the folder, for messages.

    Returns:
        The claimed :class:`OutputFolder`; end the run with :func:`finish_output_dir`.

    Raises:
        OutputExistsError: ``path`` holds results and ``overwrite`` is false.
        NotADirectoryError: ``path`` exists and is not a folder.
    """
    path = Path(path)
    check_output_dir(path, overwrite, patterns, flag)
    replaced = previous_results(path, patterns)
    for name in replaced:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    foreign = tuple(sorted(_entries(path)))
    record = {"command": command, "started": _dt.datetime.now().isoformat(timespec="seconds")}
    (path / RECORD).write_text(json.dumps({**record, "foreign": list(foreign), "outputs": None}, indent=1))
    return OutputFolder(path, foreign, tuple(replaced), created)


def finish_output_dir(folder: OutputFolder, ok: bool = True) -> list[str]:
    """End a run in its claimed folder: record its outputs (the entries it added).

    A failed run (``ok`` false) that wrote nothing but its settings (``config.toml``) removes
    them and its record again (and the folder when the claim created it), so the folder is as
    before and a corrected rerun is not refused.

    Returns:
        The run's outputs as recorded (``[]`` after such a clean-up).
    """
    path = folder.path
    if not path.is_dir():
        return []
    outputs = sorted(_entries(path) - set(folder.foreign))
    if not ok and set(outputs) <= set(MARKERS) - set(folder.foreign):
        for name in [*outputs, RECORD]:
            (path / name).unlink(missing_ok=True)
        if folder.created and not any(path.iterdir()):
            path.rmdir()
        return []
    record = _read_record(path) or {}
    record.update(outputs=outputs, complete=bool(ok))
    (path / RECORD).write_text(json.dumps(record, indent=1))
    return outputs


def free_output_dir(default: str | Path, patterns: Sequence[str] = ()) -> Path:
    """``default`` if it holds no earlier results, else the first free ``<default>-2``, ``-3``, ...

    For folders the user did not name (``<run>/samples``, ``runs/<command>-<time>``): a new run
    goes beside the earlier one instead of being refused or mixed into it.
    """
    default = Path(default)
    path, n = default, 1
    while path.exists() and (not path.is_dir() or previous_results(path, patterns)):
        n += 1
        path = default.with_name(f"{default.name}-{n}")
    return path
