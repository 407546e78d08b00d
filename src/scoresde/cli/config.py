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

from scoresde.io.outputs import OutputFolder
from scoresde.settings import ConfigError, Option, dump_toml, resolve_settings

__all__ = [
    "COMMON_OPTIONS",
    "OUTPUT_NAMES",
    "add_options",
    "check_out",
    "claim_run_dir",
    "out_path",
    "resolve",
    "run_dir",
]

COMMON_OPTIONS: list[Option] = [
    Option("out", "", "output folder (default: runs/<name>)", type=str, short="-o", metavar="DIR"),
    Option("name", "", "run name (default: <command>-<timestamp>); outputs go to runs/<name>", type=str),
    Option(
        "overwrite",
        False,
        "replace the results of an earlier run in the output folder (deleted first, so no mixed set "
        "remains); without it such a folder is refused",
    ),
]
"""Options every subcommand has: where its outputs go, and whether they may replace a run's."""

OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "sample": ("samples_*",),
    "fit-solver": ("solver.json", "fit.json"),
    "encode": ("latents.npz", "encode.json"),
    "decode": ("samples.npz", "samples.png"),
    "interpolate": ("interpolation.npz", "interpolation.png"),
    "likelihood": ("likelihood.json", "likelihood.npz"),
    "evaluate": ("eval.json", "eval.md", "samples.png"),
    "inpaint": ("inpaint.png", "inpaint.npz", "metrics.json"),
    "colorize": ("colorize.png", "colorize.npz", "metrics.json"),
    "train-classifier": ("classifier.safetensors", "classifier.json", "metrics.json"),
    "demo": ("samples.png", "trajectories_*.gif", "density.png", "loss.png", "metrics.md", "metrics.json"),
    "export": ("model_index.json", "scoresde_export.json", "unet", "scheduler"),
}
"""The names (``fnmatch`` patterns) each command writes into its output folder: an entry with
such a name is an earlier result, whoever wrote it (:func:`scoresde.io.outputs.previous_results`).
``train`` and ``distill`` keep their own run-folder rule (:class:`scoresde.train.trainer.Trainer`,
:class:`scoresde.distill.run.Distiller`)."""


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


def out_path(config: Mapping[str, Any], command: str, root: str | Path = "runs") -> tuple[Path, bool]:
    """``(folder, named)``: ``config["out"]`` if set, else ``<root>/<config["name"]>`` (both
    ``named``), else ``<root>/<command>-<YYYYmmdd-HHMMSS>`` (not named).

    Raises:
        ConfigError: both ``out`` and ``name`` (here ``--out`` is the folder itself, where
            ``scoresde train --out`` is the parent of ``--name``: taking one silently would write
            somewhere the user did not mean), or a ``name`` that is not a plain folder name.
    """
    if config.get("out") and config.get("name"):
        raise ConfigError(
            f"--out {str(config['out'])!r} and --name {config['name']!r} both name the output folder of "
            f"`scoresde {command}` (--out is the folder itself, --name the folder {root}/<name>); give one"
        )
    if config.get("out"):
        return Path(config["out"]), True
    name = config.get("name")
    if name and ("/" in name or "\\" in name or name in (".", "..")):
        raise ConfigError(f"name: {name!r} must be a plain folder name; use --out for a path")
    if name:
        return Path(root) / name, True
    return Path(root) / f"{command}-{_dt.datetime.now():%Y%m%d-%H%M%S}", False


def check_out(config: Mapping[str, Any], command: str, root: str | Path = "runs") -> None:
    """Refuse, before any work, a named output folder (``--out`` / ``--name``) that holds an
    earlier run's results without ``--overwrite`` (:func:`scoresde.io.outputs.check_output_dir`);
    ``train`` and ``distill`` check their run folders themselves."""
    from scoresde.io.outputs import check_output_dir

    if command in ("train", "distill") or not (config.get("out") or config.get("name")):
        return
    path, _ = out_path(config, command, root)
    flag = "--out" if config.get("out") else "--name"
    check_output_dir(path, bool(config.get("overwrite", False)), OUTPUT_NAMES.get(command, ()), flag)


def run_dir(config: Mapping[str, Any], command: str, root: str | Path = "runs", save: bool = True) -> Path:
    """The path of :func:`claim_run_dir` (the folder claimed, the settings saved as ``config.toml``)."""
    return claim_run_dir(config, command, root, save).path


def claim_run_dir(
    config: Mapping[str, Any],
    command: str,
    root: str | Path = "runs",
    save: bool = True,
    default: str | Path | None = None,
) -> OutputFolder:
    """Claim the run's output folder (:func:`scoresde.io.outputs.prepare_output_dir`), saving
    the settings as ``config.toml``.

    The folder is ``config["out"]`` if set, else ``<root>/<config["name"]>``, else ``default``,
    else ``<root>/<command>-<YYYYmmdd-HHMMSS>``.  A named folder holding an earlier run's results
    is refused unless ``config["overwrite"]``, which deletes them first; an unnamed one that
    holds results is replaced by the first free ``<folder>-2``, ``-3``, ... (or replaced itself
    under ``overwrite``).

    Raises:
        OutputExistsError: a named folder holds results and ``overwrite`` is not set.
        ConfigError: a bad ``--name`` or an ``--out`` that is a file.
    """
    from scoresde.io.outputs import free_output_dir, prepare_output_dir

    path, named = out_path(config, command, root)
    patterns = OUTPUT_NAMES.get(command, ())
    overwrite = bool(config.get("overwrite", False))
    if not named and default is not None:
        path = Path(default)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {str(path)!r} exists and is not a folder; choose another --out")
    if not named and not overwrite:
        path = free_output_dir(path, patterns)
    flag = "--name" if named and not config.get("out") else "--out"
    folder = prepare_output_dir(path, overwrite, patterns, command=command, flag=flag)
    if save:
        skip = ("out", "name", "overwrite")
        saved = {k: v for k, v in config.items() if v is not None and k not in skip}
        (path / "config.toml").write_text(
            f"# settings of this `scoresde {command}` run; repeat it with --config {path / 'config.toml'}\n"
            + dump_toml(saved, table=command)
        )
    return folder
