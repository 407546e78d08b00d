"""The shared configuration layer of every ``scoresde`` subcommand.

A subcommand declares its settings once, as a list of :class:`Option`; this module turns
that list into command-line flags, reads TOML config files, applies overrides, checks every
value and makes the run's output folder.

Where a value comes from, lowest precedence first:

1. the option's default;
2. a TOML config file given with ``--config FILE``: keys at the top level, or in a table
   named after the subcommand (``[demo]``, ``[train]``), so one file can serve several
   commands (a key in the command's table wins over the same key at the top level);
3. ``--set KEY=VALUE`` (repeatable; the value is parsed by the option's type);
4. the option's own flag, ``--KEY`` with ``_`` written as ``-`` (``--train-steps 500``).

Every run writes its outputs into one folder: ``--out DIR`` if given, else
``runs/<name>`` where ``<name>`` is ``--name`` or ``<command>-<YYYYmmdd-HHMMSS>``.  The
resolved settings are saved there as ``config.toml``, so ``--config runs/<name>/config.toml``
repeats a run.

Errors (a key that no option has, a value of the wrong type or outside the choices, a
missing or malformed file) raise :class:`ConfigError`, a ``ValueError`` whose message names
the key, what was wrong and what to do; the CLI prints it and exits with status 2.

Using it in a subcommand module (the ``HELP`` / ``add_arguments`` / ``run`` convention)::

    from scoresde.cli.config import Option, add_options, resolve, run_dir

    OPTIONS = [
        Option("steps", 2000, "training steps", minimum=1),
        Option("sde", "vp", "forward SDE", choices=("vp", "ve", "subvp")),
        Option("lr", 2e-3, "learning rate", minimum=0.0),
        Option("progress", True, "show progress bars"),
    ]

    def add_arguments(parser):
        add_options(parser, OPTIONS)

    def run(args):
        cfg = resolve(args, OPTIONS, "train")   # a dict: key -> checked value
        out = run_dir(cfg, "train")             # the run's folder, with config.toml written
        ...

Every option gets ``--KEY``; booleans get ``--KEY`` / ``--no-KEY``; a tuple option takes
several values (``--channel-mults 1 2``, ``--set channel_mults=1,2``, a TOML list); a mapping
option takes ``KEY=VALUE`` items (``--sde-option beta_max=20``); a nullable option also takes
``none``.  :func:`dataclass_options` makes the options of a dataclass's fields (their
``metadata["help"]``), which is how ``scoresde train`` gets one flag per ``TrainConfig`` field.
``add_options`` also adds ``--config``, ``--set``, ``--out`` and ``--name``.  A config file is
TOML, or JSON when its name ends in ``.json``; reading TOML needs Python >= 3.11 (``tomllib``)
or, on 3.10, the ``tomli`` package.

Subcommands are declared on top of this layer with :class:`scoresde.cli.command.Command`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "COMMON_OPTIONS",
    "ConfigError",
    "Option",
    "add_options",
    "dataclass_options",
    "dump_toml",
    "load_config_file",
    "load_toml",
    "parse_value",
    "resolve",
    "run_dir",
]

_SCALARS = (bool, int, float, str)


class ConfigError(ValueError):
    """A setting is unknown, has a bad value, or its file cannot be read."""


@dataclass(frozen=True)
class Option:
    """One setting of a subcommand.

    Args:
        key: the name, in ``snake_case`` (the flag is ``--key-with-dashes``).
        default: the default value; its type (``bool``, ``int``, ``float`` or ``str``) is the
            option's type unless ``type`` is given.
        help: one line for ``--help``.
        choices: the allowed values, if limited.
        minimum: the smallest allowed value of a number.
        type: the value type (of each element, for ``multiple``), when ``default`` does not say.
        short: an extra short flag such as ``-o``.
        metavar: the value's name in ``--help``.
        nullable: ``None`` (written ``none``) is allowed too.
        multiple: the value is a tuple of ``type``.
        mapping: the value is a ``{str: float}`` dict, given as ``KEY=VALUE`` items.
        flag_name: the flag without ``--``, when not the key with dashes (e.g. ``sde-option``).
        what: the noun for a value not among the choices ("unknown sampler 'x'").
        const: the value of the bare flag given without a value (then the value is optional).
    """

    key: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    type: type | None = None
    short: str | None = None
    metavar: str | None = field(default=None)
    nullable: bool = False
    multiple: bool = False
    mapping: bool = False
    flag_name: str | None = None
    what: str | None = None
    const: Any = None

    @property
    def value_type(self) -> type:
        if self.mapping:
            return float
        t = self.type if self.type is not None else type(self.default)
        if t not in _SCALARS:
            raise TypeError(f"option {self.key!r}: type must be one of bool/int/float/str, got {t}")
        return t

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.key.replace("_", "-"))


def dataclass_options(cls: type, exclude: Sequence[str] = ()) -> list[Option]:
    """One :class:`Option` per field of the dataclass ``cls`` (types from its annotations).

    A field's ``metadata`` may hold ``help``, ``minimum``, ``choices``, ``flag`` (the flag name
    without ``--``) and ``metavar``.  Supported annotations: ``bool``, ``int``, ``float``,
    ``str``, ``X | None``, ``tuple[X, ...]`` and ``dict[str, float]``.
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint, nullable, multiple, mapping = hints[f.name], False, False, False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint, nullable = args[0], True
        if typing.get_origin(hint) is tuple:
            hint, multiple = typing.get_args(hint)[0], True
        elif typing.get_origin(hint) is dict:
            hint, mapping = float, True
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = f.metadata
        out.append(
            Option(
                f.name,
                default,
                meta.get("help", f.name.replace("_", " ")),
                choices=meta.get("choices"),
                minimum=meta.get("minimum"),
                type=hint,
                metavar=meta.get("metavar"),
                nullable=nullable,
                multiple=multiple,
                mapping=mapping,
                flag_name=meta.get("flag"),
            )
        )
    return out


