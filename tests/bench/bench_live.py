"""Benchmark of the live path's per-bar cost: a closed bar through the streaming graph and the broker step.

Run: `python tests/bench/bench_live.py` (needs ../shared/data or $STRAT_DATA_DIR). Prints figures, never
asserts a time. Both parts run `runtime.backtest.drive.replay` on a plan built by `runtime.plan` from a
.strat text, which is the path paper and live trading take per closed bar: the streaming driver
evaluates the sleeve's graph inside `Simulator.step(..., decide=...)`, which then fills, checks brackets
and turns the decisions into order intents. Each `Simulator.step` call is timed (a wrapper around it),
so a sample is one closed bar (a) or one minute of 100 sleeves (b) from arrival to order intents.

(a) Latency: a strategy of about 20 graph nodes (27 compiled) over the last 20,000 bars (plus its
    warm-up) of the real BTC/USDT 1h series; p50 / p99 / max per bar (target p99 < 1 ms), beside a bare
    Python loop doing the same arithmetic (two EMAs, RSI, ATR, Bollinger mid and width, rolling low,
    the rules) per bar.
(c) The whole paper engine per bar, in process against the fake Binance on 127.0.0.1 (tests/data): one
    closed bar polled over HTTP through ccxt, stepped, checkpointed to SQLite (broker snapshot, events,
    equity) and the output files rewritten; p50 / p99 over 300 bars, beside the HTTP poll alone.
(b) CPU share: a 100-sleeve portfolio of that strategy (each sleeve its own `fast` length) on the real
    BTC/USDT 1m series; the time to process one minute for all 100 sleeves as a share of the 60 s bar
    period on one core (target under 10%), beside the bare loop run for 100 sleeves.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsl.checker import check_source
from runtime.backtest.drive import replay
from runtime.broker.simulator import Simulator
from runtime.data.candles import Candles
from runtime.data.loader import from_csv, prepare
from runtime.plan.plan import RunPlan, plan
from runtime.plan.select import select

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
BARS = 20_000  # bars of the latency run (a)
SLEEVES = 100  # sleeves of the CPU share run (b)
PERIOD_S = 60.0  # bar period of (b): one minute

# About 20 nodes: sources, two EMAs, RSI, ATR, Bollinger bands, rolling extremes, offsets, the rules.
TWENTY = """strat 1
strategy twenty:
    symbol: "BINANCE:BTC/USDT"
    timeframe: {tf}
    param fast = 12 in 4..40 step 1
    f = ema(close, fast)
    s = ema(close, 26)
    r = rsi(close, 14)
    a = atr(14)
    bb = bbands(close, 20, 2.0)
    lo = lowest(low, 20)
    up = f > s and r < 70 and close > bb.mid
    entry long when f crosses above s and up
    exit  long when close < lo[1] or r > 80
    stop_loss: 2 * a
    size: equity_pct(50%)
