"""`sweep` gives, member for member and in order, exactly what `backtest` + `compute_metrics` give."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dsl.checker import check_source
from dsl.ir import PortfolioIR, Program
from runtime.backtest.drive import backtest, batch_signals
from runtime.backtest.metrics import compute_metrics
from runtime.backtest.sweep import MemberResult, fast, sweep
from runtime.broker.simulator import simulate_members
from runtime.commands.source import Source, SourceKind
from runtime.data.candles import Candles
from runtime.data.synthetic import generate
from runtime.graph.drivers import SharedValues, run_batch
from runtime.plan.inputs import portfolio_input, sleeve_input
from runtime.plan.plan import CandleLoader, RunPlan, plan
from runtime.plan.select import select

# 2020-01-01 00:00 UTC and 2020-07-01 00:00 UTC, ms: the slice of real BTC 1h bars the grid runs over.
T2020 = 1_577_836_800_000
T2020_07 = 1_593_561_600_000
T2020_05 = 1_588_291_200_000  # 2020-05-01 00:00 UTC

# An SMA cross (the optimizer's benchmark strategy), long only.
SMA = """strat 1
strategy smax:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    param fast = 5  in 5..53 step 2
    param slow = 20 in 20..215 step 5
    f = sma(close, fast)
    s = sma(close, slow)
    entry long when f crosses above s
    exit  long when f crosses below s
    size: equity_pct(100%)
    execution:
        fill:     next_open
        fee:      0.1%
        slippage: 0bps
"""

# Both sides, a distance stop from ATR, an R target, a trailing stop, a time limit, risk sizing.
BRACKETS = """strat 1
strategy bx:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    param fast = 8    in 4..20 step 2
    param slow = 30   in 20..60 step 5
    param stop = 2.0  in 1.0..4.0 step 0.5
    param trail = 4%  in 2%..8% step 1%
    f = ema(close, fast)
    s = sma(close, slow)
    entry long  when f crosses above s
    exit  long  when f crosses below s
    entry short when f crosses below s
    exit  short when f crosses above s
    stop_loss:     stop * atr(14)
    take_profit:   3R
    trailing_stop: trail
    max_hold:      3d
    size:          risk_per_trade(1%)
    execution:
        fee:      0.1%
        slippage: 2bps
"""

# Percent stop and target, a cooldown and a 4h filter read on the 1h clock (an align node).
PERCENT = """strat 1
strategy px:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    param fast = 6   in 4..20 step 2
    param slow = 24  in 20..60 step 4
    param stop = 2%  in 1%..5% step 1%
    f = sma(close, fast)
    s = sma(close, slow)
    h4 = bars(4h)
    trend = sma(h4.close, 10)
    entry long when f crosses above s and close > trend
    exit  long when f crosses below s
    stop_loss:   stop
    take_profit: 6%
    cooldown:    5h
    size:        equity_pct(50%)
    execution:
        fee:      0.1%
        slippage: 1bps
"""

# A rule that reads trade state: decided bar by bar, so the plain path.
STATE = SMA.replace("    exit  long when f crosses below s\n", "    exit  long when bars_since_entry >= 30\n")

# A volume cap far below the bars' volume: an order fills in many parts (more rows than entries).
CAPPED = SMA.replace("        slippage: 0bps\n", "        slippage: 0bps\n        max_volume: 0.001%\n")

# Two sleeves sharing one account: the plain path.
PAIR = (
    SMA
    + """
portfolio pair:
    capital: 10_000 USDT
    sleeve a = smax(fast=7, slow=30) weight 50%
    sleeve b = smax(fast=11, slow=60) weight 50%
"""
)


def _program(text: str) -> Program:
    """A checked program (no diagnostics)."""
    checked = check_source(text)
    assert checked.program is not None, checked.render()
    return checked.program


def _csv_loader(data: Path) -> CandleLoader:
    """Real Binance candles from the shared folder, each series loaded once (the same objects after)."""
    source = Source(kind=SourceKind.CSV, path=data / "BTCUSDT-1h.csv")
    loaded: dict[tuple[object, ...], Candles] = {}

    def load(symbol: str, timeframe: str, first: int | None, last: int | None) -> Candles:
        """The candles of one clock over a range."""
        key = (symbol, timeframe, first, last)
        if key not in loaded:
            loaded[key] = source.load(symbol, timeframe, first, last).candles
        return loaded[key]

    return load


def _synthetic_loader(bars: int, seed: int, fresh: bool = False) -> CandleLoader:
    """Synthetic candles from 2020-01-01; `fresh`: new (equal) objects at every call."""
    made: dict[str, Candles] = {}

    def load(symbol: str, timeframe: str, first: int | None, last: int | None) -> Candles:
        """The candles of one clock (the same bars whatever the range asked)."""
        if fresh or timeframe not in made:
            made[timeframe] = generate(
                symbol, timeframe, T2020, bars * 3_600_000 // _ms(timeframe), seed=seed
            )
        return made[timeframe]

    return load


def _ms(timeframe: str) -> int:
    """A timeframe in ms."""
    return {"1h": 3_600_000, "4h": 14_400_000}[timeframe]


def _member(
    program: Program,
    params: dict[str, float],
    load: CandleLoader,
    start: int | None = None,
    end: int | None = None,
    portfolio: PortfolioIR | None = None,
) -> RunPlan:
    """One planned member: the program's strategy (or `portfolio`) with `params` set on its first sleeve."""
    chosen = portfolio or select(program, None, None)
    sleeve = chosen.sleeves[0].model_copy(update={"overrides": tuple(params.items())})
    return plan(
        program, chosen.model_copy(update={"sleeves": (sleeve, *chosen.sleeves[1:])}), load, start, end
    )


