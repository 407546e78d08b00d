"""Output folders: an earlier run's results are refused, or replaced as a whole, never mixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoresde.io.outputs import (
    RECORD,
    OutputExistsError,
    check_output_dir,
    finish_output_dir,
    free_output_dir,
    prepare_output_dir,
    previous_results,
)


def _run(path: Path, names: list[str], overwrite: bool = False, patterns=("samples_*",)) -> None:
    folder = prepare_output_dir(path, overwrite, patterns, command="sample")
    (path / "config.toml").write_text("x = 1\n")
    for name in names:
        target = path / name
        if name.endswith("/"):
            target.mkdir()
            for i in range(4):
                (target / f"{i:06d}.png").write_bytes(b"png")
        else:
            target.write_text(name)
    finish_output_dir(folder)


def test_a_second_run_is_refused_and_overwrite_replaces_the_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _run(out, ["samples_a/", "extra.json"])
    record = json.loads((out / RECORD).read_text())
    assert record["foreign"] == ["notes.txt"]
    assert record["outputs"] == ["config.toml", "extra.json", "samples_a"]
    assert previous_results(out, ("samples_*",)) == ["config.toml", "extra.json", "samples_a"]
    with pytest.raises(OutputExistsError, match=r"--overwrite.*"):
        check_output_dir(out, False, ("samples_*",))
    with pytest.raises(OutputExistsError, match="samples_a"):
        prepare_output_dir(out, False, ("samples_*",))
    assert sorted(p.name for p in (out / "samples_a").iterdir())[-1] == "000003.png"  # untouched
    folder = prepare_output_dir(out, True, ("samples_*",))
    assert folder.replaced == ("config.toml", "extra.json", "samples_a")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "notes.txt"]  # the user's file stays


def test_matching_names_count_as_results_whoever_wrote_them(tmp_path: Path) -> None:
    (tmp_path / "samples_x").mkdir()
    (tmp_path / "keep.txt").write_text("k")
    assert previous_results(tmp_path, ("samples_*",)) == ["samples_x"]
    assert previous_results(tmp_path, ()) == []
    check_output_dir(tmp_path, False, ())  # a folder of other files only is fine


def test_a_failed_run_that_wrote_nothing_leaves_no_trace(tmp_path: Path) -> None:
    out = tmp_path / "new"
    folder = prepare_output_dir(out, False)
    (out / "config.toml").write_text("x = 1\n")
    assert finish_output_dir(folder, ok=False) == []
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("k")
    folder = prepare_output_dir(out, False)
    (out / "config.toml").write_text("x = 1\n")
    finish_output_dir(folder, ok=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_unfinished_run_owns_what_it_added(tmp_path: Path) -> None:
    prepare_output_dir(tmp_path, False)
    (tmp_path / "half.npz").write_text("x")  # killed before finish_output_dir
    assert previous_results(tmp_path) == ["half.npz"]


def test_free_output_dir_goes_beside_earlier_results(tmp_path: Path) -> None:
    base = tmp_path / "samples"
    assert free_output_dir(base) == base
    _run(base, ["samples_a.npz"])
    assert free_output_dir(base, ("samples_*",)) == tmp_path / "samples-2"
    (tmp_path / "file").write_text("x")
    assert free_output_dir(tmp_path / "file") == tmp_path / "file-2"
    with pytest.raises(NotADirectoryError, match="not a folder"):
        check_output_dir(tmp_path / "file", True)