"""


def load(symbol: str, timeframe: str, start: int | None, end: int | None) -> Candles:
    """The real candles of `symbol` at `timeframe` from the data folder (a `runtime.plan` loader)."""
    pair = symbol.split(":", 1)[-1]
    first, last = start or 0, end or 2**62
    raw, _ = from_csv(DATA, pair, timeframe, first, last)
    return prepare(raw, timeframe, first, last, fill_gaps=False).candles


def build(text: str, start: int | None) -> RunPlan:
    """Check a spec and plan what it runs over the real candles from `start` (warm-up read before it)."""
    result = check_source(text, "bench.strat")
    assert result.program is not None, result.render()
    return plan(result.program, select(result.program, None, None), load, start, None)


def timed_replay(rp: RunPlan) -> tuple[list[int], float, int]:
    """Replay a plan timing every `Simulator.step` call: (samples in ns, total seconds, nodes per graph)."""
    samples: list[int] = []
    step = Simulator.step

    def timed(self: Simulator, *updates: Any, decide: Callable[..., Any] | None = None) -> None:
        """`Simulator.step`, timed."""
        began = time.perf_counter_ns()
        step(self, *updates, decide=decide)
        samples.append(time.perf_counter_ns() - began)

    Simulator.step = timed  # type: ignore[method-assign]
    try:
        began = time.perf_counter()
        replay(rp)
        total = time.perf_counter() - began
    finally:
        Simulator.step = step  # type: ignore[method-assign]
    return samples, total, len(rp.sleeves[0].graph.nodes)


class Bare:
    """The baseline: the strategy's arithmetic hand-written as a plain Python streaming loop."""

    def __init__(self, fast: int) -> None:
        """Start cold with the fast EMA length `fast`."""
        self.kf, self.ks = 2 / (fast + 1), 2 / 27  # EMA smoothing factors
        self.f = self.s = self.gain = self.loss = self.atr = math.nan  # EMAs, RSI averages and ATR, price
        self.prev = math.nan  # previous close
        self.above = False  # whether the fast EMA was above the slow one on the previous bar
        self.closes: deque[float] = deque(maxlen=20)  # last 20 closes (Bollinger)
        self.lows: deque[float] = deque(maxlen=20)  # last 20 lows (rolling low)
        self.low_before = math.nan  # the rolling low of the previous bar

    def push(self, high: float, low: float, close: float) -> tuple[bool, bool, float]:
        """One closed bar: (entry long, exit long, stop distance)."""
        prev = self.prev
        self.f = close if self.f != self.f else self.f + self.kf * (close - self.f)
        self.s = close if self.s != self.s else self.s + self.ks * (close - self.s)
        tr = high - low if prev != prev else max(high - low, abs(high - prev), abs(low - prev))
        change = 0.0 if prev != prev else close - prev
        self.gain = max(change, 0.0) if self.gain != self.gain else (self.gain * 13 + max(change, 0.0)) / 14
        self.loss = max(-change, 0.0) if self.loss != self.loss else (self.loss * 13 + max(-change, 0.0)) / 14
        self.atr = tr if self.atr != self.atr else (self.atr * 13 + tr) / 14
        rsi = 100.0 if self.loss == 0 else 100 - 100 / (1 + self.gain / self.loss)
        self.closes.append(close)
        self.lows.append(low)
        mid = sum(self.closes) / len(self.closes)
        width = 2 * math.sqrt(sum((x - mid) ** 2 for x in self.closes) / len(self.closes))
        above = self.f > self.s
        entry = above and not self.above and rsi < 70 and close > mid and width >= 0
        leave = close < self.low_before or rsi > 80
        self.above, self.prev, self.low_before = above, close, min(self.lows)
        return entry, leave, 2 * self.atr


def bare_loop(candles: Candles, sleeves: int) -> list[int]:
    """Per-bar time of the baseline for `sleeves` strategies (fast lengths as in part b), ns."""
    models = [Bare(4 + k % 37) for k in range(sleeves)]
    highs, lows, closes = candles.high.tolist(), candles.low.tolist(), candles.close.tolist()
    samples = []
    for h, lo, c in zip(highs, lows, closes, strict=True):
        began = time.perf_counter_ns()
        for model in models:
            model.push(h, lo, c)
        samples.append(time.perf_counter_ns() - began)
    return samples