COMMON_OPTIONS: list[Option] = [
    Option("out", "", "output folder (default: runs/<name>)", type=str, short="-o", metavar="DIR"),
    Option("name", "", "run name (default: <command>-<timestamp>); outputs go to runs/<name>", type=str),
]
"""Options every subcommand has: where its outputs go."""


# --------------------------------------------------------------------------------------------- #
# Values.
# --------------------------------------------------------------------------------------------- #
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_value(option: Option, raw: Any, source: str, text: bool | None = None) -> Any:
    """Convert ``raw`` (a string from the command line or a TOML/JSON value) to the option's type.

    Args:
        option: the option the value is for.
        raw: the value (for ``multiple`` / ``mapping`` options also a list / dict of them).
        source: where it came from, for the error message (``--set``, ``config.toml``, ...).
        text: whether ``raw`` is command-line text to parse (default: when it is a ``str``);
            a TOML file's values are typed already, so ``steps = "10"`` there is an error.

    Raises:
        ConfigError: the value has the wrong type, is not among the choices or is too small.
    """
    where = f"{option.key} (from {source})"
    if text is None:
        text = isinstance(raw, str)
    if option.nullable and (raw is None or (isinstance(raw, str) and raw.strip().lower() == "none")):
        return None
    if option.mapping:
        return _parse_mapping(option, raw, where)
    if option.multiple:
        if isinstance(raw, str):
            raw = [v for v in raw.split(",") if v.strip()]
        elif not isinstance(raw, list | tuple):
            raise ConfigError(f"{where}: expected a list of values, got {raw!r}")
        return tuple(_parse_scalar(option, v, where, text) for v in raw)
    return _parse_scalar(option, raw, where, text)


def _parse_mapping(option: Option, raw: Any, where: str) -> dict[str, float]:
    if isinstance(raw, str):
        raw = [v for v in raw.split(",") if v.strip()]
    if isinstance(raw, list | tuple):
        items = {}
        for item in raw:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{where}: {option.flag} expects KEY=VALUE, got {item!r}")
            items[key.strip()] = value
        raw = items
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected KEY=VALUE items or a table, got {raw!r}")
    out = {}
    for key, value in raw.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {key}: {value!r} is not a number") from None
        if isinstance(value, bool) or not math.isfinite(out[str(key)]):
            raise ConfigError(f"{where}: {key}: expected a finite number, got {value!r}")
    return out


