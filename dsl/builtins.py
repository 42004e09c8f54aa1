"""The one registry of built-in names: series functions, sources, trade state, settings, rules and metrics.

Every series function (and every operator the syntax makes: offset, crosses) has exactly one definition
here: its arguments in order with their roles (units) and defaults, result unit and struct fields, the bar
fields it reads implicitly, and its warm-up. `runtime.ops` registers a batch and a streaming kernel under
each name and takes everything else from here; tests/ops/test_registry.py checks the kernels against these
signatures by value (parameter names in order, outputs, parameter checks, first valid bar).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Roles of arguments: "series" any numeric series; "cond" a bool series; "length" a fixed integer >= 1;
# "count" a fixed integer >= 0; "number" a fixed plain number; the rest name the unit a fixed setting
# argument must have ("percent", "qty", "duration", "metric"). The kernels check the fixed ones too: they
# refuse a fraction for a length or count and a number that is not finite, and accept the role's floor.
ARG_ROLES = frozenset({"series", "cond", "length", "count", "number", "percent", "qty", "duration", "metric"})
# Roles of a series function's arguments that are series inputs, and of those fixed for a run (each
# argument has one or the other).
SERIES_ROLES = frozenset({"series", "cond"})
FIXED_ROLES = frozenset({"length", "count", "number"})


@dataclass(frozen=True)
class Arg:
    """One parameter of a built-in function."""

    name: str  # keyword name
    role: str  # one of ARG_ROLES
    default: float | int | str | None = None  # value when omitted; None = required


# A formula over a built-in's fixed arguments (evaluated, by name) giving a number of bars.
Formula = Callable[[Mapping[str, float]], int]


def _no_bars(p: Mapping[str, float]) -> int:
    """A formula of 0 bars: the first bar can already have a value."""
    return 0


@dataclass(frozen=True)
class Signature:
    """The signature of one built-in function: the one definition both the checker and the kernels read.

    `runtime.ops` registers a batch and a streaming kernel under the name of each series function and syntax
    operator, and takes its inputs, parameters (order, defaults), outputs and warm-up from here.
    """

    name: str  # function name
    args: tuple[Arg, ...]  # parameters in positional order
    result: str  # result kind; "same" = kind of the first series argument; or a struct kind
    category: str = "series"  # "series", "sizing", "slippage", "method", "objective", "walk_forward"
    implicit: tuple[str, ...] = ()  # bar fields read implicitly, in the kernels' input order (atr: h, l, c)
    fields: tuple[tuple[str, str], ...] = ()  # a struct result's fields in output order: (name, kind or "@")
    integer: bool = False  # the result is a whole number (barssince)
    # Index of the first bar where every output is valid on clean input whose conditions always hold: what
    # the kernels produce (tests/ops/test_registry.py checks it against them).
    first_valid: Formula = _no_bars
    # Bars before the value can be trusted, when not `first_valid`: a recursive filter adds a convergence
    # allowance; valuewhen counts none (how long its condition takes to hold is unknown).
    trusted: Formula | None = None
    recursive: bool = False  # a recursive filter (its warm-up includes a convergence allowance)

    def describe(self) -> str:
        """`sma(source, length)` — used in arity messages."""
        return f"{self.name}({', '.join(a.name for a in self.args)})"

    @property
    def required(self) -> int:
        """How many leading arguments have no default."""
        return sum(1 for a in self.args if a.default is None)

    def warmup(self, p: Mapping[str, float]) -> int:
        """Bars before the value can be trusted, given the fixed arguments' values by name."""
        return (self.trusted or self.first_valid)(p)

    @property
    def series_args(self) -> tuple[Arg, ...]:
        """The series inputs passed by the caller (roles series and cond), in order."""
        return tuple(a for a in self.args if a.role in SERIES_ROLES)

    @property
    def fixed_args(self) -> tuple[Arg, ...]:
        """The parameters fixed for a run (roles length, count, number), in order."""
        return tuple(a for a in self.args if a.role in FIXED_ROLES)


# Extra bars a recursive filter needs after its seed before its value is trusted: the seed's weight has
# then decayed below e^-4 (about 2%): EMA (alpha 2/(n+1)) after 2n bars, Wilder (alpha 1/n) after 4n.
EMA_CONVERGENCE = 2
WILDER_CONVERGENCE = 4
# The bar fields an implicit function of the bars' range reads, in its kernels' input order.
_HLC = ("high", "low", "close")
# Fields of a channel (bbands "@": in the source's unit; donchian and keltner: prices).
_BANDS = ("upper", "mid", "lower")


