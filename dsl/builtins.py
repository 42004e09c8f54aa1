"""The one registry of built-in names: series functions, sources, trade state, settings, rules and metrics.

Every series function has exactly one signature here (arguments, result unit, implicit bar inputs and
warm-up) and exactly one operator with a batch and a streaming kernel in `runtime.ops`; a test checks
that both name the same set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Roles of arguments: "series" any numeric series; "cond" a bool series; "length" a fixed integer >= 1;
# "count" a fixed integer >= 0; "number" a fixed plain number; the rest name the unit a fixed setting
# argument must have ("percent", "qty", "duration", "metric").
ARG_ROLES = frozenset({"series", "cond", "length", "count", "number", "percent", "qty", "duration", "metric"})


@dataclass(frozen=True)
class Arg:
    """One parameter of a built-in function."""

    name: str  # keyword name
    role: str  # one of ARG_ROLES
    default: float | int | str | None = None  # value when omitted; None = required


@dataclass(frozen=True)
class Signature:
    """The signature of one built-in function."""

    name: str  # function name
    args: tuple[Arg, ...]  # parameters in positional order
    result: str  # result kind; "same" = kind of the first series argument; or a struct kind
    category: str = "series"  # "series", "sizing", "slippage", "method", "objective", "walk_forward"
    implicit: tuple[str, ...] = ()  # bar fields read implicitly (atr reads high, low, close)
    warmup: Callable[[Mapping[str, float]], int] = lambda p: 0  # bars before the first value
    recursive: bool = False  # a recursive filter (its warm-up includes a convergence allowance)

    def describe(self) -> str:
        """`sma(source, length)` — used in arity messages."""
        return f"{self.name}({', '.join(a.name for a in self.args)})"

    @property
    def required(self) -> int:
        """How many leading arguments have no default."""
        return sum(1 for a in self.args if a.default is None)


# Extra bars a recursive filter needs after its seed before its value is trusted: the seed's weight has
# then decayed below e^-4 (about 2%): EMA (alpha 2/(n+1)) after 2n bars, Wilder (alpha 1/n) after 4n.
EMA_CONVERGENCE = 2
WILDER_CONVERGENCE = 4
_HLC = ("high", "low", "close")


def _n(p: Mapping[str, float], key: str = "length") -> int:
    """An integer parameter value from the evaluated arguments."""
    return int(p[key])


def _window(name: str) -> Signature:
    """A plain rolling-window function of (source, length) keeping the source's unit."""
    return Signature(
        name, (Arg("source", "series"), Arg("length", "length")), "same", warmup=lambda p: _n(p) - 1
    )


def _sig(*items: Signature) -> dict[str, Signature]:
    """Index signatures by name."""
    return {s.name: s for s in items}


