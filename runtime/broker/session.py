"""A planned run driven one point of the time line at a time: streaming graphs plus the `Simulator`.

This is the one bar-by-bar driver: the replay of history (`backtest.drive.replay`) and paper and live
trading (`live`) feed it closed bars, so they decide identically. At each point the broker first fills
due orders and checks brackets, then each sleeve's base bar is evaluated by its streaming graph with the
sleeve's trade state at the close, then its decisions act. Slower clocks' bars need no trade state and
are evaluated as they arrive.

Bars are addressed by feed: one feed per clock of every sleeve, sleeves in spec order (`Session.feeds`).
`step(..., act=False)` evaluates a point without acting on it (bars that closed while a live process was
down): its decisions are recorded in `missed`, not taken.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from runtime.broker.result import Alert
from runtime.broker.simulator import BarUpdate, Simulator, TradeState
from runtime.data.candles import Candle
from runtime.graph.drivers import StreamDriver, truth
from runtime.graph.timeline import points
from runtime.plan.inputs import Decisions, Offsets, decision_nodes, market_pair, offset_nodes, portfolio_input
from runtime.plan.inputs import sleeve_input as make_sleeve_input
from runtime.plan.plan import RunPlan, SleevePlan

# Told (bars done, bars in all) while history is stepped.
Progress = Callable[[int, int], None]
# Bars between two calls of a history run's progress callback.
_PROGRESS_EVERY = 10_000


class Feed(NamedTuple):
    """One clock of one sleeve: where a bar goes."""

    sleeve: int  # sleeve index, spec order
    clock: int  # clock index in the sleeve's graph (0 = its base timeframe)
    symbol: str  # market symbol as written in the spec, e.g. BINANCE:BTC/USDT
    timeframe: str  # bar length, e.g. 1h
    ms: int  # bar length, ms


class Missed(NamedTuple):
    """A decision taken on a bar that closed while the process was down (recorded, never acted on)."""

    close_ms: int  # close time of the bar, UTC ms
    sleeve: str  # sleeve name
    what: str  # the decisions that held, e.g. "entry_long"


def alert_of(sp: SleevePlan, k: int, i: int) -> Alert:
    """The firing of alert `k` of a sleeve at the close of its base bar `i` (of its planned history)."""
    close = int(sp.feeds.candles[0].time[i]) + sp.graph.base.ms
    return _alert(sp, k, close)


def _alert(sp: SleevePlan, k: int, close: int) -> Alert:
    """The firing of alert `k` of a sleeve at the close time `close` (UTC ms)."""
    return Alert(
        close, sp.sleeve.name, sp.strategy.name, market_pair(sp.sleeve.symbol), sp.strategy.alerts[k].message
    )


def shell_input(sp: SleevePlan) -> Any:
    """A sleeve's broker settings with empty decisions: the bars and decisions arrive through `step`."""
    n = sp.feeds.length(0)
    none: Decisions[np.ndarray] = Decisions._make(np.zeros(n, dtype=np.bool_) for _ in Decisions._fields)
    marks: Offsets[np.ndarray | None] = Offsets._make(
        None if node is None else np.zeros(n) for node in offset_nodes(sp.graph)
    )
    return make_sleeve_input(sp, none, marks)