def _parse_scalar(option: Option, raw: Any, where: str, text: bool) -> Any:
    t = option.value_type
    if text and isinstance(raw, str) and t is not str:
        stripped = raw.strip()
        try:
            if t is bool:
                low = stripped.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = low in _TRUE
            elif t is int:
                value = int(stripped)
            else:
                value = float(stripped)
        except ValueError:
            raise ConfigError(f"{where}: expected {_type_name(t)}, got {raw!r}") from None
    else:
        value = raw
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {_type_name(t)}, got {value!r} ({type(value).__name__})")
    if t is float and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if option.choices is not None and value not in option.choices:
        if option.what:
            raise ConfigError(
                f"{where}: unknown {option.what} {value!r}; choose one of {sorted(map(str, option.choices))}"
            )
        raise ConfigError(f"{where}: {value!r} is not one of {list(option.choices)}")
    if option.minimum is not None and t in (int, float) and value < option.minimum:
        raise ConfigError(f"{where}: must be >= {option.minimum}, got {value!r}")
    return value


def _type_name(t: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[t]


def _unknown_key(key: str, known: Sequence[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown setting {key!r} in {source}{hint}; valid settings: {', '.join(sorted(known))}"
    )


# --------------------------------------------------------------------------------------------- #
# TOML files.
# --------------------------------------------------------------------------------------------- #
def _toml_module():
    try:
        import tomllib  # Python >= 3.11

        return tomllib
    except ModuleNotFoundError:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli

            return tomli
        except ModuleNotFoundError:
            raise ConfigError(
                "reading a config file needs Python >= 3.11 or the 'tomli' package: pip install tomli"
            ) from None


def _check_config_path(p: Path) -> None:
    if p.is_dir():
        raise ConfigError(f"--config: {str(p)!r} is a directory; give a TOML or JSON file")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist (check the path given to --config)")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with errors that name the file."""
    p = Path(path)
    _check_config_path(p)
    toml = _toml_module()
    try:
        with p.open("rb") as fh:
            return toml.load(fh)
    except toml.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {err}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config file: JSON when its name ends in ``.json``, else TOML."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        return load_toml(p)
    _check_config_path(p)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold an object of settings")
    return data


def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def dump_toml(config: Mapping[str, Any], table: str | None = None) -> str:
    """Write a flat dict of scalars, lists of scalars and ``{str: number}`` tables as TOML text
    (inside ``[table]`` if given)."""
    lines = [f"[{table}]"] if table else []
    for k, v in config.items():
        if isinstance(v, list | tuple) and all(isinstance(e, _SCALARS) for e in v):
            text = "[" + ", ".join(_toml_scalar(e) for e in v) + "]"
        elif isinstance(v, dict) and all(isinstance(e, _SCALARS) for e in v.values()):
            text = "{" + ", ".join(f"{_toml_scalar(str(a))} = {_toml_scalar(b)}" for a, b in v.items()) + "}"
        elif isinstance(v, _SCALARS):
            text = _toml_scalar(v)
        else:
            raise TypeError(f"dump_toml writes scalars, lists and tables only; {k!r} is {type(v).__name__}")
        lines.append(f"{k} = {text}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- #
# argparse.
# --------------------------------------------------------------------------------------------- #
def _all_options(options: Sequence[Option]) -> list[Option]:
    keys = {o.key for o in options}
    out = [o for o in COMMON_OPTIONS if o.key not in keys] + list(options)
    seen: set[str] = set()
    for o in out:
        if o.key in seen:
            raise ValueError(f"option {o.key!r} is declared twice")
        seen.add(o.key)
    return out


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``--config``, ``--set``, the output options and one flag per option to ``parser``.

    Flags default to "not given" so that :func:`resolve` can tell them from the defaults.
    """
    if parser.epilog is None:
        parser.epilog = (
            "Each setting comes from, in increasing precedence: its default, the --config file, "
            "--set KEY=VALUE, its own flag. Outputs go to --out, else runs/<name>; the settings "
            "used are saved there as config.toml."
        )
    cfg = parser.add_argument_group("configuration")
    cfg.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML file of settings (top-level keys or a table named after the command)",
    )
    cfg.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (repeatable), e.g. --set steps=500",
    )
    group = parser.add_argument_group("settings (each may also be set in --config or with --set)")
    for o in _all_options(options):
        flags = [o.flag] + ([o.short] if o.short else [])
        default_text = "" if o.default in ("", None, {}) else f" (default: {_show(o.default)})"
        common: dict[str, Any] = {"dest": o.key, "default": argparse.SUPPRESS}
        if o.value_type is bool and not (o.multiple or o.mapping):
            group.add_argument(
                *flags, action=argparse.BooleanOptionalAction, help=o.help + default_text, **common
            )
            continue
        text = o.help + (f"; one of {', '.join(map(str, o.choices))}" if o.choices else "")
        text += "; 'none' for none" if o.nullable else ""
        if o.mapping:
            group.add_argument(
                *flags, action="append", metavar="KEY=VALUE", help=text + " (repeatable)", **common
            )
        elif o.multiple:
            group.add_argument(
                *flags, nargs="*", metavar=o.metavar or _metavar(o), help=text + default_text, **common
            )
        else:
            extra = {"nargs": "?", "const": o.const} if o.const is not None else {}
            # choices are checked by parse_value, with a better message
            group.add_argument(
                *flags, metavar=o.metavar or _metavar(o), help=text + default_text, **extra, **common
            )


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return " ".join(map(str, v)) if v else "none"
    return str(v)


def _metavar(o: Option) -> str:
    if o.choices:
        return "{" + ",".join(map(str, o.choices)) + "}"
    return {int: "N", float: "X", str: "TEXT"}[o.value_type]


def resolve(
    args: argparse.Namespace,
    options: Sequence[Option],
    command: str,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checked settings of this run: defaults, ``base``, then ``--config``, ``--set``, flags.

    Args:
        args: the parsed command line (from a parser set up by :func:`add_options`).
        options: the subcommand's options (the common ones are added).
        command: the subcommand's name, whose table in a config file is read.
        base: values that replace the defaults but yield to everything given (e.g. the
            settings of a checkpoint being resumed, or ``--quick`` presets); keys that no
            option has are ignored.

    Returns:
        ``key -> value`` for every option, the common ``out`` and ``name`` included.

    Raises:
        ConfigError: an unknown key or a bad value, naming it and where it came from.
    """
    opts = {o.key: o for o in _all_options(options)}
    known = list(opts)
    config: dict[str, Any] = {o.key: o.default for o in opts.values()}

    # 1b. The base layer.
    for key, raw in (base or {}).items():
        if key in opts:
            config[key] = parse_value(opts[key], raw, "the base settings", text=False)

    # 2. Config file: top-level keys, then the command's own table.
    path = getattr(args, "config", None)
    if path:
        data = load_config_file(path)
        source = f"config file {str(path)!r}"
        data = {str(k).replace("-", "_"): v for k, v in data.items()}

        def is_value(k: str, v: Any) -> bool:
            return not isinstance(v, dict) or (k in opts and opts[k].mapping)

        layers = [{k: v for k, v in data.items() if is_value(k, v)}]
        table = data.get(command.replace("-", "_"), data.get(command))
        if isinstance(table, dict) and not is_value(command, table):
            layers.append({str(k).replace("-", "_"): v for k, v in table.items()})
        for layer in layers:
            for key, raw in layer.items():
                if key not in opts:
                    raise _unknown_key(key, known, source)
                config[key] = parse_value(opts[key], raw, source, text=False)

    # 3. --set KEY=VALUE.
    for item in getattr(args, "overrides", None) or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in opts:
            raise _unknown_key(key, known, "--set")
        config[key] = parse_value(opts[key], raw, "--set")

    # 4. Explicit flags.
    for key, o in opts.items():
        if key in vars(args):
            config[key] = parse_value(o, getattr(args, key), o.flag, text=True)
    return config


def run_dir(config: Mapping[str, Any], command: str, root: str | Path = "runs", save: bool = True) -> Path:
    """Create and return the run's output folder, saving the settings as ``config.toml``.

    ``config["out"]`` if set, else ``<root>/<config["name"]>``, else
    ``<root>/<command>-<YYYYmmdd-HHMMSS>``.
    """
    if config.get("out"):
        path = Path(config["out"])
    else:
        name = config.get("name") or f"{command}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"name: {name!r} must be a plain folder name; use --out for a path")
        path = Path(root) / name
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {str(path)!r} exists and is not a folder; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    if save:
        saved = {k: v for k, v in config.items() if v is not None and k not in ("out", "name")}
        (path / "config.toml").write_text(
            f"# settings of this `scoresde {command}` run; repeat it with --config {path / 'config.toml'}\n"
            + dump_toml(saved, table=command)
        )
    return path
