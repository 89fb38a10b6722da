#!/usr/bin/env python3
"""Two structural checks over the project's packages, read from the source (nothing imported):

- no import circles between modules: module A imports B (directly or through others) and B
  imports A. Edges come from every ``import``/``from ... import`` statement in the module's
  syntax tree, wherever it stands: an import inside a function (a lazy import) counts as an
  import, and so does one under ``if TYPE_CHECKING:`` (lazy or not, the two modules depend on
  each other). Not counted: modules loaded by name with ``importlib`` (plugins registered by
  name, e.g. ``SCHEMES`` in ingest/stores/base.py), which are not import statements. An edge
  goes to the most specific project module named (``from alerts.dispatch import outbox`` is
  ``alerts.dispatch.outbox``, ``from alerts.dispatch import Dispatcher`` is the package
  ``alerts.dispatch``); the implicit import of parent packages is not an edge.
- no module over MAX_LINES lines.

    python tools/check_structure.py     # prints the offenders; exit status 1 if there are any

tests/test_structure.py runs both checks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("devices", "ingest", "alerts", "simulators", "dashboards", "citywatch")
MAX_LINES = 800


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the packages: dotted name -> file (a package is its ``__init__.py``)."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return None


def _imported(module: str, path: Path, tree: ast.AST, known: dict[str, Path]) -> Iterable[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):  # every statement, inside functions too
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{a.name}" for a in node.names]  # a submodule, or a name in origin
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                yield target


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {m: set(_imported(m, p, ast.parse(p.read_text(encoding="utf-8"), str(p)), known))
            for m, p in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth: at most the number of modules (~200)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def long_modules(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(path, lines) of every module over ``limit`` lines, longest first."""
    sizes = [(str(p.relative_to(root)), len(p.read_text(encoding="utf-8").splitlines()))
             for p in modules(root).values()]
    return sorted(((p, n) for p, n in sizes if n > limit), key=lambda x: -x[1])


def main() -> int:
    found = circles(import_graph())
    for c in found:
        print("import circle:", " <-> ".join(c))
    long = long_modules()
    for path, n in long:
        print(f"over {MAX_LINES} lines: {path} ({n})")
    return 1 if found or long else 0


if __name__ == "__main__":
    sys.exit(main())
