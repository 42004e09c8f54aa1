"""Fixtures of the control tests: the fake exchange, a running paper session, headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_session import CHROMIUM, Browser, PaperSession
from fake_binance import FakeBinance
from test_paper import HOUR, T0


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange with the real candles, its clock half-way into the bar before T0."""
    server = FakeBinance(data_dir=shared_data, now_ms=T0 - HOUR // 2).start()
    yield server
    server.stop()


@pytest.fixture
def paper(market: FakeBinance, tmp_path: Path) -> Iterator[PaperSession]:
    """A running paper session of the two-sleeve spec, its API open (no token)."""
    session = PaperSession(market, tmp_path)
    yield session
    session.stop()


@pytest.fixture
def browser_factory() -> Iterator[Any]:
    """Playwright, or a clean skip without it or without Debian's Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as pw:
        made: list[Browser] = []

        def make(base: str) -> Browser:
            """A new browser page for the server at `base`."""
            made.append(Browser(pw, base))
            return made[-1]

        yield make
        for b in made:
            b.browser.close()
