"""Fixtures of the board's tests: one real node per module (tests/board/support.py) and headless
Chromium (Debian's, driven by Playwright; skipped with the reason when it is missing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.board.support import ARTIFACTS, CHROMIUM, start_board_node

DEMO_SECRET = "board-demo-secret"  # the demo receiver's (tests/board/test_browser.py)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    b = start_board_node(tmp_path_factory.mktemp("board"), demo_secret=DEMO_SECRET)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Debian's chromium, never Playwright's own download; no sandbox as root in a container
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def shots(request) -> Path:
    """Where a test keeps its screenshots (tests/artifacts/board/<test>/, gitignored)."""
    d = ARTIFACTS / request.node.name
    d.mkdir(parents=True, exist_ok=True)
    return d