def _n(p: Mapping[str, float], key: str = "length") -> int:
    """An integer parameter value from the evaluated arguments."""
    return int(p[key])


def _full(p: Mapping[str, float], key: str = "length") -> int:
    """First valid bar of a window of `key` bars (or a filter seeded with their mean): the window's last."""
    return _n(p, key) - 1


def _lag(p: Mapping[str, float]) -> int:
    """First valid bar of a difference with the value `length` bars ago."""
    return _n(p)


def _rolling(name: str) -> Signature:
    """A plain rolling-window function of (source, length) keeping the source's unit."""
    return Signature(name, (Arg("source", "series"), Arg("length", "length")), "same", first_valid=_full)


def _sig(*items: Signature) -> dict[str, Signature]:
    """Index signatures by name."""
    return {s.name: s for s in items}


def _macd_first(p: Mapping[str, float]) -> int:
    """First bar where line, signal and hist are valid: the slower EMA seeds the signal's EMA."""
    return max(_n(p, "fast"), _n(p, "slow")) - 1 + _n(p, "signal") - 1


SERIES_FUNCTIONS: dict[str, Signature] = _sig(
    _rolling("sma"),
    _rolling("wma"),
    _rolling("highest"),
    _rolling("lowest"),
    _rolling("sum"),
    _rolling("stdev"),
    Signature("variance", (Arg("source", "series"), Arg("length", "length")), "number", first_valid=_full),
    Signature(
        "ema",
        (Arg("source", "series"), Arg("length", "length")),
        "same",
        recursive=True,
        first_valid=_full,
        trusted=lambda p: _full(p) + EMA_CONVERGENCE * _n(p),
    ),
    Signature(
        "rma",
        (Arg("source", "series"), Arg("length", "length")),
        "same",
        recursive=True,
        first_valid=_full,
        trusted=lambda p: _full(p) + WILDER_CONVERGENCE * _n(p),
    ),
    Signature("change", (Arg("source", "series"), Arg("length", "length", 1)), "same", first_valid=_lag),
    Signature("momentum", (Arg("source", "series"), Arg("length", "length")), "same", first_valid=_lag),
    Signature("roc", (Arg("source", "series"), Arg("length", "length")), "number", first_valid=_lag),
    Signature(
        "rsi",
        (Arg("source", "series"), Arg("length", "length", 14)),
        "points",
        recursive=True,
        # `length` changes are needed, the first one on bar 1.
        first_valid=_lag,
        trusted=lambda p: _lag(p) + WILDER_CONVERGENCE * _n(p),
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
        fields=(("line", "@"), ("signal", "@"), ("hist", "@")),
        recursive=True,
        first_valid=_macd_first,
        trusted=lambda p: (
            _macd_first(p) + EMA_CONVERGENCE * (max(_n(p, "fast"), _n(p, "slow")) + _n(p, "signal"))
        ),
    ),
    Signature(
        "bbands",
        (Arg("source", "series"), Arg("length", "length", 20), Arg("mult", "number", 2.0)),
        "bbands",
        fields=tuple((f, "@") for f in _BANDS),
        first_valid=_full,
    ),
    Signature(
        "atr",
        (Arg("length", "length", 14),),
        "price",
        implicit=_HLC,
        recursive=True,
        first_valid=_full,
        trusted=lambda p: _full(p) + WILDER_CONVERGENCE * _n(p),
    ),
    Signature("tr", (), "price", implicit=_HLC),
    Signature(
        "adx",
        (Arg("length", "length", 14),),
        "points",
        implicit=_HLC,
        recursive=True,
        # DM starts on bar 1, DI is seeded after `length` bars more, ADX after `length` DX values.
        first_valid=lambda p: 2 * _n(p) - 1,
        trusted=lambda p: 2 * _n(p) - 1 + WILDER_CONVERGENCE * _n(p),
    ),
    Signature(
        "stoch",
        (Arg("k", "length", 14), Arg("d", "length", 3)),
        "stoch",
        implicit=_HLC,
        fields=(("k", "points"), ("d", "points")),
        first_valid=lambda p: _full(p, "k") + _full(p, "d"),
    ),
    Signature("cci", (Arg("length", "length", 20),), "number", implicit=_HLC, first_valid=_full),
    Signature("obv", (), "qty", implicit=("close", "volume")),
    Signature(
        "vwap",
        (Arg("length", "length", 14),),
        "price",
        implicit=("high", "low", "close", "volume"),
        first_valid=_full,
    ),
    Signature(
        "donchian",
        (Arg("length", "length", 20),),
        "donchian",
        implicit=("high", "low"),
        fields=tuple((f, "price") for f in _BANDS),
        first_valid=_full,
    ),
    Signature(
        "keltner",
        (Arg("length", "length", 20), Arg("mult", "number", 2.0), Arg("atr_length", "length", 10)),
        "keltner",
        implicit=_HLC,
        fields=tuple((f, "price") for f in _BANDS),
        recursive=True,
        # Both the EMA of the close and the ATR must be seeded, then converged.
        first_valid=lambda p: max(_full(p), _full(p, "atr_length")),
        trusted=lambda p: max(
            _full(p) + EMA_CONVERGENCE * _n(p),
            _full(p, "atr_length") + WILDER_CONVERGENCE * _n(p, "atr_length"),
        ),
    ),
    Signature(
        "supertrend",
        (Arg("factor", "number", 3.0), Arg("atr_length", "length", 10)),
        "supertrend",
        implicit=_HLC,
        fields=(("line", "price"), ("direction", "number")),
        recursive=True,
        first_valid=lambda p: _full(p, "atr_length"),
        trusted=lambda p: _full(p, "atr_length") + WILDER_CONVERGENCE * _n(p, "atr_length"),
    ),
    Signature("barssince", (Arg("cond", "cond"),), "number", integer=True),
    Signature(
        "valuewhen",
        (Arg("cond", "cond"), Arg("source", "series"), Arg("occurrence", "count", 0)),
        "same",
        first_valid=lambda p: _n(p, "occurrence"),
        trusted=_no_bars,
    ),
    Signature("abs", (Arg("x", "series"),), "same"),
    Signature("log", (Arg("x", "series"),), "number"),
    Signature("sqrt", (Arg("x", "series"),), "number"),
    Signature("min", (Arg("a", "series"), Arg("b", "series")), "same"),
    Signature("max", (Arg("a", "series"), Arg("b", "series")), "same"),
    Signature("round", (Arg("x", "series"), Arg("digits", "count", 0)), "same"),
    Signature("nz", (Arg("x", "series"), Arg("default", "number", 0.0)), "same"),
)

