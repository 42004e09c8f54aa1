"""Helpers of the control tests: the paper session with its API, and a headless Chromium page.

`PaperSession` (tests/live/paper_session.py) is a real `strat run --paper` process of SPEC, with its API.
`Browser` is a headless Chromium page for the dashboard tests. (A module of its own, not conftest.py:
every test folder has a conftest module, and `from conftest import` would find whichever came first.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The paper session lives beside the live tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "live"))
from paper_session import SPEC, PaperSession

__all__ = ["CHROMIUM", "SPEC", "Browser", "PaperSession"]

# Debian's Chromium, driven by playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
# Flags for a sandbox-less, offline, quiet headless browser (RECIPES.md §6).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class Browser:
    """A headless Chromium page recording console errors and requests that leave the server."""

    def __init__(self, pw: Any, base: str) -> None:
        """Launch Chromium and open a page; requests not to `base` are recorded as remote."""
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # the browser
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1600})  # its page
        self.errors: list[str] = []  # console errors and uncaught exceptions
        self.remote: list[str] = []  # requests to anything but the server (data: and blob: aside)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "request",
            lambda r: None if r.url.startswith((base, "data:", "blob:")) else self.remote.append(r.url),
        )
