"""Fixtures of the optimizer tests: the test spec, and its grid block run once."""

from __future__ import annotations

from pathlib import Path

import pytest
from optimize_helpers import SPEC, optimize


@pytest.fixture(scope="session")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test spec, written once."""
    path = tmp_path_factory.mktemp("spec") / "sweep.strat"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def grid_out(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid block run once, with its report."""
    out = tmp_path_factory.mktemp("grid")
    assert optimize(spec, "grid_sweep", out, "--report") == 0
    return out
