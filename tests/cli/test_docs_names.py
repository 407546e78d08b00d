"""The docs name only things that exist: ``ss.xxx`` names, sampler methods, CLI subcommands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import scoresde as ss
from scoresde.cli.__main__ import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    *sorted((ROOT / "docs" / "concepts").glob("*.md")),
    ROOT / "docs" / "cli.md",
    ROOT / "docs" / "gallery.md",
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_backticked_ss_names_exist(page: Path) -> None:
    text = page.read_text()
    names = set(re.findall(r"`(?:ss|scoresde)\.([A-Za-z_][A-Za-z0-9_]*)", text))
    missing = sorted(
        n for n in names if not hasattr(ss, n) and n not in ("viz", "cli", "eval", "dequantization")
    )
    assert not missing, f"{page.name} names scoresde attributes that do not exist: {missing}"


def test_sampler_names_in_samplers_page_exist() -> None:
    text = (ROOT / "docs" / "concepts" / "samplers.md").read_text()
    listed = text.split("The method names of `ss.SAMPLERS`:", 1)[1].split("\n\n", 1)[0]
    names = set(re.findall(r"`([a-z_+0-9]+)`", listed))
    assert names == set(ss.SAMPLERS)


def test_cli_page_documents_every_subcommand() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for name in SUBCOMMANDS:
        assert f"## `scoresde {name}`" in text, name
        assert re.search(rf"scoresde {re.escape(name)} [-\w]", text), f"no example of {name}"
        assert f"| `{name}` |" in text, f"{name} is missing from the table of subcommands"