def _plain(rp: RunPlan) -> MemberResult:
    """What the plain path gives for a member."""
    result = backtest(rp)
    bar_ms = min(sp.graph.base.ms for sp in rp.sleeves)
    return MemberResult(compute_metrics(result, bar_ms), result.time, result.equity)


def _assert_same(
    got: Sequence[MemberResult], plans: Sequence[RunPlan], known: Sequence[MemberResult] | None = None
) -> None:
    """Every result is exactly the plain path's for its member (`known`: those results), in order."""
    assert len(got) == len(plans)
    for i, (result, rp) in enumerate(zip(got, plans, strict=True)):
        expected = _plain(rp) if known is None else known[i]
        assert result.summary == expected.summary
        assert result.summary.model_dump_json() == expected.summary.model_dump_json()
        assert result.time.dtype == np.int64 and result.equity.dtype == np.float64
        assert np.array_equal(result.time, expected.time)
        assert np.array_equal(result.equity, expected.equity)


def _grid(program: Program, load: CandleLoader, fasts: range, slows: range, **kw: int) -> list[RunPlan]:
    """Members of an SMA grid, fast-major (as a grid search lists them)."""
    return [_member(program, {"fast": f, "slow": s}, load, **kw) for f, s in itertools.product(fasts, slows)]


def test_sma_grid_on_real_btc_equals_plain(shared_data: Path) -> None:
    program = _program(SMA)
    plans = _grid(program, _csv_loader(shared_data), range(5, 26, 4), range(20, 101, 20), end=T2020_07)
    assert len(plans) == 30 and all(fast(rp) for rp in plans)
    expected = [_plain(rp) for rp in plans]
    got = list(sweep(plans, batch=7))  # 7 does not divide 30: the last batch has 2 members
    _assert_same(got, plans, expected)
    # The default batch (sized from the bars), and the next batch simulated on a second thread.
    _assert_same(list(sweep(plans)), plans, expected)
    _assert_same(list(sweep(plans, batch=4, overlap=True)), plans, expected)
    # The members do trade: every one has entries, and the grid's members differ.
    assert all(r.summary.entries > 10 for r in got)
    assert len({r.summary.final_equity for r in got}) == len(got)


def test_reported_period_after_from(shared_data: Path) -> None:
    # With --from the warm-up before the start is read, not reported.
    program = _program(SMA)
    plans = _grid(
        program, _csv_loader(shared_data), range(7, 20, 6), range(40, 121, 40), start=T2020, end=T2020_07
    )
    got = list(sweep(plans, batch=4))
    _assert_same(got, plans)
    assert all(int(r.time[0]) == T2020 + 3_600_000 for r in got)


def test_brackets_shorts_and_distance_stops_equal_plain() -> None:
    program = _program(BRACKETS)
    load = _synthetic_loader(3000, seed=11)
    params = itertools.product((4, 10, 16), (20, 45), (1.0, 3.5), (0.02, 0.06))
    plans = [
        _member(program, dict(zip(("fast", "slow", "stop", "trail"), p, strict=True)), load) for p in params
    ]
    got = list(sweep(plans, batch=5))
    _assert_same(got, plans)
    reasons = {reason for rp in plans[:6] for reason in backtest(rp).trade_table.exit_reason.tolist()}
    assert {"stop_loss", "trailing_stop", "signal", "max_hold"} <= reasons
    assert any((backtest(rp).trade_table.side == "short").any() for rp in plans[:4])


def test_percent_brackets_and_a_slower_clock_equal_plain() -> None:
    program = _program(PERCENT)
    load = _synthetic_loader(2400, seed=5)
    params = itertools.product((4, 8, 14), (20, 36), (0.01, 0.03))
    plans = [_member(program, dict(zip(("fast", "slow", "stop"), p, strict=True)), load) for p in params]
    _assert_same(list(sweep(plans, batch=4)), plans)