class Session:
    """Streaming graphs and the broker of one planned run, advanced one point at a time."""

    def __init__(
        self,
        rp: RunPlan,
        *,
        external: bool = False,
        snapshot: dict[str, Any] | None = None,
        previous: Simulator | None = None,
    ) -> None:
        """Prepare the graphs and an empty account, the account of a broker `snapshot`, or `previous`.

        `external`: an exchange fills the orders (live trading; see `Simulator`). `previous`: the broker
        of the running version of a reloaded spec, carried over (`Simulator.migrated`).
        """
        self.plan = rp  # the run
        portfolio = portfolio_input(rp, [shell_input(sp) for sp in rp.sleeves])
        # The broker: a fresh account, or the one a previous process saved.
        if previous is not None:
            self.simulator = previous.migrated(portfolio)  # the broker, carried over
        elif snapshot is not None:
            self.simulator = Simulator.restore(portfolio, snapshot, external)  # the broker, restored
        else:
            self.simulator = Simulator(portfolio, external)  # the broker, a fresh account
        self.drivers = [StreamDriver(sp.graph) for sp in rp.sleeves]  # one streaming graph per sleeve
        # Decision and bracket-distance nodes of every sleeve's graph.
        self._nodes = [(decision_nodes(sp.graph), offset_nodes(sp.graph)) for sp in rp.sleeves]
        self._index = {sp.sleeve.name: s for s, sp in enumerate(rp.sleeves)}  # sleeve name -> index
        # Every clock of every sleeve, in spec order (the feeds of the merged time line).
        self.feeds = [
            Feed(s, c, clock.symbol, clock.timeframe, clock.ms)
            for s, sp in enumerate(rp.sleeves)
            for c, clock in enumerate(sp.graph.clocks)
        ]
        self.count = [0] * len(self.feeds)  # bars pushed per feed (the next bar's index)
        self.alerts: list[Alert] = []  # alerts fired, in the order the bars were decided
        self.missed: list[Missed] = []  # decisions not acted on (see the module docstring)
        self.paused: set[str] = set()  # sleeves whose entries a user paused (exits still managed)
        self.stale: set[str] = set()  # sleeves whose entries wait for a stale feed to recover
        # sleeves that decide nothing (a position that disagrees with the exchange)
        self.frozen: set[str] = set()
        self._pending: dict[str, int] = {}  # base-bar index of each sleeve's bar in the point being stepped
        self._act = True  # whether the point being stepped acts on its decisions

    def history(
        self, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[list[tuple[int, Candle]]]:
        """Every planned candle of every feed as points of the time line: lists of (feed index, candle).

        `progress(done, total)` is told about every 10,000 bars.
        """
        rp = self.plan
        opens = [rp.sleeves[f.sleeve].feeds.candles[f.clock].time for f in self.feeds]
        total = sum(len(t) for t in opens)
        done = 0
        for point in points(opens, [f.ms for f in self.feeds]):
            bars = []
            for feed, i in point.bars:
                if progress is not None and done % _PROGRESS_EVERY == 0:
                    progress(done, total)
                done += 1
                f = self.feeds[feed]
                candles = rp.sleeves[f.sleeve].feeds.candles[f.clock]
                o, h, low, c, v = rp.sleeves[f.sleeve].feeds.ohlcv(f.clock, i)
                bars.append((feed, Candle(int(candles.time[i]), o, h, low, c, v)))
            yield bars

    def run_history(self, progress: Progress | None = None) -> None:
        """Step through every planned candle (see `history`).

        Bars before a sleeve's first decision only warm its graph, as in a backtest.
        """
        for bars in self.history(progress):
            self.step(bars)

    def held(self, sleeve: str) -> tuple[str, ...]:
        """Why a sleeve's entries (frozen: all its decisions) are held back: "paused", "stale", "frozen"."""
        reasons = (("paused", self.paused), ("stale", self.stale), ("frozen", self.frozen))
        return tuple(name for name, names in reasons if sleeve in names)

    def feed_only(self, bars: Sequence[tuple[int, Candle]]) -> None:
        """Push bars to the graphs only (history the broker has seen already: a resumed session)."""
        for feed, bar in bars:
            f = self.feeds[feed]
            self.count[feed] += 1
            self.drivers[f.sleeve].push(f.clock, _values(bar))

    def step(self, bars: Sequence[tuple[int, Candle]], *, act: bool = True) -> None:
        """Advance by one point: `bars` are (feed index, candle) pairs, all closing at the same time.

        Slower clocks' bars go to their graphs first; the base bars are then decided inside the broker's
        step. With `act` false the decisions are recorded in `missed` instead of taken.
        """
        updates = []
        for feed, bar in bars:
            f = self.feeds[feed]
            i = self.count[feed]
            self.count[feed] = i + 1
            if f.clock != 0:
                # A slower clock's bar needs no trade state: it is evaluated as it arrives.
                self.drivers[f.sleeve].push(f.clock, _values(bar))
                continue
            name = self.plan.sleeves[f.sleeve].sleeve.name
            self._pending[name] = i
            updates.append(BarUpdate(name, bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume))
        if updates:
            self._act = act
            self.simulator.step(*updates, decide=self._decide)

    def _decide(self, update: BarUpdate, state: TradeState) -> BarUpdate:
        """Evaluate a sleeve's base bar with its trade state at the close; return the decided bar."""
        s = self._index[update.sleeve]
        sp = self.plan.sleeves[s]
        driver, (decisions, offsets) = self.drivers[s], self._nodes[s]
        i = self._pending[update.sleeve]
        driver.state = {
            "position_size": state.position_size, "entry_price": state.entry_price,
            "bars_since_entry": state.bars_since_entry, "unrealized_pnl": state.unrealized_pnl,
        }  # fmt: skip
        driver.push(0, _values(update))
        values: list[Any] = driver.values
        decides = i >= sp.first_decision
        # Unpacked in the records' field order (Decisions, Offsets): no record is built per bar.
        el, xl, es, xs = [decides and node is not None and truth(values[node]) for node in decisions]
        stop, target, trail = [math.nan if node is None else float(values[node]) for node in offsets]
        close = update.time + sp.graph.base.ms
        if decides:
            self.alerts.extend(
                _alert(sp, k, close) for k, node in enumerate(sp.graph.alerts) if truth(values[node])
            )
        if update.sleeve in self.paused or update.sleeve in self.stale:
            # A paused sleeve still manages its exits; its entries are held back.
            el = es = False
        if update.sleeve in self.frozen:
            el = xl = es = xs = False
        if not self._act and (el or xl or es or xs):
            held = [n for n, v in zip(Decisions._fields, (el, xl, es, xs), strict=True) if v]
            self.missed.append(Missed(close, update.sleeve, ", ".join(held)))
            el = xl = es = xs = False
        return dataclasses.replace(
            update, entry_long=el, exit_long=xl, entry_short=es, exit_short=xs,
            stop_distance=stop, target_distance=target, trail_distance=trail,
        )  # fmt: skip


def _values(bar: Candle | BarUpdate) -> dict[str, float]:
    """A bar as the streaming driver takes it."""
    return {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume}
