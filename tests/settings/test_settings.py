"""The library's settings layer without argparse: layers, typed values, files."""

from __future__ import annotations

import dataclasses
import math

import pytest

from scoresde.settings import (
    ConfigError,
    Option,
    dataclass_options,
    dump_toml,
    load_config_file,
    load_toml,
    parse_value,
    resolve_settings,
)

OPTIONS = [
    Option("steps", 100, "steps", minimum=1),
    Option("lr", 1e-3, "learning rate"),
    Option("mults", (1, 2), "channel multipliers", type=int, multiple=True),
    Option("kw", {}, "sde options", mapping=True),
]


def test_toml_round_trip(tmp_path) -> None:
    values = {"a": 1, "b": 0.1, "c": True, "d": 'say "hi"\\n', "e": math.inf}
    f = tmp_path / "x.toml"
    f.write_text(dump_toml(values, table="t"))
    assert load_toml(f) == {"t": values}


def test_layers_in_order(tmp_path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"steps": 5, "lr": 1, "mults": [1, 2, 4]}')
    cfg = resolve_settings(
        OPTIONS,
        "train",
        base={"steps": 3, "lr": 0.5, "unknown": 1},
        config_file=f,
        overrides=["kw=beta_max=20"],
        explicit={"steps": "7"},
    )
    assert cfg == {"steps": 7, "lr": 1.0, "mults": (1, 2, 4), "kw": {"beta_max": 20.0}}
    assert resolve_settings(OPTIONS, "x", base={"steps": 3})["steps"] == 3
    assert load_config_file(f)["steps"] == 5


def test_unknown_keys_and_bad_values_name_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        resolve_settings(OPTIONS, "train", overrides=["step=3"])
    with pytest.raises(ConfigError, match=r"mults \(from --set\): expected an integer"):
        resolve_settings(OPTIONS, "train", overrides=["mults=1,x"])
    with pytest.raises(ConfigError, match="must be >= 1"):
        parse_value(OPTIONS[0], "0", "--steps")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold an object"):
        load_config_file(bad)


def test_dataclass_options_follow_the_annotations() -> None:
    @dataclasses.dataclass
    class Cfg:
        steps: int = dataclasses.field(default=10, metadata={"help": "steps", "minimum": 1})
        size: int | None = None
        mults: tuple[int, ...] = (1, 2)
        kw: dict[str, float] = dataclasses.field(default_factory=dict)

    opts = {o.key: o for o in dataclass_options(Cfg)}
    assert (opts["steps"].help, opts["steps"].minimum) == ("steps", 1)
    assert opts["size"].nullable and opts["size"].value_type is int
    assert opts["mults"].multiple and opts["kw"].mapping
    assert resolve_settings(list(opts.values()), "x", explicit={"size": "none"})["size"] is None