SERIES_FUNCTIONS: dict[str, Signature] = _sig(
    _window("sma"),
    _window("wma"),
    _window("highest"),
    _window("lowest"),
    _window("sum"),
    _window("stdev"),
    Signature(
        "variance", (Arg("source", "series"), Arg("length", "length")), "number", warmup=lambda p: _n(p) - 1
    ),
    Signature(
        "ema",
        (Arg("source", "series"), Arg("length", "length")),
        "same",
        recursive=True,
        warmup=lambda p: _n(p) - 1 + EMA_CONVERGENCE * _n(p),
    ),
    Signature(
        "rma",
        (Arg("source", "series"), Arg("length", "length")),
        "same",
        recursive=True,
        warmup=lambda p: _n(p) - 1 + WILDER_CONVERGENCE * _n(p),
    ),
    Signature("change", (Arg("source", "series"), Arg("length", "length", 1)), "same", warmup=_n),
    Signature("momentum", (Arg("source", "series"), Arg("length", "length")), "same", warmup=_n),
    Signature("roc", (Arg("source", "series"), Arg("length", "length")), "number", warmup=_n),
    Signature(
        "rsi",
        (Arg("source", "series"), Arg("length", "length", 14)),
        "number",
        recursive=True,
        warmup=lambda p: _n(p) + WILDER_CONVERGENCE * _n(p),
    ),
    Signature(
        "macd",
        (
            Arg("source", "series"),
            Arg("fast", "length", 12),
            Arg("slow", "length", 26),
            Arg("signal", "length", 9),
        ),
        "macd",
        recursive=True,
        warmup=lambda p: (
            max(_n(p, "fast"), _n(p, "slow"))
            - 1
            + _n(p, "signal")
            - 1
            + EMA_CONVERGENCE * (max(_n(p, "fast"), _n(p, "slow")) + _n(p, "signal"))
        ),
    ),
    Signature(
        "bbands",
        (Arg("source", "series"), Arg("length", "length", 20), Arg("mult", "number", 2.0)),
        "bbands",
        warmup=lambda p: _n(p) - 1,
    ),
    Signature(
        "atr",
        (Arg("length", "length", 14),),
        "price",
        implicit=_HLC,
        recursive=True,
        warmup=lambda p: _n(p) - 1 + WILDER_CONVERGENCE * _n(p),
    ),
    Signature("tr", (), "price", implicit=_HLC),
    Signature(
        "adx",
        (Arg("length", "length", 14),),
        "number",
        implicit=_HLC,
        recursive=True,
        warmup=lambda p: 2 * _n(p) - 1 + WILDER_CONVERGENCE * _n(p),
    ),
    Signature(
        "stoch",
        (Arg("k", "length", 14), Arg("d", "length", 3)),
        "stoch",
        implicit=_HLC,
        warmup=lambda p: _n(p, "k") - 1 + _n(p, "d") - 1,
    ),
    Signature("cci", (Arg("length", "length", 20),), "number", implicit=_HLC, warmup=lambda p: _n(p) - 1),
    Signature("obv", (), "qty", implicit=("close", "volume")),
    Signature(
        "vwap",
        (Arg("length", "length", 14),),
        "price",
        implicit=("high", "low", "close", "volume"),
        warmup=lambda p: _n(p) - 1,
    ),
    Signature(
        "donchian",
        (Arg("length", "length", 20),),
        "donchian",
        implicit=("high", "low"),
        warmup=lambda p: _n(p) - 1,
    ),
    Signature(
        "keltner",
        (Arg("length", "length", 20), Arg("mult", "number", 2.0), Arg("atr_length", "length", 10)),
        "keltner",
        implicit=_HLC,
        recursive=True,
        warmup=lambda p: max(
            _n(p) - 1 + EMA_CONVERGENCE * _n(p),
            _n(p, "atr_length") - 1 + WILDER_CONVERGENCE * _n(p, "atr_length"),
        ),
    ),
    Signature(
        "supertrend",
        (Arg("factor", "number", 3.0), Arg("atr_length", "length", 10)),
        "supertrend",
        implicit=_HLC,
        recursive=True,
        warmup=lambda p: _n(p, "atr_length") - 1 + WILDER_CONVERGENCE * _n(p, "atr_length"),
    ),
    Signature("barssince", (Arg("cond", "cond"),), "number"),
    Signature(
        "valuewhen", (Arg("cond", "cond"), Arg("source", "series"), Arg("occurrence", "count", 0)), "same"
    ),
    Signature("abs", (Arg("x", "series"),), "same"),
    Signature("log", (Arg("x", "series"),), "number"),
    Signature("sqrt", (Arg("x", "series"),), "number"),
    Signature("min", (Arg("a", "series"), Arg("b", "series")), "same"),
    Signature("max", (Arg("a", "series"), Arg("b", "series")), "same"),
    Signature("round", (Arg("x", "series"), Arg("digits", "count", 0)), "same"),
    Signature("nz", (Arg("x", "series"), Arg("default", "series", 0.0)), "same"),
)

