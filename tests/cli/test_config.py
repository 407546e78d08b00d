"""The CLI glue of the settings layer: flags, --config, --set, precedence, run folders, errors."""

from __future__ import annotations

import argparse

import pytest

from scoresde.cli.config import add_options, resolve, run_dir
from scoresde.settings import ConfigError, Option

OPTIONS = [
    Option("steps", 100, "steps", minimum=1),
    Option("lr", 1e-3, "learning rate"),
    Option("sde", "vp", "sde", choices=("vp", "ve")),
    Option("progress", True, "bars"),
]


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_options(p, OPTIONS)
    return p.parse_args(argv)


def test_defaults() -> None:
    cfg = resolve(_parse([]), OPTIONS, "train")
    assert cfg == {
        "out": "",
        "name": "",
        "overwrite": False,
        "steps": 100,
        "lr": 1e-3,
        "sde": "vp",
        "progress": True,
    }


def test_precedence_file_then_set_then_flag(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('steps = 5\nlr = 1\nsde = "ve"\n[train]\nsteps = 7\n[other]\nsteps = 9\n')
    cfg = resolve(_parse(["--config", str(f)]), OPTIONS, "train")
    # The command's table wins over the top level; other commands' tables are ignored.
    assert (cfg["steps"], cfg["lr"], cfg["sde"]) == (7, 1.0, "ve")
    assert isinstance(cfg["lr"], float)
    cfg = resolve(_parse(["--config", str(f), "--set", "steps=11", "--set", "progress=no"]), OPTIONS, "train")
    assert (cfg["steps"], cfg["progress"]) == (11, False)
    cfg = resolve(
        _parse(["--config", str(f), "--set", "steps=11", "--steps", "13", "--progress"]), OPTIONS, "train"
    )
    assert (cfg["steps"], cfg["progress"]) == (13, True)


def test_boolean_flags() -> None:
    assert resolve(_parse(["--no-progress"]), OPTIONS, "x")["progress"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "step=3"], "unknown setting 'step' in --set (did you mean 'steps'?)"),
        (["--set", "steps"], "--set expects KEY=VALUE"),
        (["--set", "steps=three"], "steps (from --set): expected an integer, got 'three'"),
        (["--steps", "0"], "steps (from --steps): must be >= 1, got 0"),
        (["--sde", "edm"], "sde (from --sde): 'edm' is not one of ['vp', 've']"),
        (["--lr", "nan"], "expected a finite number"),
        (["--set", "progress=maybe"], "expected true or false"),
    ],
)
def test_bad_values_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        resolve(_parse(argv), OPTIONS, "train")
    assert message in str(info.value)


def test_bad_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(_parse(["--config", str(tmp_path / "missing.toml")]), OPTIONS, "train")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        resolve(_parse(["--config", str(bad)]), OPTIONS, "train")
    typo = tmp_path / "typo.toml"
    typo.write_text("[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate' in config file"):
        resolve(_parse(["--config", str(typo)]), OPTIONS, "train")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('steps = "10"\n')
    with pytest.raises(ConfigError, match="expected an integer, got '10' \\(str\\)"):
        resolve(_parse(["--config", str(wrong)]), OPTIONS, "train")


def test_run_dir_named_and_saved_config_repeats_the_run(tmp_path) -> None:
    cfg = resolve(_parse(["--name", "exp1", "--steps", "42"]), OPTIONS, "train")
    path = run_dir(cfg, "train", root=tmp_path)
    assert path == tmp_path / "exp1"
    again = resolve(_parse(["--config", str(path / "config.toml")]), OPTIONS, "train")
    assert again["steps"] == 42
    stamped = run_dir(resolve(_parse([]), OPTIONS, "train"), "train", root=tmp_path)
    assert stamped.parent == tmp_path and stamped.name.startswith("train-")
    out = run_dir(resolve(_parse(["--out", str(tmp_path / "a" / "b")]), OPTIONS, "train"), "train")
    assert out == tmp_path / "a" / "b" and (out / "config.toml").is_file()


def test_run_dir_rejects_paths_as_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match="must be a plain folder name"):
        run_dir({"name": "a/b"}, "train", root=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        run_dir({"out": str(tmp_path / "file")}, "train")
