"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks:``).

- The API reference is generated at build time: a page for the top-level ``scoresde`` names
  (``scoresde.__all__``, read statically by mkdocstrings) and one per public subpackage found
  under ``src/scoresde`` (a folder with ``__init__.py`` whose name does not start with ``_``).
  Modules that move between packages need no edit of the site; a new subpackage gets its page.
- A page under ``docs/`` that ``mkdocs.yml``'s ``nav`` does not list is appended to it
  (``bench_*.md`` under "Benchmarks", others under "How-to"), so a helper adding a page does not
  break the strict build; list it in ``nav`` to give it a title and a place.
- Docstrings use Sphinx roles (``:func:`~scoresde.sample```); mkdocstrings renders Markdown, so
  the role prefix is dropped and ``~a.b.c`` shortened to ``c`` in the rendered HTML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "scoresde"
API_DIR = "api"

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|term|ref):<code>(~?)([^<]*)</code>"
)


def subpackages() -> list[str]:
    """The public subpackages of ``scoresde``, sorted."""
    return sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and not p.name.startswith("_")
    )


def _page(name: str) -> str:
    if name == "scoresde":
        return (
            "# `scoresde`: the top-level names\n\n"
            "Everything `import scoresde as ss` offers (`scoresde.__all__`). Each subpackage has its "
            "own page in this section.\n\n"
            "::: scoresde\n"
            "    options:\n"
            "      show_root_heading: false\n"
            "      show_submodules: false\n"
            "      show_if_no_docstring: true\n"
        )
    return f"# `scoresde.{name}`\n\n::: scoresde.{name}\n    options:\n      show_root_heading: false\n"


def _nav_paths(nav: Any) -> set[str]:
    """Every page path listed in a (nested) MkDocs nav."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_paths(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_nav_paths(v) for v in nav)) if nav else set()
    return set()


def _section(nav: list, title: str) -> list:
    for item in nav:
        if isinstance(item, dict) and title in item and isinstance(item[title], list):
            return item[title]
    nav.append({title: []})
    return nav[-1][title]


def on_config(config: Any) -> Any:
    """Append pages missing from the navigation, then the "API reference" section."""
    nav = list(config.get("nav") or [])
    listed = _nav_paths(nav)
    docs = Path(config["docs_dir"])
    for page in sorted(docs.rglob("*.md")):
        rel = page.relative_to(docs).as_posix()
        if rel not in listed and not rel.startswith(f"{API_DIR}/"):
            _section(nav, "Benchmarks" if page.name.startswith("bench_") else "How-to").append(rel)
    entries: list[dict[str, str]] = [{"scoresde": f"{API_DIR}/index.md"}]
    entries += [{f"scoresde.{n}": f"{API_DIR}/{n}.md"} for n in subpackages()]
    config["nav"] = [*nav, {"API reference": entries}]
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated API pages."""
    files.append(File.generated(config, f"{API_DIR}/index.md", content=_page("scoresde")))
    for name in subpackages():
        files.append(File.generated(config, f"{API_DIR}/{name}.md", content=_page(name)))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    """``:func:`~a.b.c``` as rendered from a docstring -> ``<code>c</code>``."""
    return _ROLE.sub(
        lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html
    )
