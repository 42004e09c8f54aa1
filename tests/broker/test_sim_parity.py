"""Cross-checks: the simulator against a plain-loop reference, and the replay driver against the batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sim_builders import HOUR, T0
from sim_reference import load_csv, loop_reference

from runtime.broker.result import BacktestResult
from runtime.broker.simulator import Simulator, simulate, updates_from
from runtime.plan.model import (
    All,
    Any,
    Bracket,
    Compare,
    Execution,
    Not,
    PortfolioInput,
    RiskRule,
    Sizing,
    SleeveInput,
)


def random_signals(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Four sparse random decision arrays (entry_long, exit_long, entry_short, exit_short)."""
    rng = np.random.default_rng(seed)
    return tuple(rng.random(n) < p for p in (0.05, 0.05, 0.04, 0.04))


def make_sleeve(name: str, bars: dict[str, np.ndarray], tf: str, seed: int, **kw: object) -> SleeveInput:
    """A sleeve over the given candles with random decisions."""
    el, xl, es, xs = random_signals(len(bars["close"]), seed)
    base = SleeveInput(
        name, "random", f"{name.upper()}/USDT", tf, 1.0, bars["time"], bars["open"], bars["high"],
        bars["low"], bars["close"], bars["volume"], el, xl, es, xs,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stop", "target", "slip_bps", "fraction"),
    [(None, None, 0.0, 1.0), (0.02, 0.03, 5.0, 0.5), (0.01, None, 2.0, 0.8), (None, 0.02, 0.0, 0.3)],
)
def test_matches_the_plain_loop_reference(
    shared_data: Path, stop: float | None, target: float | None, slip_bps: float, fraction: float
) -> None:
    bars = {k: v[:8000] for k, v in load_csv(shared_data / "BTCUSDT-1h.csv").items()}
    bracket = Bracket(
        stop=None if stop is None else ("percent", stop),
        take_profit=None if target is None else ("percent", target),
    )
    s = make_sleeve(
        "btc", bars, "1h", seed=7, bracket=bracket, sizing=Sizing("equity_pct", fraction),
        execution=Execution(fee_maker=0.001, fee_taker=0.001, slippage_bps=slip_bps),
    )  # fmt: skip
    result = simulate(PortfolioInput(10_000.0, "USDT", (s,)))
    signals = (s.entry_long, s.exit_long, s.entry_short, s.exit_short)
    ref_trades, ref_equity = loop_reference(bars, signals, 0.001, slip_bps / 1e4, fraction, stop, target)
    got = [
        (1 if t.side == "long" else -1, t.entry_bar, t.exit_bar, t.entry_price, t.exit_price, t.pnl)
        for t in result.trades
    ]
    assert len(got) == len(ref_trades) > 100
    assert [g[:3] for g in got] == [r[:3] for r in ref_trades]
    assert np.allclose(
        np.array([g[3:] for g in got]), np.array([r[3:] for r in ref_trades]), rtol=1e-9, atol=1e-9
    )
    assert float(result.equity[-1]) == pytest.approx(ref_equity, rel=1e-9)


