"""Report import cycles between the packages of ``src/scoresde`` (and between modules of one package).

Every ``import`` / ``from ... import`` of a ``scoresde`` module is read with :mod:`ast`, at module
level and inside functions alike (a function-local import hides a cycle from the interpreter, not
from this check); imports under ``if TYPE_CHECKING:`` are skipped (they never run).  The module
graph is collapsed to packages (``scoresde.sampling.api`` -> ``sampling``; a top-level module is
its own node) and the strongly connected components of more than one node are printed with the
edges inside them.  ``--package NAME`` checks the modules inside one package instead.
Exit status 1 when a cycle is found.

    python scripts/check_import_cycles.py [--package sampling] [--ignore cli]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "scoresde"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    skip.update(id(n) for n in ast.walk(sub))
    return skip


def imports_of(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                out.add(name)
    return out


def node_of(module: str, package: str | None) -> str | None:
    parts = module.split(".")
    if package is None:
        return parts[1] if len(parts) > 1 else None  # the scoresde/__init__ facade is not a node
    if len(parts) > 2 and parts[1] == package:
        return ".".join(parts[2:])
    return None


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", default=None, help="check modules inside this package instead")
    ap.add_argument("--ignore", nargs="*", default=[], help="nodes to leave out (e.g. cli)")
    args = ap.parse_args()
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in files:
        src = node_of(module_name(path), args.package)
        if src is None or src in args.ignore:
            continue
        graph.setdefault(src, set())
        for dep in imports_of(path, modules):
            dst = node_of(dep, args.package)
            if dst is None or dst == src or dst in args.ignore:
                continue
            graph[src].add(dst)
            why[(src, dst)].append(f"{module_name(path)} -> {dep}")
    cycles = sccs(graph)
    for comp in cycles:
        print("cycle:", " <-> ".join(comp))
        for a in comp:
            for b in comp:
                for line in why.get((a, b), []):
                    print("   ", line)
    if not cycles:
        print(f"no import cycle between the {'modules of ' + args.package if args.package else 'packages'}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
