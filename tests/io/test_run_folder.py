"""The run folder: one resolution of ``last``, atomic writes, a record that is written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoresde.io.run_folder import RunFolder, write_atomically


def test_layout_and_resolution(tmp_path) -> None:
    run = RunFolder(tmp_path / "r")
    assert run.last == tmp_path / "r" / "checkpoints" / "last.safetensors"
    assert run.step_checkpoint(12).name == "step_0000012.safetensors"
    run.checkpoints.mkdir(parents=True)
    assert RunFolder.resolve(run.root) == run.last  # a folder: its last checkpoint
    assert RunFolder.resolve(run.step_checkpoint(3)) == run.step_checkpoint(3)  # a file: itself
    assert RunFolder.of_checkpoint(run.step_checkpoint(3)) == run
    assert RunFolder.of_checkpoint(tmp_path / "elsewhere.safetensors").root == tmp_path


def test_atomic_write_leaves_the_target_or_nothing(tmp_path) -> None:
    target = tmp_path / "f.txt"
    write_atomically(target, lambda tmp: Path(tmp).write_text("one"))
    assert target.read_text() == "one"

    def failing(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, failing)
    assert target.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_the_record_is_written_once_and_a_run_is_not_replaced(tmp_path) -> None:
    run = RunFolder(tmp_path / "r")
    run.prepare(resuming=False, overwrite=False)
    run.write_record({"steps": 20})
    run.write_record({"steps": 5})  # a resume: the record stays
    assert '"steps": 20' in run.config.read_text()
    with pytest.raises(FileExistsError, match="already holds a run"):
        run.prepare(resuming=False, overwrite=False)
    run.prepare(resuming=True, overwrite=False)
    run.prepare(resuming=False, overwrite=True)
    assert not run.config.exists()
