"""The command line: help, the demo end to end (small), clear errors."""

from __future__ import annotations

import json

import pytest

from scoresde.cli.__main__ import main


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_demo_writes_outputs(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--steps",
            "50",
            "--samples",
            "300",
            "--sample-steps",
            "20",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["samplers"]) == {"euler_maruyama", "euler"}
    assert (out / "samples.png").stat().st_size > 10_000
    assert str(out.resolve()) in capsys.readouterr().out


def test_demo_bad_dataset_is_a_clear_error(tmp_path, capsys) -> None:
    code = main(["demo", "--dataset", "spiral", "--out", str(tmp_path)])
    assert code == 2
    assert "unknown toy data set 'spiral'" in capsys.readouterr().err
