"""Shared test fixtures: where the real candle data lives, and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The repository root (the folder holding grammar.lark).
ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The folder of real Binance candles: $STRAT_DATA_DIR, else ../shared/data; None when absent."""
    path = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    return path if (path / "BTCUSDT-1h.csv").exists() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real candle folder; skips the test cleanly when it is not there."""
    path = data_dir()
    if path is None:
        pytest.skip("real candle data (../shared/data) is not available")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the default store at a throwaway SQLite file, so no test reads or writes the user's store."""
    os.environ["STRAT_DB_URL"] = f"sqlite:///{tmp_path_factory.mktemp('store') / 'strat.db'}"