# Functions that only make sense as the value of a setting (sizing rules, slippage models, search
# methods, objectives and walk-forward schemes), by the category of setting that takes them.
SETTING_FUNCTIONS: dict[str, Signature] = _sig(
    Signature("equity_pct", (Arg("fraction", "percent"),), "sizing", "sizing"),
    Signature("risk_per_trade", (Arg("risk", "percent"),), "sizing", "sizing"),
    Signature("fixed", (Arg("quantity", "qty"),), "sizing", "sizing"),
    Signature(
        "kelly",
        (Arg("fraction", "percent", "50%"), Arg("lookback", "length", 50), Arg("cap", "percent", "25%")),
        "sizing",
        "sizing",
    ),
    Signature("volume_impact", (Arg("k", "number"),), "slippage", "slippage"),
    Signature("grid", (), "method", "method"),
    Signature("random", (Arg("samples", "length"), Arg("seed", "count", 0)), "method", "method"),
    Signature("bayes", (Arg("trials", "length"), Arg("seed", "count", 0)), "method", "method"),
    Signature("maximize", (Arg("metric", "metric"),), "objective", "objective"),
    Signature("minimize", (Arg("metric", "metric"),), "objective", "objective"),
    Signature("rolling", (Arg("train", "duration"), Arg("test", "duration")), "walk_forward", "walk_forward"),
    Signature(
        "anchored", (Arg("train", "duration"), Arg("test", "duration")), "walk_forward", "walk_forward"
    ),
)

# `bars(timeframe)` / `bars("EXCHANGE:BASE/QUOTE", timeframe)`: another clock's candles (checked apart).
BARS_FUNCTION = "bars"

# Price and volume sources of the strategy's own bars, with their kinds.
SOURCES: dict[str, str] = {
    "open": "price",
    "high": "price",
    "low": "price",
    "close": "price",
    "volume": "qty",
    "hl2": "price",
    "hlc3": "price",
    "ohlc4": "price",
}

# Trade-state series: they depend on the simulated position, so they are evaluated inside the simulation.
TRADE_STATE: dict[str, str] = {
    "position_size": "qty",
    "entry_price": "price",
    "bars_since_entry": "number",
    "unrealized_pnl": "money",
}

# Words of the language that can never be bound to a name.
KEYWORDS = frozenset(
    {
        "strat",
        "use",
        "const",
        "def",
        "strategy",
        "portfolio",
        "optimize",
        "risk",
        "param",
        "constraint",
        "entry",
        "exit",
        "when",
        "alert",
        "sleeve",
        "weight",
        "halt",
        "pause",
        "flatten",
        "cap",
        "at",
        "in",
        "step",
        "and",
        "or",
        "not",
        "if",
        "else",
        "crosses",
        "above",
        "below",
        "long",
        "short",
        "true",
        "false",
        "na",
    }
)

# Risk metrics with their kinds, by scope; sleeve rules see the portfolio's metrics too.
PORTFOLIO_METRICS: dict[str, str] = {
    "drawdown": "percent",
    "day_pnl": "percent",
    "week_pnl": "percent",
    "gross_exposure": "percent",
    "net_exposure": "percent",
    "position": "percent",
    "open_positions": "number",
    "equity": "money",
}
SLEEVE_METRICS: dict[str, str] = {
    **PORTFOLIO_METRICS,
    "consecutive_losses": "number",
    "exposure": "percent",
    "trades_today": "number",
}
# Metrics an optimize block can rank by or require, with their kinds.
RESULT_METRICS: dict[str, str] = {
    "total_return": "percent",
    "cagr": "percent",
    "sharpe": "number",
    "sortino": "number",
    "calmar": "number",
    "max_drawdown": "percent",
    "volatility": "percent",
    "win_rate": "percent",
    "profit_factor": "number",
    "expectancy": "money",
    "trades": "number",
    "exposure": "percent",
    "turnover": "number",
    "final_equity": "money",
    "avg_hold_bars": "number",
}