def test_plain_path_members_mixed_in_keep_their_place(shared_data: Path) -> None:
    load = _csv_loader(shared_data)
    sma, state, pair = _program(SMA), _program(STATE), _program(PAIR)
    # Two months of bars: the trade-state member is replayed bar by bar.
    span = {"start": T2020_05, "end": T2020_07}
    plans = [
        _member(sma, {"fast": 7, "slow": 40}, load, **span),
        _member(state, {"fast": 9, "slow": 30}, load, **span),
        _member(sma, {"fast": 9, "slow": 40}, load, **span),
        _member(pair, {"fast": 13, "slow": 50}, load, portfolio=pair.portfolios[0], **span),
        _member(sma, {"fast": 11, "slow": 40}, load, **span),
        _member(sma, {"fast": 13, "slow": 40}, load, **span),
    ]
    assert [fast(rp) for rp in plans] == [True, False, True, False, True, True]
    expected = [_plain(rp) for rp in plans]
    for batch in (1, 4, 64):
        _assert_same(list(sweep(plans, batch=batch)), plans, expected)


def test_members_that_outgrow_their_rows_take_the_plain_path(shared_data: Path) -> None:
    program = _program(CAPPED)
    plans = _grid(program, _csv_loader(shared_data), range(5, 10, 4), range(30, 51, 20), end=T2020_07)
    # The volume cap splits the orders: more order rows than the room sized from the entries.
    rp = plans[0]
    signals = batch_signals(rp.sleeves[0])
    member = portfolio_input(rp, [sleeve_input(rp.sleeves[0], signals.decisions, signals.offsets)])
    assert simulate_members([member]) == [None]
    assert len(backtest(rp).order_table.price) > 2 * (backtest(rp).trade_table.pnl.size + 16)
    _assert_same(list(sweep(plans, batch=3)), plans)


def test_equal_candles_in_other_objects_are_one_data_set() -> None:
    # Every member loads its own (equal) candle objects: still shared, still exact.
    program = _program(SMA)
    plans = _grid(program, _synthetic_loader(1500, seed=2, fresh=True), range(5, 12, 3), range(20, 41, 10))
    assert plans[0].sleeves[0].feeds.candles[0] is not plans[1].sleeves[0].feeds.candles[0]
    _assert_same(list(sweep(plans, batch=4)), plans)


def test_members_over_several_data_sets_in_one_batch(shared_data: Path) -> None:
    # Two ranges of bars (as walk-forward folds have), interleaved: each batch simulates two groups.
    program, load = _program(SMA), _csv_loader(shared_data)
    plans = [
        _member(program, {"fast": f, "slow": 40}, load, start=start, end=start + 60 * 86_400_000)
        for f in (5, 9, 13)
        for start in (T2020, T2020_05)
    ]
    _assert_same(list(sweep(plans, batch=4)), plans)
    _assert_same(list(sweep(plans, batch=4, overlap=True)), plans)


def test_shared_values_compute_each_indicator_once() -> None:
    program = _program(SMA)
    plans = _grid(program, _synthetic_loader(800, seed=3), range(5, 10, 2), range(20, 31, 5))
    shared = SharedValues()
    for rp in plans:
        shared.expect(rp.sleeves[0].graph.node_hashes())
    for rp in plans:
        g = rp.sleeves[0].graph
        run_batch(g, rp.sleeves[0].feeds, list(g.rules.values()), shared)
    # 3 fast and 3 slow averages, each computed once; the 9 members' two crossings each their own.
    assert shared.computed == 3 + 3 + 9 * 2
    assert len(shared.values) == 6


def test_shared_values_stay_within_their_budget() -> None:
    shared = SharedValues(budget=3 * 8_000)
    for key in "abcde":
        shared.expect([key])
        shared.expect([key])
        shared.offer(key, np.zeros(1_000))
    assert list(shared.values) == ["c", "d", "e"] and shared.used == 24_000
    shared.offer("once", np.zeros(10))  # asked by one graph only: not kept
    assert "once" not in shared.values


def test_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(sweep([], batch=0))


_PROPERTY_PROGRAM: list[Program] = []
_PROPERTY_LOAD: list[Callable[..., Candles]] = []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hs.lists(
        hs.tuples(hs.integers(4, 20), hs.integers(20, 60), hs.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0])),
        min_size=1,
        max_size=6,
    ),
    hs.integers(1, 4),
)
def test_random_members_equal_plain(members: list[tuple[int, int, float]], batch: int) -> None:
    if not _PROPERTY_PROGRAM:
        _PROPERTY_PROGRAM.append(_program(BRACKETS))
        _PROPERTY_LOAD.append(_synthetic_loader(1200, seed=7))
    program, load = _PROPERTY_PROGRAM[0], _PROPERTY_LOAD[0]
    plans = [_member(program, {"fast": f, "slow": s, "stop": k}, load) for f, s, k in members]
    _assert_same(list(sweep(plans, batch=batch)), plans)
