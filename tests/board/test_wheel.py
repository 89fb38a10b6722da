"""The board ships in the wheel: its page, modules and vendored libraries (with their licence and
pinned version) are package data, so an installed citywatch serves the board offline."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from dashboards.board.api import STATIC

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def pins() -> dict[str, list[str]]:
    """vendor.sh's pins: ``name@version`` -> the files it copies."""
    text = (ROOT / "dashboards/board/vendor.sh").read_text()
    return {m[0]: m[1].split() for m in re.findall(r'^\s+"(\S+@\S+) ([^"]+)"$', text, re.M)}


def test_the_vendored_files_are_those_pinned():
    assert pins(), "no pins found in vendor.sh"
    for spec, files in pins().items():
        name = spec.rsplit("@", 1)[0]
        d = STATIC / "vendor" / name
        assert (d / "VERSION").read_text().splitlines()[0] == spec
        for f in [*files, "LICENSE"]:
            assert (d / Path(f).name).is_file(), f"{name}: {f} missing; run dashboards/board/vendor.sh"


def test_the_wheel_carries_the_board_and_an_install_serves_it(tmp_path):
    """As a user builds it (pip, with build isolation: the build backend comes from the index)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("citywatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"dashboards/board/static/{p.relative_to(STATIC).as_posix()}"
                for p in STATIC.rglob("*") if p.is_file()}
    assert expected <= names, sorted(expected - names)
    assert "dashboards/board/static/vendor/uplot/LICENSE" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    clean = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: the installed copy, not the source tree
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, timeout=300, env=clean)
    out = subprocess.run([py, "-c", "from dashboards.board.api import STATIC; print(STATIC);"
                          "print((STATIC / 'vendor/uplot/uPlot.esm.js').stat().st_size)"],
                         capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert out.returncode == 0, out.stderr
    where, size = out.stdout.split()
    assert str(env_dir) in where and int(size) == (STATIC / "vendor/uplot/uPlot.esm.js").stat().st_size