def figures(samples: list[int]) -> tuple[float, float, float, float]:
    """(p50, p99, max, mean) of samples in ns, as µs."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) / 1e3, p99 / 1e3, ordered[-1] / 1e3, statistics.fmean(ordered) / 1e3


def latency() -> None:
    """Part (a): per-bar latency of one sleeve of about 20 nodes on 20,000 real 1h bars."""
    times = load("BINANCE:BTC/USDT", "1h", None, None).time
    rp = build(TWENTY.format(tf="1h"), int(times[-BARS]))
    replay(build(TWENTY.format(tf="1h"), int(times[-200])))  # load the compiled kernels first
    samples, total, nodes = timed_replay(rp)
    p50, p99, peak, mean = figures(samples)
    base50, base99, _, base_mean = figures(
        bare_loop(load("BINANCE:BTC/USDT", "1h", int(times[-BARS]), None), 1)
    )
    print(
        f"(a) one closed bar through a {nodes}-node streaming graph + Simulator.step, {len(samples):,} bars "
        f"of BTC/USDT 1h: p50 {p50:.1f} us, p99 {p99:.1f} us, max {peak:.0f} us, mean {mean:.1f} us "
        f"(target p99 < 1000 us); whole replay {total / len(samples) * 1e6:.1f} us per bar"
    )
    print(
        f"    baseline, bare Python loop of the same arithmetic: p50 {base50:.2f} us, p99 {base99:.2f} us, "
        f"mean {base_mean:.2f} us; ratio p50 {p50 / base50:.0f}x, p99 {p99 / base99:.0f}x"
    )


def cpu_share() -> None:
    """Part (b): one minute of 100 sleeves as a share of a 60 s bar period on one core."""
    sleeves = "\n".join(f"    sleeve s{k} = twenty(fast={4 + k % 37}) weight 1%" for k in range(SLEEVES))
    text = TWENTY.format(tf="1m") + f"portfolio hundred:\n    capital: 100_000 USDT\n{sleeves}\n"
    rp = build(text, None)
    samples, total, nodes = timed_replay(rp)
    p50, p99, peak, mean = figures(samples)
    base = figures(bare_loop(load("BINANCE:BTC/USDT", "1m", None, None), SLEEVES))
    share = mean / 1e6 / PERIOD_S * 100
    print(
        f"(b) {SLEEVES} sleeves of {nodes} nodes on BTC/USDT 1m, {len(samples):,} minutes: one minute of all "
        f"sleeves p50 {p50 / 1e3:.2f} ms, p99 {p99 / 1e3:.2f} ms, max {peak / 1e3:.1f} ms, mean "
        f"{mean / 1e3:.2f} ms = {share:.3f}% of one core (p99 {p99 / 1e6 / PERIOD_S * 100:.3f}%; "
        f"target < 10%); whole replay {total / len(samples) * 1e3:.2f} ms per minute"
    )
    print(
        f"    baseline, bare Python loop of the same arithmetic for {SLEEVES} sleeves: mean "
        f"{base[3] / 1e3:.3f} ms per minute = {base[3] / 1e6 / PERIOD_S * 100:.4f}% of one core; "
        f"ratio {mean / base[3]:.0f}x"
    )


def paper_engine(fake: Any, text: str, spec_path: str, tmp: str) -> Any:
    """A paper `Engine` of a spec against a started fake exchange, its store and outputs in `tmp`."""
    from runtime.commands.live import SessionFiles
    from runtime.commands.source import Source
    from runtime.exchange.client import ExchangeClient, RetryPolicy
    from runtime.exchange.feed import ExchangeFeed
    from runtime.live.engine import Engine, LiveOptions
    from runtime.store.live import LiveStore
    from runtime.store.schema import open_store

    checked = check_source(text, spec_path)
    assert checked.program is not None, checked.render()
    source = Source(api_url=fake.url, db_url=f"sqlite:///{tmp}/bench.db")
    public = ExchangeClient("binance", api_url=fake.url, rate_limit=False, retry=RetryPolicy(attempts=2))

    def loader(clock: Callable[[], int]) -> Callable[..., Candles]:
        """History through the store from the fake, on the fake's clock."""
        feed = ExchangeFeed("binance", api_url=fake.url, rate_limit=False, clock=clock)
        return lambda s, tf, first, last: source.load(s, tf, first, last, feed=feed).candles

    options = LiveOptions("paper", "binance", spec_path, text, 1.0)
    portfolio = select(checked.program, None, None)
    engine = Engine(options, checked.program, portfolio, LiveStore(open_store(source.db_url)), public, loader)
    out = Path(tmp) / "out"
    out.mkdir(exist_ok=True)
    engine.on_point = SessionFiles(out).write
    return engine


def whole_engine(bars: int = 300) -> None:
    """(c): the paper engine's whole cost per closed bar (poll, step, checkpoint, outputs)."""
    import asyncio
    import sys
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from fake_binance import FakeBinance

    hour = 3_600_000
    fake = FakeBinance(data_dir=DATA, now_ms=1_709_251_200_000 - hour // 2).start()
    with tempfile.TemporaryDirectory() as tmp:
        engine = paper_engine(fake, TWENTY.format(tf="1h"), "bench.strat", tmp)

        async def run() -> tuple[list[int], list[int]]:
            """Advance the fake one bar at a time; time the engine's bar and a bare poll."""
            client = engine.exchange.asynchronous()
            await engine.start(client)
            whole, poll = [], []
            for _ in range(bars):
                fake.advance(hour)
                began = time.perf_counter_ns()
                await engine._poll_all(client)
                engine.checkpoint()
                whole.append(time.perf_counter_ns() - began)
                began = time.perf_counter_ns()
                await client.fetch_ohlcv("BTC/USDT", "1h", engine.feeds[0].next_open)
                poll.append(time.perf_counter_ns() - began)
            await client.close()
            return whole, poll

        whole, poll = asyncio.run(run())
    fake.stop()
    w50, w99, wmax, _ = (v / 1e3 for v in figures(whole))  # ms
    p50, p99, _, _ = (v / 1e3 for v in figures(poll))  # ms
    print(
        f"(c) the paper engine, one closed bar end to end (HTTP poll, step, SQLite checkpoint, outputs), "
        f"{bars} bars: p50 {w50:.2f} ms, p99 {w99:.2f} ms, max {wmax:.1f} ms"
    )
    print(
        f"    baseline, the HTTP poll alone: p50 {p50:.2f} ms, p99 {p99:.2f} ms; ratio p50 {w50 / p50:.1f}x"
    )


def main() -> None:
    """Run the three parts."""
    if not (DATA / "BTCUSDT-1h.csv").exists():
        print(f"no data at {DATA}; set STRAT_DATA_DIR")
        return
    latency()
    cpu_share()
    whole_engine()


if __name__ == "__main__":
    main()
