"""Result files as valid JSON: non-finite numbers written as ``null`` with a field saying why.

``json.dumps`` writes ``NaN`` and ``Infinity``, which are not JSON (RFC 8259) and which strict
readers (``jq``, JavaScript, many loaders) refuse.  :func:`write_json` replaces them by ``null``
and lists where it did so under ``"non_finite"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["json_ready", "write_json"]


def json_ready(obj: Any, path: str = "", found: list[str] | None = None) -> Any:
    """A copy of ``obj`` with non-finite floats as ``None``; their dotted paths go to ``found``."""
    found = [] if found is None else found
    if isinstance(obj, float) and not math.isfinite(obj):
        found.append(f"{path}={obj}")
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v, f"{path}.{k}" if path else str(k), found) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v, f"{path}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def write_json(path: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` as strict JSON (``allow_nan=False``), non-finite values as ``null``."""
    found: list[str] = []
    clean = json_ready(summary, found=found)
    if found:
        clean["non_finite"] = {
            "fields": found,
            "why": "not a finite number (e.g. a standard error of a single point); written as null",
        }
    path.write_text(json.dumps(clean, indent=2, allow_nan=False))
