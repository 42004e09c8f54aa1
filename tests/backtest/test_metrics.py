"""Metrics: exact values on hand-built results, S1's anchor on real data, ratios against pandas."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest_report import HOUR, T0, load_candles, s1_result, small_result

from runtime.backtest.metrics import (
    DAY_MS,
    MonthlyReturn,
    compute_metrics,
    drawdown,
    equity_curve,
    iso_time,
    iso_times,
)
from runtime.broker.result import BacktestResult, OrderTable, TradeTable


def _pandas_ratios(result: BacktestResult, bar_ms: int) -> tuple[float, float, float, float]:
    """Sharpe, Sortino, volatility and CAGR computed independently with pandas."""
    equity = pd.Series([result.capital, *result.equity.tolist()])
    rets = equity.pct_change().dropna()
    per_year = 365 * 24 * 3600 * 1000 / bar_ms
    sharpe = rets.mean() / rets.std() * math.sqrt(per_year)
    sortino = rets.mean() / math.sqrt((rets.clip(upper=0) ** 2).mean()) * math.sqrt(per_year)
    vol = rets.std() * math.sqrt(per_year)
    span = pd.Timedelta(milliseconds=int(result.time[-1] - result.time[0] + bar_ms))
    cagr = (equity.iloc[-1] / equity.iloc[0]) ** (pd.Timedelta(days=365) / span) - 1
    return sharpe, sortino, vol, cagr


def _months(months: tuple[MonthlyReturn, ...]) -> list[tuple[int, int, float]]:
    """Monthly returns as plain tuples, to compare with approximate values."""
    return [(m.year, m.month, m.ret) for m in months]


def test_small_result_exact_values() -> None:
    s = compute_metrics(small_result(), HOUR)
    assert (s.final_equity, s.total_return, s.bars, s.bar_ms) == (120.0, pytest.approx(0.2), 4, HOUR)
    assert s.max_drawdown == pytest.approx(0.1, abs=1e-15)
    # Peak 110 at bar 1, back above it at bar 3.
    assert s.max_drawdown_duration_bars == 2
    assert (s.entries, s.closed_trades) == (2, 1)
    assert s.pnl == pytest.approx(19.69)
    assert (s.win_rate, s.profit_factor, s.expectancy) == (1.0, None, 9.79)
    assert (s.avg_hold_bars, s.median_hold_bars) == (2.0, 2.0)
    assert s.exposure == 0.75
    assert s.avg_exposure == pytest.approx(0.4375)
    assert s.turnover == pytest.approx(310.0 / 107.25)
    assert s.fees == pytest.approx(0.31)
    assert (s.start, s.end) == ("2024-01-01T00:00:00Z", "2024-01-01T04:00:00Z")
    assert s.synthetic is False and s.quote == "USDT" and s.capital == 100.0
    assert _months(s.monthly_returns) == [(2024, 1, pytest.approx(0.2))]


def test_small_result_ratios_match_pandas() -> None:
    result = small_result()
    s = compute_metrics(result, HOUR)
    sharpe, sortino, vol, cagr = _pandas_ratios(result, HOUR)
    assert s.sharpe == pytest.approx(sharpe, rel=1e-12)
    assert s.sortino == pytest.approx(sortino, rel=1e-12)
    assert s.volatility == pytest.approx(vol, rel=1e-12)
    assert s.cagr == pytest.approx(cagr, rel=1e-9) and s.cagr == pytest.approx(1.2**2190 - 1, rel=1e-9)
    assert s.calmar == pytest.approx(s.cagr / 0.1, rel=1e-9)


def test_cagr_too_large_to_annualise_is_undefined() -> None:
    # Four minutes compounding 20% overflows any annual rate: reported as undefined, not inf.
    minutes = T0 + 60_000 * np.arange(1, 5, dtype=np.int64)
    s = compute_metrics(dataclasses.replace(small_result(), time=minutes), 60_000)
    assert (s.cagr, s.calmar) == (None, None)


def test_breakdowns_per_sleeve_and_symbol() -> None:
    s = compute_metrics(small_result(), HOUR)
    trend, revert = s.sleeves
    assert (trend.name, trend.strategy, trend.symbol, trend.weight) == ("trend", "ma_cross", "BTC/USDT", 0.6)
    assert (trend.entries, trend.closed_trades, trend.win_rate) == (1, 1, 1.0)
    assert trend.fees == pytest.approx(0.21) and trend.contribution == pytest.approx(0.0979)
    # The open short counts as an entry, not as a closed trade, and has no closed-trade statistics.
    assert (revert.entries, revert.closed_trades, revert.win_rate, revert.expectancy) == (1, 0, None, None)
    assert (revert.pnl, revert.fees, revert.avg_hold_bars) == (9.9, 0.1, None)
    assert [x.symbol for x in s.symbols] == ["BTC/USDT", "ETH/USDT"]
    assert s.symbols[1].contribution == pytest.approx(0.099)


def test_flat_run_has_undefined_ratios() -> None:
    result = dataclasses.replace(
        small_result(),
        equity=np.full(4, 100.0),
        exposure=np.zeros(4),
        trade_table=TradeTable.of(()),
        order_table=OrderTable.of(()),
    )
    s = compute_metrics(result, HOUR)
    assert (s.sharpe, s.sortino, s.calmar, s.profit_factor, s.win_rate) == (None, None, None, None, None)
    assert (s.max_drawdown, s.max_drawdown_duration_bars, s.volatility, s.exposure, s.turnover) == (
        0.0,
        0,
        0.0,
        0.0,
        0.0,
    )
    assert s.cagr == 0.0 and s.entries == 0


def test_drawdown_duration_runs_to_the_end_when_never_recovered() -> None:
    result = dataclasses.replace(small_result(), equity=np.array([100.0, 120.0, 90.0, 100.0]))
    s = compute_metrics(result, HOUR)
    assert s.max_drawdown == pytest.approx(0.25)
    assert s.max_drawdown_duration_bars == 2
    curve = equity_curve(result)
    assert curve.tolist() == [100.0, 100.0, 120.0, 90.0, 100.0]
    assert drawdown(curve) == pytest.approx([0.0, 0.0, 0.0, 0.25, 1 / 6])


def test_monthly_returns_split_on_utc_months() -> None:
    # Daily bars closing on Jan 31, Feb 1 (the Jan 31 bar) and Feb 2.
    jan30 = T0 + 29 * DAY_MS
    result = dataclasses.replace(
        small_result(),
        time=jan30 + DAY_MS * np.arange(1, 4, dtype=np.int64),
        equity=np.array([100.0, 105.0, 84.0]),
        cash=np.zeros(3),
        exposure=np.zeros(3),
    )
    s = compute_metrics(result, DAY_MS)
    assert _months(s.monthly_returns) == [(2024, 1, pytest.approx(0.05)), (2024, 2, pytest.approx(-0.2))]
    assert (s.start, s.end) == ("2024-01-30T00:00:00Z", "2024-02-02T00:00:00Z")


def test_empty_result_is_an_error() -> None:
    empty = dataclasses.replace(
        small_result(),
        time=np.array([], dtype=np.int64),
        equity=np.array([]),
        cash=np.array([]),
        exposure=np.array([]),
    )
    with pytest.raises(ValueError, match="the backtest produced no bars"):
        compute_metrics(empty, HOUR)


def test_iso_times_keep_milliseconds_only_when_needed() -> None:
    assert iso_times(np.array([T0, T0 + HOUR])) == ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"]
    assert iso_times(np.array([T0, T0 + HOUR - 1])) == [
        "2024-01-01T00:00:00.000Z",
        "2024-01-01T00:59:59.999Z",
    ]
    assert iso_time(0) == "1970-01-01T00:00:00Z"


def test_s1_anchor_on_real_btc(shared_data: Path) -> None:
    result = s1_result(load_candles(shared_data / "BTCUSDT-1h.csv"))
    s = compute_metrics(result, HOUR)
    assert (s.entries, s.closed_trades, s.bars) == (1180, 1179, 58_419)
    assert round(s.final_equity, 2) == 74_640.42
    assert round(s.max_drawdown, 4) == 0.6646
    assert (s.start, s.end) == ("2017-08-17T04:00:00Z", "2024-04-21T15:00:00Z")
    assert s.pnl == pytest.approx(s.final_equity - 10_000.0, rel=1e-12)
    sharpe, sortino, vol, cagr = _pandas_ratios(result, HOUR)
    assert s.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert s.sortino == pytest.approx(sortino, rel=1e-9)
    assert s.volatility == pytest.approx(vol, rel=1e-9)
    assert s.cagr == pytest.approx(cagr, rel=1e-9)
    assert s.calmar == pytest.approx(cagr / s.max_drawdown, rel=1e-9)
    # Exposure: bars with a position over all bars, from the trades' own holding periods.
    held = sum(t.exit_bar - t.entry_bar for t in result.trades) + 1
    assert s.exposure == held / 58_419
    # Monthly returns chain back to the total return.
    assert np.prod([1 + m.ret for m in s.monthly_returns]) == pytest.approx(1 + s.total_return, rel=1e-9)
    assert (s.monthly_returns[0].year, s.monthly_returns[0].month) == (2017, 8)
    assert len(s.monthly_returns) == 81
