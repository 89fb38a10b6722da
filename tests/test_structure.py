"""The project's structure (tools/check_structure.py): no import circles between modules, no
module over 800 lines. The checker itself is tried on a small tree with known circles first."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_structure", ROOT / "tools" / "check_structure.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

# Split by issue 18 (rule types: alerts/engine.py; alert store and checkpoint store: alerts/state.py).


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_circles_through_lazy_and_relative_imports(tmp_path, monkeypatch):
    monkeypatch.setattr(check, "PACKAGES", ("devices", "ingest"))
    root = _tree(tmp_path, {
        "devices/__init__.py": "",
        "devices/a.py": "from devices import b\n",  # a submodule named in a from-import
        "devices/b.py": "def f():\n    from .a import x  # lazy, relative\n",
        "ingest/__init__.py": "",
        "ingest/stores/__init__.py": "",
        "ingest/stores/base.py": "import importlib\nSCHEMES = {'d': 'ingest.stores.d'}\n"
                                 "def load(n):\n    return importlib.import_module(SCHEMES[n])\n",
        "ingest/stores/d.py": "from ..stores.base import SCHEMES\nimport devices.a\n",  # by name: no edge back
        "ingest/x.py": "import typing\nif typing.TYPE_CHECKING:\n    from ingest.y import Y\n",
        "ingest/y.py": "from ingest import x\n",
    })
    graph = check.import_graph(root)
    assert graph["ingest.stores.d"] == {"ingest.stores.base", "devices.a"}
    assert check.circles(graph) == [["devices.a", "devices.b"], ["ingest.x", "ingest.y"]]
    assert check.long_modules(root, limit=2) == [("ingest/stores/base.py", 4), ("ingest/x.py", 3)]


def test_no_import_circles_between_modules():
    assert check.circles(check.import_graph()) == []


def test_no_module_over_800_lines():
    assert check.long_modules() == []


def test_the_script_runs_and_names_the_offenders():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_structure.py")],
                         capture_output=True, text=True, timeout=60)
    long = check.long_modules()
    assert run.returncode == (1 if long else 0), run.stdout + run.stderr
    for path, n in long:
        assert f"over 800 lines: {path} ({n})" in run.stdout
