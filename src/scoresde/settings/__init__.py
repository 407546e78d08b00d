"""Typed settings: declared once as :class:`Option`, read from TOML/JSON files and overrides.

- :mod:`scoresde.settings.options`: :class:`Option`, :class:`ConfigError`,
  :func:`dataclass_options` (one option per dataclass field, e.g. ``TrainConfig``'s).
- :mod:`scoresde.settings.values`: :func:`parse_value` (typed, checked) and the "did you mean"
  error of an unknown key.
- :mod:`scoresde.settings.files`: :func:`load_toml`, :func:`load_config_file`, :func:`dump_toml`.
- :mod:`scoresde.settings.layers`: :func:`resolve_settings`, the precedence of defaults, a base
  layer, a file, ``KEY=VALUE`` overrides and explicit values.

The command-line glue (argparse flags, the run folder) is :mod:`scoresde.cli.config`.
"""

from scoresde.settings.files import dump_toml, load_config_file, load_toml
from scoresde.settings.layers import resolve_settings
from scoresde.settings.options import ConfigError, Option, dataclass_options
from scoresde.settings.values import parse_value, unknown_key

__all__ = [
    "ConfigError",
    "Option",
    "dataclass_options",
    "dump_toml",
    "load_config_file",
    "load_toml",
    "parse_value",
    "resolve_settings",
    "unknown_key",
]