@dataclass(frozen=True)
class SettingSpec:
    """What a setting accepts."""

    kinds: tuple[str, ...]  # accepted value kinds (a setting function's category counts as a kind)
    qual: str = "param"  # most variable qualifier allowed: "const", "param" or "series"
    what: str = ""  # how the expected value is described in messages


# Settings by the block they belong to.
STRATEGY_SETTINGS: dict[str, SettingSpec] = {
    "symbol": SettingSpec(("symbol",), "const", 'a symbol such as "BINANCE:BTC/USDT"'),
    "timeframe": SettingSpec(("timeframe",), "const", "a timeframe such as 1h"),
    "stop_loss": SettingSpec(("percent", "price"), "series", "a percentage or a price distance"),
    "take_profit": SettingSpec(
        ("percent", "price", "R"), "series", "a percentage, price distance or R multiple"
    ),
    "trailing_stop": SettingSpec(("percent", "price"), "series", "a percentage or a price distance"),
    "trail_after": SettingSpec(("percent", "R"), "param", "a percentage or R multiple of profit"),
    "breakeven_after": SettingSpec(("R", "percent"), "param", "an R multiple or a percentage of profit"),
    "max_hold": SettingSpec(("duration",), "param", "a duration such as 3d"),
    "cooldown": SettingSpec(("duration",), "param", "a duration such as 4h"),
    "size": SettingSpec(("sizing",), "param", "a sizing rule such as risk_per_trade(1%)"),
    "max_entries": SettingSpec(("int",), "param", "a whole number of entries >= 1"),
    "scale_in": SettingSpec(("percent",), "param", "a percentage of the first entry's size"),
}
EXECUTION_SETTINGS: dict[str, SettingSpec] = {
    "fill": SettingSpec(("fill_mode",), "const", "next_open or close"),
    "fee": SettingSpec(("percent", "bps"), "param", "a fee such as 0.1%"),
    "maker_fee": SettingSpec(("percent", "bps"), "param", "a fee such as 0.1%"),
    "taker_fee": SettingSpec(("percent", "bps"), "param", "a fee such as 0.1%"),
    "slippage": SettingSpec(("bps", "percent", "slippage"), "param", "bps such as 5bps, or volume_impact(k)"),
    "max_volume": SettingSpec(("percent",), "param", "a share of the bar's volume such as 10%"),
    "latency": SettingSpec(("int", "duration"), "param", "a number of bars or a duration"),
    "ambiguity": SettingSpec(("ambiguity",), "const", "worst_case or best_case"),
}
PORTFOLIO_SETTINGS: dict[str, SettingSpec] = {
    "capital": SettingSpec(("money",), "const", "an amount such as 10_000 USDT"),
    "rebalance": SettingSpec(("duration",), "const", "a period such as 7d"),
}
OPTIMIZE_SETTINGS: dict[str, SettingSpec] = {
    "target": SettingSpec(("target",), "const", "the name of a strategy or portfolio"),
    "start": SettingSpec(("date",), "const", "a date such as 2024-01-01"),
    "end": SettingSpec(("date",), "const", "a date such as 2024-09-01"),
    "method": SettingSpec(("method",), "const", "grid, random(samples=...) or bayes(trials=...)"),
    "objective": SettingSpec(("objective",), "const", "maximize(metric) or minimize(metric)"),
    "require": SettingSpec(("bool",), "param", "a condition over result metrics"),
    "walk_forward": SettingSpec(("walk_forward",), "const", "rolling(train=90d, test=30d) or anchored(...)"),
}
# Enumerated setting values (bare words) by the kind they make.
ENUMS: dict[str, frozenset[str]] = {
    "fill_mode": frozenset({"next_open", "close"}),
    "ambiguity": frozenset({"worst_case", "best_case"}),
}
