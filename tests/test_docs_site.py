"""The documentation site builds in strict mode: a broken link, anchor or API reference fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="the docs extra is not installed (pip install -e '.[docs]')")


def test_site_builds_strict(tmp_path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    # Every public subpackage has its API page, and the top-level page documents scoresde.__all__.
    api = site / "api"
    packages = sorted(
        p.name
        for p in (ROOT / "src" / "scoresde").iterdir()
        if (p / "__init__.py").is_file() and not p.name.startswith("_")
    )
    assert packages and all((api / name / "index.html").is_file() for name in packages)
    import scoresde

    html = (api / "index.html").read_text()
    documented = [n for n in scoresde.__all__ if f'id="scoresde.{n}"' in html]
    undocumented = sorted(set(scoresde.__all__) - set(documented) - {"__version__"} - set(packages))
    assert not undocumented, f"top-level names without an API entry: {undocumented}"
    assert ":func:<code>" not in html and ":class:<code>" not in html  # Sphinx roles rewritten
