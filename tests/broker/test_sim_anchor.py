"""The correctness anchor (S1 on real BTC 1h) and batch / replay parity on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sim_reference import bare_s1, load_csv, s1_signals

from runtime.broker.simulator import Simulator, simulate, updates_from
from runtime.plan.model import Execution, PortfolioInput, SleeveInput


def s1_portfolio(data: Path) -> PortfolioInput:
    """S1 of DESIGN.md: SMA 10/30 cross, all in, next open, 0.1% fee, no slippage, 10,000 USDT."""
    bars = load_csv(data / "BTCUSDT-1h.csv")
    el, xl = s1_signals(bars["close"])
    none = np.zeros(len(el), dtype=bool)
    s1 = SleeveInput(
        "main", "s1", "BTC/USDT", "1h", 1.0, bars["time"], bars["open"], bars["high"], bars["low"],
        bars["close"], bars["volume"], el, xl, none, none,
        execution=Execution(fill="next_open", fee_maker=0.001, fee_taker=0.001, slippage_bps=0.0),
    )  # fmt: skip
    return PortfolioInput(capital=10_000.0, quote="USDT", sleeves=(s1,))


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a fraction."""
    peak = np.maximum.accumulate(equity)
    return float(((peak - equity) / peak).max())


def test_s1_anchor(shared_data: Path) -> None:
    result = simulate(s1_portfolio(shared_data))
    assert len(result.trades) == 1180
    assert [t.exit_reason for t in result.trades[-1:]] == ["end"]
    assert result.trades[-1].exit_time is None
    assert sum(t.exit_reason == "signal" for t in result.trades) == 1179
    assert round(float(result.equity[-1]), 2) == 74_640.42
    assert round(max_drawdown(result.equity), 4) == 0.6646
    assert len(result.orders) == 2 * 1180 - 1
    assert result.cash.min() >= 0.0


def test_s1_matches_bare_numpy(shared_data: Path) -> None:
    pf = s1_portfolio(shared_data)
    s = pf.sleeves[0]
    entries, final, dd = bare_s1(s.open, s.close, s.entry_long, s.exit_long, 0.001, 10_000.0)
    result = simulate(pf)
    assert (len(result.trades), round(float(result.equity[-1]), 6)) == (entries, round(final, 6))
    assert abs(max_drawdown(result.equity) - dd) < 1e-12


def test_replay_gives_identical_trades_and_equity(shared_data: Path) -> None:
    pf = s1_portfolio(shared_data)
    batch = simulate(pf)
    sim = Simulator(pf)
    for point in updates_from(pf):
        sim.step(*point)
    replay = sim.finish()
    assert replay.trades == batch.trades
    assert replay.orders == batch.orders
    assert np.array_equal(replay.equity, batch.equity)
    assert np.array_equal(replay.time, batch.time)


def test_s1_excursions_are_the_extremes_of_the_bars_held(shared_data: Path) -> None:
    # Each entry fills at a bar's open, each exit at a later bar's open: the bars held through are
    # entry_bar .. exit_bar - 1 (to the last bar for the one still open), plus the two fill prices.
    pf = s1_portfolio(shared_data)
    s = pf.sleeves[0]
    t = simulate(pf).trade_table
    for e, x, done, entry, exit_price, mae, mfe in zip(
        t.entry_bar, t.exit_bar, t.closed, t.entry_price, t.exit_price, t.mae, t.mfe, strict=True
    ):
        end = x if done else x + 1
        low = min(s.low[e:end].min(), exit_price)
        high = max(s.high[e:end].max(), exit_price)
        assert mae == min(low / entry - 1.0, 0.0)
        assert mfe == max(high / entry - 1.0, 0.0)
    assert t.mae.min() < -0.1 and t.mfe.max() > 0.3
