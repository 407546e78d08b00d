"""``scoresde train`` reads settings like the other subcommands: file tables, --set, flags."""

from __future__ import annotations

import argparse

import pytest

from scoresde.cli import train
from scoresde.cli.config import ConfigError


def _resolve(argv: list[str]):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return train.resolve_config(parser.parse_args(argv))[0]


def test_file_table_then_set_then_flags(tmp_path) -> None:
    cfg = tmp_path / "all.toml"
    cfg.write_text('seed = 3\n[demo]\nsteps = 10\n[train]\nsteps = 7\nnet = "mlp"\nhidden = 8\n')
    c = _resolve(["--config", str(cfg), "--set", "hidden=16", "--set", "channel_mults=1,2"])
    assert (c.seed, c.steps, c.net, c.hidden, tuple(c.channel_mults)) == (3, 7, "mlp", 16, (1, 2))
    assert _resolve(["--config", str(cfg), "--set", "hidden=16", "--hidden", "32"]).hidden == 32


def test_set_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        _resolve(["--set", "stepz=3"])
    with pytest.raises(ConfigError, match="steps"):
        _resolve(["--set", "steps=many"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _resolve(["--set", "steps"])
