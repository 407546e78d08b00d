"""The ``scoresde`` entry point: help for every subcommand, clear errors, ``python -m``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scoresde.cli.__main__ import SUBCOMMANDS, main


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--set" in out and "--out" in out


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_config_error_is_reported_not_raised(capsys, tmp_path) -> None:
    assert main(["demo", "--set", "stepz=3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scoresde demo: error: unknown setting 'stepz' in --set (did you mean 'steps'?)")


def test_python_dash_m_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scoresde", "demo", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout
