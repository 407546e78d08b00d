"""The settings of a run, layer by layer: defaults, a base layer, a file, overrides, flags.

Where a value comes from, lowest precedence first:

1. the option's default;
2. ``base``: values that replace the defaults but yield to everything given (a resumed
   checkpoint's settings, ``--quick`` presets); keys that no option has are ignored;
3. a config file (TOML, or JSON when its name ends in ``.json``): keys at the top level, or in
   a table named after the command (``[demo]``, ``[train]``), so one file can serve several
   commands (a key in the command's table wins over the same key at the top level);
4. ``KEY=VALUE`` overrides (text, parsed by the option's type);
5. explicit values (command-line text, e.g. the flags an argparse parser collected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scoresde.settings.files import load_config_file
from scoresde.settings.options import ConfigError, Option
from scoresde.settings.values import parse_value, unknown_key

__all__ = ["resolve_settings"]


def resolve_settings(
    options: Sequence[Option],
    command: str,
    *,
    base: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    explicit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checked settings: defaults < ``base`` < ``config_file`` < ``overrides`` < ``explicit``.

    Args:
        options: every option of the command.
        command: the command's name, whose table in a config file is read.
        base: the base layer (see the module docstring).
        config_file: a TOML or JSON file of settings, or ``None``.
        overrides: ``KEY=VALUE`` items (``-`` in a key is read as ``_``).
        explicit: ``key -> text`` values given one by one (the command-line flags).

    Returns:
        ``key -> value`` for every option.

    Raises:
        ConfigError: an unknown key or a bad value, naming it and where it came from.
    """
    opts = {o.key: o for o in options}
    known = list(opts)
    config: dict[str, Any] = {o.key: o.default for o in opts.values()}

    # 2. The base layer.
    for key, raw in (base or {}).items():
        if key in opts:
            config[key] = parse_value(opts[key], raw, "the base settings", text=False)

    # 3. Config file: top-level keys, then the command's own table.
    if config_file:
        data = load_config_file(config_file)
        source = f"config file {str(config_file)!r}"
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
                    raise unknown_key(key, known, source)
                config[key] = parse_value(opts[key], raw, source, text=False)

    # 4. KEY=VALUE overrides.
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in opts:
            raise unknown_key(key, known, "--set")
        config[key] = parse_value(opts[key], raw, "--set")

    # 5. Explicit values.
    for key, raw in (explicit or {}).items():
        if key in opts:
            config[key] = parse_value(opts[key], raw, opts[key].flag, text=True)
    return config
