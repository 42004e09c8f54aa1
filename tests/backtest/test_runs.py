"""Saved runs: round trip through SQLite (and PostgreSQL when CI provides one), `strat runs` commands."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest_report import HOUR, load_candles, s1_result, small_result

from runtime.backtest.metrics import compute_metrics
from runtime.commands import runs as commands
from runtime.store.runs import RunRecord, RunStore
from runtime.store.schema import close_store, open_store

# The spec text saved with the test runs.
SPEC = "strategy s1 {\n    entry long when sma(close, 10) crosses above sma(close, 30)\n}\n"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL: a fresh SQLite file, or $STRAT_TEST_PG_URL (skipped when unset)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = os.environ.get("STRAT_TEST_PG_URL", "")
        if not url:
            pytest.skip("STRAT_TEST_PG_URL is not set")
    yield url
    close_store(url)


def _record(created_at: int = 1_714_000_000_000, synthetic: bool = False, **changes: object) -> RunRecord:
    """A record of the small two-sleeve result (on synthetic candles when `synthetic`)."""
    result = small_result(synthetic)
    record = RunRecord.from_result(
        result,
        compute_metrics(result, HOUR),
        spec_path="specs/portfolio.strat",
        spec_text=SPEC,
        params=(("fast", "12"), ("stop", "2%")),
    )
    return dataclasses.replace(record, created_at=created_at, **changes)  # type: ignore[arg-type]


def test_record_from_result() -> None:
    record = _record()
    assert (record.spec_name, record.mode) == ("portfolio", "backtest")
    # Open of the first bar (its close minus one hour) to the close of the last.
    assert (record.data_start, record.data_end) == (1_704_067_200_000, 1_704_067_200_000 + 4 * HOUR)
    assert record.spec_hash == hashlib.sha256(SPEC.encode()).hexdigest()


def test_save_and_read_back(db_url: str) -> None:
    record = _record()
    runs = RunStore(open_store(db_url))
    run_id = runs.save(record)
    stored = runs.get(run_id)
    assert stored is not None and stored.id == run_id
    back = stored.record
    assert (back.spec_name, back.spec_path, back.spec_text, back.spec_hash) == (
        "portfolio", "specs/portfolio.strat", SPEC, record.spec_hash,
    )  # fmt: skip
    assert (back.params, back.mode, back.created_at) == (
        (("fast", "12"), ("stop", "2%")),
        "backtest",
        record.created_at,
    )
    assert (back.data_start, back.data_end) == (record.data_start, record.data_end)
    assert back.summary == record.summary
    assert back.trades == record.trades
    assert back.equity.tolist() == [100.0, 110.0, 99.0, 120.0]
    assert back.equity_time.dtype == np.int64 and back.equity_time.tolist() == record.equity_time.tolist()


def test_list_newest_first_and_unknown_id(db_url: str) -> None:
    store = RunStore(open_store(db_url))
    first = store.save(_record())
    second = store.save(_record(created_at=1_714_000_100_000, mode="replay"))
    assert second > first
    runs = store.latest(limit=2)
    assert [r.id for r in runs] == [second, first]
    newest = runs[0]
    assert (newest.spec_name, newest.mode, newest.created_at) == ("portfolio", "replay", 1_714_000_100_000)
    assert (newest.total_return, newest.max_drawdown) == (pytest.approx(0.2), pytest.approx(0.1))
    assert newest.sharpe == pytest.approx(37.0839, rel=1e-4)
    assert store.get(second + 1000) is None


def test_s1_run_round_trips_every_trade(db_url: str, shared_data: Path) -> None:
    result = s1_result(load_candles(shared_data / "BTCUSDT-1h.csv"))
    record = RunRecord.from_result(
        result, compute_metrics(result, HOUR), spec_path="s1.strat", spec_text=SPEC
    )
    runs = RunStore(open_store(db_url))
    stored = runs.get(runs.save(record))
    assert stored is not None
    assert len(stored.record.trades) == 1180 and stored.record.trades == result.trades
    assert np.array_equal(stored.record.equity, result.equity)
    assert round(stored.record.summary.max_drawdown, 4) == 0.6646


def _cli(argv: list[str]) -> int:
    """Parse argv with only this module's commands registered and run the handler."""
    parser = argparse.ArgumentParser(prog="strat")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_runs_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    try:
        assert _cli(["runs", "--db", url]) == 0
        assert capsys.readouterr().out == "no saved runs\n"
        run_id = RunStore(open_store(url)).save(_record())
        assert _cli(["runs", "--db", url]) == 0
        listing = capsys.readouterr().out
        assert "  1  2024-04-24 23:06  portfolio  2024-01-01 → 2024-01-01  20.00%  10.00%   37.08" in listing
        # Every cell whole when piped (no "portfol…"), synthetic runs marked.
        RunStore(open_store(url)).save(_record(synthetic=True))
        monkeypatch.delenv("COLUMNS")
        assert _cli(["runs", "--db", url]) == 0
        listing = capsys.readouterr().out
        assert (
            "  2  2024-04-24 23:06  portfolio [SYNTHETIC]  2024-01-01 → 2024-01-01  20.00%  10.00%" in listing
        )
        assert (
            "  1  2024-04-24 23:06  portfolio              2024-01-01 → 2024-01-01  20.00%  10.00%" in listing
        )
        assert _cli(["runs", "--db", url, "show", str(run_id), "--trades"]) == 0
        shown = capsys.readouterr().out
        assert shown.startswith("Run 1: portfolio (backtest), saved 2024-04-24T23:06:40Z\n")
        assert "Parameters: fast=12, stop=2%\n" in shown
        assert "Data: 2024-01-01T00:00:00Z → 2024-01-01T04:00:00Z\n" in shown
        assert "Backtest summary" in shown and "Trades (2)" in shown and "take_profit" in shown
        assert _cli(["runs", "show", "99", "--db", url]) == 1
        assert capsys.readouterr().out == "no saved run with id 99\n"
    finally:
        close_store(url)


def test_a_store_of_an_earlier_version_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    """Saving into a store whose trades table predates the mae/mfe columns works; old rows stay."""
    import sqlite3

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    RunStore(open_store(url)).save(_record())
    close_store(url)
    # Make it the store an earlier version wrote: no mae / mfe columns.
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE backtest_run_trades DROP COLUMN mae")
        db.execute("ALTER TABLE backtest_run_trades DROP COLUMN mfe")
    store = RunStore(open_store(url))
    try:
        assert store.save(_record()) == 2
        assert [run.id for run in store.latest(10)] == [2, 1]
    finally:
        close_store(url)