# Operators the syntax makes rather than a call names (`x[n]`, `a crosses above b`): graph nodes with
# kernels and a warm-up like the series functions, never callable by name.
SYNTAX_OPERATORS: dict[str, Signature] = _sig(
    Signature("offset", (Arg("x", "series"), Arg("n", "count")), "same", first_valid=lambda p: _n(p, "n")),
    # A cross compares with the previous bar, so bar 0 is never one.
    Signature("crosses_above", (Arg("a", "series"), Arg("b", "series")), "bool", first_valid=lambda p: 1),
    Signature("crosses_below", (Arg("a", "series"), Arg("b", "series")), "bool", first_valid=lambda p: 1),
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

# Struct kinds and their fields in order (field → kind; "@": the kind of the function's source input): the
# candle struct of bars() and the result of each struct-valued series function.
STRUCTS: dict[str, tuple[tuple[str, str], ...]] = {
    "bars": tuple(SOURCES.items()),
    **{sig.result: sig.fields for sig in SERIES_FUNCTIONS.values() if sig.fields},
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


@dataclass(frozen=True)
class CapLimit:
    """The domain of a `cap METRIC at LIMIT` limit: `low < limit <= high` (or `low <= limit` for counts)."""

    low: float  # smallest limit (excluded for fractions: a cap at 0% would veto every entry)
    high: float | None  # largest limit, None for no bound
    whole: bool  # a count: whole numbers only, and `low` itself allowed


# Metrics a cap may limit (the ones an entry makes bigger), with their limits' domains; the broker reads
# this table too (runtime.broker.simulator), so a spec `strat check` accepts is one `strat run` applies.
CAPPABLE: dict[str, CapLimit] = {
    "gross_exposure": CapLimit(0.0, 10.0, whole=False),
    "net_exposure": CapLimit(0.0, 10.0, whole=False),
    "position": CapLimit(0.0, 10.0, whole=False),
    "open_positions": CapLimit(0.0, None, whole=True),
    "exposure": CapLimit(0.0, 10.0, whole=False),
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


# The `data:` setting (strategy and portfolio): where candles come from when the command line gives no
# --data. A string is a folder of SYMBOL-TIMEFRAME.csv files relative to the spec's file; these words
# name the other sources (`exchange`, the store then the exchange, is the default).
DATA_SOURCES = frozenset({"exchange", "synthetic"})
# How a `data:` value is described in messages.
DATA_WHAT = 'a folder such as "data" (relative to the spec), exchange or synthetic'

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
    "data": SettingSpec(("data_source",), "const", DATA_WHAT),
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
    "data": SettingSpec(("data_source",), "const", DATA_WHAT),
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
