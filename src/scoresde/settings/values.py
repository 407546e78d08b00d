"""Parsing and checking one setting's value (command-line text or a TOML/JSON value).

:func:`parse_value` converts a raw value to its :class:`~scoresde.settings.options.Option`'s
type and checks it; :func:`unknown_key` is the error for a key no option has, with a "did you
mean" hint.  Both raise :class:`~scoresde.settings.options.ConfigError` naming the key and the
place the value came from.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

from scoresde.settings.options import ConfigError, Option

__all__ = ["parse_value", "unknown_key"]

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
        if option.elsewhere and value in option.elsewhere:
            raise ConfigError(f"{where}: {value!r} is not offered here: {option.elsewhere[value]}")
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


def unknown_key(key: str, known: Sequence[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown setting {key!r} in {source}{hint}; valid settings: {', '.join(sorted(known))}"
    )
