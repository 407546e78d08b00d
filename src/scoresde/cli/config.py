"""The command-line glue of the settings layer: flags, ``--config``, ``--set`` and the run folder.

A subcommand declares its settings once, as a list of :class:`~scoresde.settings.Option`
(typed and checked by :mod:`scoresde.settings`); :func:`add_options` turns them into flags and
:func:`resolve` reads them back, lowest precedence first: the defaults, a base layer,
``--config FILE`` (TOML, or JSON when named ``*.json``; top-level keys or a table named after
the command), ``--set KEY=VALUE`` (repeatable), the option's own flag ``--KEY`` (``_`` written
as ``-``).  Booleans get ``--KEY`` / ``--no-KEY``; tuple options take several values; mapping
options ``KEY=VALUE`` items; nullable options also ``none``.

Every run writes its outputs into one folder (:func:`run_dir`): ``--out DIR`` if given, else
``runs/<name>`` where ``<name>`` is ``--name`` or ``<command>-<YYYYmmdd-HHMMSS>``; the resolved
settings are saved there as ``config.toml``, so ``--config runs/<name>/config.toml`` repeats a
run.  Errors raise :class:`~scoresde.settings.ConfigError` (a ``ValueError`` naming the key);
the CLI prints it and exits with status 2.  Subcommands are declared on top of this with
:class:`scoresde.cli.command.Command`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scoresde.settings import ConfigError, Option, dump_toml, resolve_settings

__all__ = ["COMMON_OPTIONS", "add_options", "resolve", "run_dir"]

COMMON_OPTIONS: list[Option] = [
    Option("out", "", "output folder (default: runs/<name>)", type=str, short="-o", metavar="DIR"),
    Option("name", "", "run name (default: <command>-<timestamp>); outputs go to runs/<name>", type=str),
]
"""Options every subcommand has: where its outputs go."""


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
        base: values that replace the defaults but yield to everything given.

    Raises:
        ConfigError: an unknown key or a bad value, naming it and where it came from.
    """
    opts = _all_options(options)
    return resolve_settings(
        opts,
        command,
        base=base,
        config_file=getattr(args, "config", None),
        overrides=getattr(args, "overrides", None) or [],
        explicit={o.key: getattr(args, o.key) for o in opts if o.key in vars(args)},
    )


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
