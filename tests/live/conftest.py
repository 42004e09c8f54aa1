"""Fixtures of the live-trading tests: the fake Binance spot exchange on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The fake lives beside the market-data tests, which use it too; the editor's saves beside the run tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "run"))
from fake_binance import JAN_1_2024, FakeBinance


@pytest.fixture
def fake_exchange() -> Iterator[FakeBinance]:
    """A started fake Binance (no candles, empty account, clock at 2024-01-01); fails on unknown endpoints.

    Faults that answer late ("timeout", "timeout_exec") take 0.6 s: clients in tests use a 0.3 s timeout.
    """
    server = FakeBinance(now_ms=JAN_1_2024, timeout_s=0.6, retry_after_s=0).start()
    yield server
    server.stop()
    assert not server.unknown
