"""Settings files: TOML (or JSON) in, TOML out, with errors that name the file."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from scoresde.settings.options import SCALARS, ConfigError

__all__ = ["dump_toml", "load_config_file", "load_toml"]


def _toml_module() -> ModuleType:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - exercised on Python 3.10 only
        import tomli
    except ModuleNotFoundError:
        raise ConfigError(
            "reading a config file needs Python >= 3.11 or the 'tomli' package: pip install tomli"
        ) from None
    return tomli


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
        if isinstance(v, list | tuple) and all(isinstance(e, SCALARS) for e in v):
            text = "[" + ", ".join(_toml_scalar(e) for e in v) + "]"
        elif isinstance(v, dict) and all(isinstance(e, SCALARS) for e in v.values()):
            text = "{" + ", ".join(f"{_toml_scalar(str(a))} = {_toml_scalar(b)}" for a, b in v.items()) + "}"
        elif isinstance(v, SCALARS):
            text = _toml_scalar(v)
        else:
            raise TypeError(f"dump_toml writes scalars, lists and tables only; {k!r} is {type(v).__name__}")
        lines.append(f"{k} = {text}")
    return "\n".join(lines) + "\n"
