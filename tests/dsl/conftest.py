"""Fixtures of the language tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsl_helpers import ROOT


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from the repository root, so that file names in diagnostics and IR are relative."""
    monkeypatch.chdir(ROOT)
    return ROOT
