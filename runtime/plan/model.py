"""Typed, immutable input of the simulated broker: sleeves with candles and decisions, and the portfolio.

The plan (`runtime.plan.inputs`) packs a sleeve's candles, its graph's decisions and the strategy's
settings into these value objects and hands a `PortfolioInput` to `runtime.broker.simulator`. The defaults of
settings a spec leaves out are defined here once, and the plan reads them from here.

Conventions shared by every field below: prices and money in the quote currency, quantities in base units,
percentages as fractions (2.5% = 0.025), times as UTC milliseconds since the epoch, bar counts on the
sleeve's own clock. A bool decision at index t is decided at the close of bar t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# A price level relative to the fill: ("percent", 0.02) is 2% of the fill price; ("distance", series) is a
# price distance series (e.g. 3 * atr(20)) evaluated at the decision bar and frozen at entry.
PriceOffset = tuple[Literal["percent"], float] | tuple[Literal["distance"], np.ndarray]
# A take-profit may also be ("R", m): m times the initial stop distance (needs a stop).
TargetOffset = PriceOffset | tuple[Literal["R"], float]
# How far a trade must be in profit before trailing starts: ("percent", p) of the fill price or ("R", m).
ProfitThreshold = tuple[Literal["percent"], float] | tuple[Literal["R"], float]

# Metric names a risk condition may read (see LANGUAGE.md §3 Risk rules).
Metric = Literal[
    "drawdown",
    "day_pnl",
    "week_pnl",
    "gross_exposure",
    "net_exposure",
    "position",
    "open_positions",
    "equity",
    "consecutive_losses",
    "exposure",
    "trades_today",
]
# Comparison operators of a `Compare` node.
CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]

# Fee of a fill when the spec sets none, maker and taker alike: a fraction of the notional (0.1%).
DEFAULT_FEE = 0.001
# Starting cash of a strategy run on its own when no capital is given, quote currency.
DEFAULT_CAPITAL = 10_000.0
# Basis points in one unit: a slippage of 5 bps is 5 / BPS of the price.
BPS = 10_000


@dataclass(frozen=True)
class Execution:
    """How market orders are filled: timing, fees, slippage, participation cap and latency.

    Slippage of one fill, as a fraction of the reference price (open, or close with fill="close"):
    `slippage_bps / BPS + volume_impact_k * (filled_qty / bar_volume)`, the impact term only when
    `volume_impact_k` is set (a bar with zero volume counts as a share of 1). Buys pay it up, sells down.
    """

    fill: Literal["next_open", "close"] = "next_open"  # next bar's open, or the decision bar's close
    fee_maker: float = DEFAULT_FEE  # fee of limit fills (take-profit), fraction of the notional
    fee_taker: float = DEFAULT_FEE  # fee of market fills (entries, exits, stops), fraction of the notional
    slippage_bps: float = 0.0  # fixed slippage of market fills, basis points (5 = 0.05%)
    volume_impact_k: float | None = None  # k of the volume impact term above; None = no impact term
    max_volume: float | None = None  # share of the bar's volume one order may take per bar; None = no cap
    latency_bars: int = 0  # fills are delayed by this many bars after the normal fill bar
    ambiguity: Literal["worst_case", "best_case"] = "worst_case"  # stop first, or target first, in one bar


@dataclass(frozen=True)
class Bracket:
    """Exit rules attached to a position, checked against each bar's high and low from the fill on.

    An entry filled at a bar's open is checked on that bar already (all of its range comes after the
    open); one filled at a close from the next bar. A gap through a stop or target fills at the bar's open;
    stops fill as market orders (taker fee, slippage), targets as limit orders (maker fee, no slippage).
    A bar's best price moves the trailing stop and the breakeven stop for the bars after it only (the
    order of high and low inside a bar is unknown). With pyramiding, the levels set by the first entry
    stay in force.
    """

    stop: PriceOffset | None = None  # stop-loss distance below (long) / above (short) the fill price
    take_profit: TargetOffset | None = None  # target distance beyond the fill price
    trailing_stop: PriceOffset | None = None  # distance of the trailing stop from the best price so far
    trail_after: ProfitThreshold | None = None  # profit (on the bar's high/low) before trailing starts
    breakeven_after: float | None = None  # R multiple of profit after which the stop moves to entry
    max_hold_bars: int | None = None  # exit at the next fill after holding this many bars
    cooldown_bars: int = 0  # bars after an exit fill during which no entry may be decided


@dataclass(frozen=True)
class Sizing:
    """How big an entry is, computed at the fill with the fill price.

    - equity_pct(x): budget = x * sleeve equity; qty = budget / (price * (1 + fee)), so 100% never
      overdraws.
    - risk_per_trade(x): qty = x * sleeve equity / stop distance, capped by the equity_pct(100%) quantity.
    - fixed(q): q base units, capped by the equity_pct(100%) quantity.
    - kelly(fraction, lookback, cap): equity_pct(f) with f = fraction * (W - (1 - W) / (avg_win /
      avg_loss)) over the sleeve's last `lookback` closed trade returns, clipped to [kelly_min, cap]; until
      `lookback` trades have closed, f = kelly_min.
    Every entry is also capped by the sleeve's free cash and the account's cash.
    """

    kind: Literal["equity_pct", "risk_per_trade", "fixed", "kelly"] = "equity_pct"  # the sizing rule
    value: float = 1.0  # x of equity_pct / risk_per_trade (fraction), q of fixed (base units)
    kelly_fraction: float = 0.5  # share of the full Kelly fraction to bet
    kelly_lookback: int = 50  # number of the sleeve's latest closed trades Kelly reads
    kelly_cap: float = 0.25  # largest equity fraction Kelly may bet
    kelly_min: float = 0.01  # equity fraction bet before enough trades exist, and the floor after


@dataclass(frozen=True)
class Precision:
    """Exchange trading rules of a symbol: quantities are floored to the step and small orders refused."""

    amount_step: float = 0.0  # quantity increment, base units; 0 = any fractional quantity
    min_qty: float = 0.0  # smallest order quantity, base units
    min_notional: float = 0.0  # smallest order value, quote currency


@dataclass(frozen=True, eq=False)
class SleeveInput:
    """One sleeve: a strategy instance on one symbol and timeframe, with its candles and decisions.

    All arrays have the same length (the sleeve's bars, ascending open times); decision arrays are bool.
    """

    name: str  # sleeve name ("main" for a strategy run on its own)
    strategy: str  # name of the strategy template it instantiates
    symbol: str  # market symbol, "BTC/USDT"
    timeframe: str  # base timeframe, e.g. "1h"; a bar closes at its open time plus this
    weight: float  # target share of equity, a fraction (0.4 = 40%)
    time: np.ndarray  # int64 bar open times, UTC ms
    open: np.ndarray  # float64 open prices
    high: np.ndarray  # float64 high prices
    low: np.ndarray  # float64 low prices
    close: np.ndarray  # float64 close prices
    volume: np.ndarray  # float64 volumes, base units
    entry_long: np.ndarray  # bool: open (or add to) a long at the close of bar t
    exit_long: np.ndarray  # bool: close the long at the close of bar t
    entry_short: np.ndarray  # bool: open (or add to) a short at the close of bar t
    exit_short: np.ndarray  # bool: close the short at the close of bar t
    bracket: Bracket = field(default_factory=Bracket)  # stops, targets, time limits
    sizing: Sizing = field(default_factory=Sizing)  # how big each entry is
    execution: Execution = field(default_factory=Execution)  # fill model
    max_entries: int = 1  # entries allowed in one position (>1 = pyramiding)
    scale_in: float = 1.0  # size of each added entry as a multiple of the sizing rule's quantity
    warmup: int = 0  # no decision is taken before this bar index
    precision: Precision | None = None  # exchange rules; None = fractional units, no minimum


@dataclass(frozen=True)
class Compare:
    """A leaf of a risk condition: `metric op value`."""

    metric: Metric  # the metric read (portfolio or sleeve, by the rule's scope)
    op: CompareOp  # comparison operator
    value: float  # threshold; percentages as fractions (drawdown > 15% -> 0.15)


@dataclass(frozen=True)
class All:
    """True when every item is true (`and`)."""

    items: tuple[Condition, ...]  # the conjuncts


@dataclass(frozen=True)
class Any:
    """True when at least one item is true (`or`)."""

    items: tuple[Condition, ...]  # the disjuncts


@dataclass(frozen=True)
class Not:
    """True when its item is false."""

    item: Condition  # the negated condition


# A risk condition tree.
Condition = Compare | All | Any | Not


@dataclass(frozen=True)
class RiskRule:
    """One risk rule, evaluated at every point of the portfolio time line (caps: at every entry fill).

    Halt, pause and flatten act when their condition becomes true (it was false, or not yet evaluated, at
    the previous point), for each scope on its own; a condition that stays true does not act again.
    - halt: flatten the scope and take no new entry until `Simulator.reset_halt()`.
    - pause: no new entry decisions for `pause_ms` (pending entries are cancelled); exits still managed.
    - flatten: close the scope's positions with market orders at each sleeve's next fill and cancel
      pending entries (recorded only when there was something to close or cancel).
    - cap: shrink (or veto, for open_positions) any entry that would push `cap_metric` above `cap_limit`.
    """

    scope: Literal["portfolio", "sleeve"]  # portfolio metrics, or each sleeve on its own metrics
    action: Literal["halt", "pause", "flatten", "cap"]  # what the rule does
    text: str  # the rule as written in the spec, for risk events
    condition: Condition | None = None  # when it fires (None for a cap)
    pause_ms: int = 0  # pause duration, ms (pause only)
    cap_metric: Metric | None = None  # capped metric: gross_exposure, net_exposure, position,
    # open_positions or exposure (cap only)
    cap_limit: float = 0.0  # the cap's limit, fraction of equity or a count (cap only)


@dataclass(frozen=True)
class PortfolioInput:
    """A whole run: sleeves sharing one account, rebalancing and risk rules."""

    capital: float  # starting cash, quote currency
    quote: str  # quote currency, e.g. "USDT"
    sleeves: tuple[SleeveInput, ...]  # the sleeves, in spec order
    rebalance_ms: int | None = None  # period of budget resets to target weights (UTC-aligned); None = never
    risk: tuple[RiskRule, ...] = ()  # portfolio and per-sleeve risk rules, in spec order
    synthetic: bool = False  # True when any candles came from the synthetic generator
