"""Benchmark: parse and check a generated 2,000-line spec (target: under 200 ms).

Prints the first run and the best of several warm runs of `check_source` (also with the IR node memo of
`Expr.make` emptied before every run, as for a spec never checked before in the process, and inside the
batch commands' process tuning as `strat check` runs it, the garbage collector paused), the parse step
alone, and two baselines measured in the same run on the same text: lark's own LALR parse with its lexer,
indenter and position-tracking tree (what parsing cost before `dsl.lalr` read valid text with lark's tables
directly) and Python's own `ast.parse` of a similar-sized Python text. Run:

    .venv/bin/python tests/bench/bench_dsl.py
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable

from dsl.checker import check_source
from dsl.diagnostics import Reporter
from dsl.ir import forget_nodes
from dsl.parser import grammar, parse
from runtime.commands.tuning import batch_process

# The target from the design brief, in milliseconds.
TARGET_MS = 200.0
# Warm runs; the best one is reported.
RUNS = 5


def generate(lines: int = 2_000) -> str:
    """A realistic spec of about `lines` lines: many strategies with params, bindings, rules and settings."""
    out = ["strat 1", ""]
    k = 0
    while len(out) < lines:
        out += [
            f"# strategy {k}: trend filter plus an RSI trigger",
            f"strategy s{k}:",
            '    symbol:    "BINANCE:BTC/USDT"',
            "    timeframe: 1h",
            "    param fast = 10 in 5..50 step 5",
            "    param slow = 40 in 20..200 step 10",
            "    param rsi_len = 14 in {7, 14, 21}",
            "    constraint fast < slow",
            *(f"    m{i} = sma(close, fast + {i}) - ema(close, slow) * 0.5" for i in range(8)),
            "    r = rsi(close, rsi_len)",
            "    band = bbands(close, 20, 2.0)",
            "    up = m0 > 0 and close > band.mid and r < 70",
            "    entry long when up and r crosses above 30",
            "    exit  long when m1 crosses below 0 or close < band.lower[1]",
            "    stop_loss:   2 * atr(14)",
            "    take_profit: 2R",
            "    size:        risk_per_trade(1%)",
            "    execution:",
            "        fee:      0.1%",
            "        slippage: 2bps",
            "",
        ]
        k += 1
    return "\n".join(out[:lines]) + "\n"


def timed(func: Callable[[], object]) -> tuple[float, float]:
    """(first run, best of RUNS warm runs) of `func`, in milliseconds."""
    start = time.perf_counter()
    func()
    first = (time.perf_counter() - start) * 1000
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        func()
        best = min(best, (time.perf_counter() - start) * 1000)
    return first, best


def fresh_check(text: str) -> None:
    """`check_source` as for a spec never checked in this process (no IR node remembered)."""
    forget_nodes()
    check_source(text, "bench.strat")


def command_check(text: str) -> None:
    """`check_source` as `strat check` runs it, inside the batch commands' tuning (collector paused)."""
    with batch_process():
        check_source(text, "bench.strat")


def main() -> None:
    """Time everything on one generated text and print the figures and ratios."""
    text = generate()
    lark = grammar()
    python = "\n".join(
        f"m{i} = sma(close, fast + {i % 8}) - ema(close, slow) * 0.5 > 0 and r < 70" for i in range(2_000)
    )
    start = time.perf_counter()
    fresh_check(text)
    cold = (time.perf_counter() - start) * 1000
    result = check_source(text, "bench.strat")
    assert result.ok, result.render()[:2_000]
    rows = {
        "parse + check (check_source)": timed(lambda: check_source(text, "bench.strat")),
        "parse + check, node memo emptied": timed(lambda: fresh_check(text)),
        "parse + check as strat check (tuned)": timed(lambda: command_check(text)),
        "parse only (dsl.parser.parse)": timed(lambda: parse(text, "bench.strat", Reporter("bench.strat"))),
        "baseline: lark LALR parse alone": timed(lambda: lark.parse(text)),
        "baseline: Python ast.parse, 2,000 lines": timed(lambda: ast.parse(python)),
    }
    total = rows["parse + check (check_source)"][1]
    strategies = len(result.program.strategies) if result.program else 0
    print(f"spec: {text.count(chr(10))} lines, {strategies} strategies")
    print(f"{'first check in the process (cold)':42s} {cold:8.1f} ms")
    for name, (first, best) in rows.items():
        print(f"{name:42s} first {first:8.1f} ms   best {best:8.1f} ms   check/this {total / best:6.2f}x")
    print(f"target {TARGET_MS:.0f} ms: parse + check is {total / TARGET_MS:.2f}x the target")


if __name__ == "__main__":
    main()