def synthetic_bars(n: int, seed: int, step: int) -> dict[str, np.ndarray]:
    """A seeded random walk of candles (not market data; only for parity checks)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.002, n))
    wick = np.abs(rng.normal(0.0, 0.006, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    volume = rng.uniform(0.0, 50.0, n)
    return {"time": T0 + step * np.arange(n, dtype=np.int64), "open": open_, "high": high, "low": low,
            "close": close, "volume": volume}  # fmt: skip


def demo_like(
    btc: dict[str, np.ndarray], eth: dict[str, np.ndarray], sol: dict[str, np.ndarray]
) -> PortfolioInput:
    """Three sleeves with stops, targets, trailing stops, partial fills and portfolio / sleeve risk rules."""
    atr_like = np.abs(btc["high"] - btc["low"]) * 3.0
    sleeves = (
        make_sleeve(
            "btc", btc, "1h", 1, weight=0.4,
            bracket=Bracket(stop=("distance", atr_like), take_profit=("R", 2.0), breakeven_after=1.0),
            sizing=Sizing("risk_per_trade", 0.01),
            execution=Execution(fee_maker=0.0002, fee_taker=0.001, slippage_bps=5.0),
        ),
        make_sleeve(
            "eth", eth, "1h", 2, weight=0.3, max_entries=2, scale_in=0.5,
            bracket=Bracket(trailing_stop=("percent", 0.03), trail_after=("percent", 0.01), max_hold_bars=48,
                            cooldown_bars=3),
            execution=Execution(fee_maker=0.001, fee_taker=0.001, max_volume=0.2, volume_impact_k=0.05),
        ),
        make_sleeve(
            "sol", sol, "4h" if len(sol["time"]) < len(btc["time"]) else "1h", 3, weight=0.3,
            bracket=Bracket(stop=("percent", 0.04), trailing_stop=("percent", 0.05)),
            sizing=Sizing("kelly", kelly_lookback=10), execution=Execution(latency_bars=1),
        ),
    )  # fmt: skip
    risk = (
        RiskRule("portfolio", "halt", "halt when drawdown > 60%", Compare("drawdown", ">", 0.60)),
        RiskRule("portfolio", "pause", "pause 24h when day_pnl < -2%", Compare("day_pnl", "<", -0.02),
                 pause_ms=24 * HOUR),
        RiskRule("portfolio", "cap", "cap gross_exposure at 90%", cap_metric="gross_exposure", cap_limit=0.9),
        RiskRule("portfolio", "cap", "cap position at 25%", cap_metric="position", cap_limit=0.25),
        RiskRule("sleeve", "pause", "pause 12h when consecutive_losses >= 3",
                 Compare("consecutive_losses", ">=", 3.0), pause_ms=12 * HOUR),
        RiskRule("sleeve", "flatten", "flatten when drawdown > 8% and not week_pnl > 0",
                 All((Compare("drawdown", ">", 0.08), Not(Compare("week_pnl", ">", 0.0))))),
        RiskRule("sleeve", "flatten", "flatten when trades_today > 5 or exposure > 2",
                 Any((Compare("trades_today", ">", 5.0), Compare("exposure", ">", 2.0)))),
    )  # fmt: skip
    return PortfolioInput(10_000.0, "USDT", sleeves, rebalance_ms=7 * 24 * HOUR, risk=risk)


def replay(pf: PortfolioInput) -> BacktestResult:
    """Feed the portfolio's history point by point through the incremental driver."""
    sim = Simulator(pf)
    for point in updates_from(pf):
        sim.step(*point)
    return sim.finish()


def assert_identical(a: BacktestResult, b: BacktestResult) -> None:
    """Every output of two runs is identical, bit for bit."""
    assert a.trades == b.trades
    assert a.orders == b.orders
    assert a.risk_events == b.risk_events
    for name in ("time", "equity", "cash", "exposure"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_replay_equals_batch_on_a_synthetic_three_sleeve_portfolio() -> None:
    pf = demo_like(
        synthetic_bars(1500, 1, HOUR), synthetic_bars(1500, 2, HOUR), synthetic_bars(375, 3, 4 * HOUR)
    )
    batch = simulate(pf)
    kinds = {e.action for e in batch.risk_events}
    reasons = {t.exit_reason for t in batch.trades}
    assert {"cap", "pause", "flatten"} <= kinds
    assert {"signal", "stop_loss", "take_profit", "trailing_stop", "risk"} <= reasons
    assert batch.cash.min() >= 0.0
    assert_identical(replay(pf), batch)


def test_replay_equals_batch_on_the_real_demo_data(shared_data: Path) -> None:
    bars = [load_csv(shared_data / f"{s}USDT-1h.csv") for s in ("BTC", "ETH", "SOL")]
    start = bars[1]["time"][0]
    btc = {k: v[bars[0]["time"] >= start] for k, v in bars[0].items()}
    pf = demo_like(btc, bars[1], bars[2])
    batch = simulate(pf)
    assert len(batch.trades) > 100
    assert_identical(replay(pf), batch)
