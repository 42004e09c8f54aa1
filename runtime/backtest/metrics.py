"""Performance metrics of a backtest, computed from a `BacktestResult`.

Definitions (every ratio and return is a fraction: 0.6646, not 66.46):

- The equity curve is the starting capital followed by the equity marked at the close of every bar of the
  portfolio's time line: ``c = [capital, e_0, ..., e_{n-1}]``.
- Per-bar returns: ``r_i = c_i / c_{i-1} - 1`` (n values; the first one is against the capital).
- Bars per year: ``P = 365 * 86,400,000 / bar_ms`` (crypto trades every day of the year).
- ``total_return = e_{n-1} / capital - 1``; ``final_equity = e_{n-1}``.
- ``cagr = (e_{n-1} / capital) ** (1 / years) - 1`` with ``years`` the calendar span from the open of the
  first bar to the close of the last, ``(time[-1] - time[0] + bar_ms) / (365 days)``; -1 when the account
  is wiped out; None when the span is so short that the annual rate overflows.
- Drawdown at a bar: ``1 - c_i / max(c_0..c_i)``; ``max_drawdown`` is its maximum.
- ``max_drawdown_duration_bars``: the longest number of bars from a peak to the first bar back at or above
  it (to the last bar when it never recovers).
- ``volatility = std(r, ddof=1) * sqrt(P)``; ``sharpe = mean(r) / std(r, ddof=1) * sqrt(P)`` (risk-free
  rate 0); ``sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)``; ``calmar = cagr / max_drawdown``.
  Each is None when its denominator is zero (a flat curve, no losing bar, no drawdown).
- Trade statistics use closed trades only: ``win_rate`` = share with pnl > 0; ``profit_factor`` = gross
  profit / gross loss (None without a losing trade); ``expectancy`` = mean pnl per trade (quote currency);
  ``avg_hold_bars`` / ``median_hold_bars`` = mean / median of ``exit_bar - entry_bar``. ``entries`` counts
  every trade, the one still open at the end included; ``pnl`` sums every trade's pnl (an open one marked
  at the last close).
- ``exposure`` = share of bars with any position (``result.exposure > 0``); ``avg_exposure`` = mean gross
  exposure; ``turnover`` = traded notional of all filled orders / mean equity; ``fees`` = all fees paid.
- Monthly returns: equity at the last bar of a calendar month (UTC; a bar belongs to the month holding its
  close time minus 1 ms) over the previous month's (the capital for the first month), minus 1.
- Times: ``start`` is the open of the first bar (its close time minus ``bar_ms``), ``end`` the close of the
  last bar, both ISO-8601 UTC. A run with ``--from`` holds only the points closing after it (the warm-up
  before it is cut: `BacktestResult.since`), so every figure above covers the period from ``--from``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter

from runtime.broker.result import BacktestResult, TradeTable

# Milliseconds in one day and in one 365-day year.
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS


class _Frozen(BaseModel):
    """Base of the immutable summary models."""

    model_config = ConfigDict(frozen=True)


class TradeStats(_Frozen):
    """Trade statistics of a set of trades (a whole run, one sleeve or one symbol)."""

    entries: int  # trades entered, the one still open at the end included
    closed_trades: int  # trades closed before the end
    pnl: float  # sum of every trade's pnl after fees, open trades marked at the last close, quote currency
    win_rate: float | None  # share of closed trades with pnl > 0; None without closed trades
    profit_factor: float | None  # gross profit / gross loss of closed trades; None without a losing trade
    expectancy: float | None  # mean pnl per closed trade, quote currency; None without closed trades
    avg_hold_bars: float | None  # mean bars held (exit_bar - entry_bar) of closed trades
    median_hold_bars: float | None  # median bars held of closed trades
    fees: float  # fees paid by the matching orders, quote currency


class SleeveSummary(TradeStats):
    """One sleeve's static description and trade statistics."""

    name: str  # sleeve name
    strategy: str  # strategy template it instantiates
    symbol: str  # market symbol
    timeframe: str  # base timeframe, e.g. "1h"
    weight: float  # target share of equity (fraction)
    contribution: float  # pnl / starting capital (fraction of the account)


class SymbolSummary(TradeStats):
    """Trade statistics of every sleeve trading one symbol."""

    symbol: str  # market symbol
    contribution: float  # pnl / starting capital (fraction of the account)


class MonthlyReturn(_Frozen):
    """The account's return over one calendar month (UTC)."""

    year: int  # calendar year
    month: int  # calendar month, 1-12
    ret: float  # month-end equity / previous month-end equity - 1 (fraction)


class Summary(TradeStats):
    """Every metric of a run; serialised as summary.json."""

    final_equity: float  # equity at the close of the last bar, quote currency
    total_return: float  # final_equity / capital - 1
    cagr: float | None  # compound annual growth rate over the calendar span; None if it overflows
    max_drawdown: float  # largest peak-to-trough fall of the marked equity (fraction)
    max_drawdown_duration_bars: int  # longest bars from a peak to recovery (or to the end)
    volatility: float  # annualised standard deviation of per-bar returns
    sharpe: float | None  # annualised Sharpe ratio of per-bar returns, risk-free rate 0
    sortino: float | None  # annualised Sortino ratio (downside deviation against 0)
    calmar: float | None  # cagr / max_drawdown
    exposure: float  # share of bars with any open position (fraction)
    avg_exposure: float  # mean gross position value / equity over all bars (fraction)
    turnover: float  # traded notional of all fills / mean equity (times the account)
    bars: int  # bars on the portfolio time line
    bar_ms: int  # bar length of the portfolio time line, ms
    start: str  # open time of the first bar, ISO-8601 UTC
    end: str  # close time of the last bar, ISO-8601 UTC
    capital: float  # starting cash, quote currency
    quote: str  # quote currency
    synthetic: bool  # True when any input came from the synthetic generator
    sleeves: tuple[SleeveSummary, ...]  # per-sleeve breakdown, spec order
    symbols: tuple[SymbolSummary, ...]  # per-symbol breakdown, sorted by symbol
    monthly_returns: tuple[MonthlyReturn, ...]  # calendar months in time order


def iso_times(ms: np.ndarray, millis: bool | None = None) -> list[str]:
    """Format UTC millisecond timestamps as ISO-8601 strings ending in Z.

    Whole seconds are written without a fraction; a batch with any sub-second time keeps milliseconds
    for all, so one file has one format (`millis` forces the choice, for a file written in chunks).
    """
    values = np.asarray(ms, dtype=np.int64)
    stamps: np.ndarray = values.astype("datetime64[ms]")
    precise = bool(np.any(values % 1000)) if millis is None else millis
    text = np.datetime_as_string(stamps, unit="ms" if precise else "s")
    return [s + "Z" for s in text.tolist()]


def iso_time(ms: int) -> str:
    """Format one UTC millisecond timestamp like `iso_times`."""
    return iso_times(np.array([ms]))[0]


def equity_curve(result: BacktestResult) -> np.ndarray:
    """The starting capital followed by the equity at every bar (length bars + 1)."""
    return np.concatenate(([result.capital], np.asarray(result.equity, dtype=np.float64)))


def drawdown(curve: np.ndarray) -> np.ndarray:
    """Drawdown of each point of an equity curve from its running peak, as a positive fraction."""
    peak = np.maximum.accumulate(curve)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, 1.0 - curve / peak, 0.0)


def _ratio(numerator: float, denominator: float) -> float | None:
    """Divide numerator by denominator; None when the denominator is zero or not finite."""
    return numerator / denominator if denominator > 0 and math.isfinite(denominator) else None


def _cagr(growth: float, years: float) -> float | None:
    """Annual growth rate from total growth over `years`; None when too short a span overflows it."""
    if growth <= 0:
        return -1.0
    rate = math.log(growth) / years
    return math.expm1(rate) if rate < 700 else None


def _total(values: np.ndarray) -> float:
    """Sum of the values added one by one from the first (as Python's `sum`, so results stay bit-stable)."""
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


def _moments(rets: np.ndarray) -> tuple[float, float, float]:
    """Mean, sample standard deviation (0 for one value) and downside deviation of per-bar returns.

    The values of `rets.mean()`, `rets.std(ddof=1)` and `sqrt(mean(minimum(rets, 0) ** 2))`, with numpy's
    own operations in numpy's order (one pairwise sum each), but through a single scratch array instead
    of four fresh temporaries: on a million bars each fresh array costs more in page faults than its sum.
    """
    n = len(rets)
    mean = float(np.add.reduce(rets)) / n
    scratch = np.subtract(rets, mean)
    np.square(scratch, out=scratch)
    std = math.sqrt(float(np.add.reduce(scratch)) / (n - 1)) if n > 1 else 0.0
    np.minimum(rets, 0.0, out=scratch)
    np.square(scratch, out=scratch)
    return mean, std, math.sqrt(float(np.add.reduce(scratch)) / n)


def trade_stats(trades: TradeTable, fees: float, rows: np.ndarray | None = None) -> TradeStats:
    """Statistics of a table's trades (only the `rows` mask when given), with the fees of their orders."""
    sel = slice(None) if rows is None else rows
    closed = trades.closed[sel]
    pnl = trades.pnl[sel]
    pnls = pnl[closed]
    holds = (trades.exit_bar[sel] - trades.entry_bar[sel])[closed].astype(np.float64)
    has_closed = len(pnls) > 0
    return TradeStats(
        entries=len(pnl),
        closed_trades=len(pnls),
        pnl=_total(pnl),
        win_rate=float(np.mean(pnls > 0)) if has_closed else None,
        profit_factor=_ratio(float(pnls[pnls > 0].sum()), float(-pnls[pnls < 0].sum())),
        expectancy=float(pnls.mean()) if has_closed else None,
        avg_hold_bars=float(holds.mean()) if has_closed else None,
        median_hold_bars=float(np.median(holds)) if has_closed else None,
        fees=fees,
    )


# The validator of a run's monthly returns.
_MONTHS: TypeAdapter[tuple[MonthlyReturn, ...]] = TypeAdapter(tuple[MonthlyReturn, ...])


class Calendar(NamedTuple):
    """What the metrics read of a time line's dates: its calendar months (UTC) and its span in ISO-8601."""

    months: np.ndarray  # int64 month number (months since 1970-01) of each month with bars, in order
    last: np.ndarray  # int64 index of each such month's last bar on the time line
    start: str  # open of the first bar (its close time minus the bar length), ISO-8601 UTC
    end: str  # close of the last bar, ISO-8601 UTC


def calendar(time: np.ndarray, bar_ms: int) -> Calendar:
    """The `Calendar` of a sorted, non-empty time line of close times (UTC ms) of bars `bar_ms` long."""
    time = np.asarray(time, dtype=np.int64)
    months, last = _months(time)
    return Calendar(months, last, iso_time(int(time[0]) - bar_ms), iso_time(int(time[-1])))


def _months(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The months (numbers since 1970-01) a sorted int64 time line touches, and each one's last bar."""
    # Month of each bar, by its close time minus 1 ms so a bar closing at midnight of the 1st counts
    # in the month it traded in. The time line is sorted: find where each month's bars begin by bisection
    # on the month starts (converting every bar's time to a month would cost far more); `time - 1 >= start`
    # is `time >= start + 1`, so the search runs on the close times themselves, not on a shifted copy.
    first, final = (time[[0, -1]] - 1).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    every = np.arange(first, final + 1)
    month_starts = every[1:].astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    begins = np.searchsorted(time, month_starts + 1)
    bounds = np.concatenate(([0], begins, [len(time)]))
    has_bars = bounds[1:] > bounds[:-1]
    return every[has_bars], bounds[1:][has_bars] - 1


def monthly_returns(result: BacktestResult, dates: Calendar | None = None) -> tuple[MonthlyReturn, ...]:
    """The account's return over each calendar month (UTC) the run touches.

    `dates`: the `calendar` of the result's time line, when already known (a sweep's members share it).
    """
    equity = np.asarray(result.equity, dtype=np.float64)
    months, last = _months(np.asarray(result.time, dtype=np.int64)) if dates is None else dates[:2]
    ends = equity[last]
    starts = np.concatenate(([result.capital], ends[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(starts > 0, ends / starts - 1.0, 0.0)
    # Validated as one tuple: one call into pydantic's core instead of one per month.
    return _MONTHS.validate_python(
        [
            {"year": m // 12 + 1970, "month": m % 12 + 1, "ret": r}
            for m, r in zip(months.tolist(), rets.tolist(), strict=True)
        ]
    )


class CurveFigures(NamedTuple):
    """The figures of a run's equity and exposure curves: the passes over every bar of `compute_metrics`."""

    max_drawdown: float  # largest drawdown of the marked equity (fraction)
    max_drawdown_bars: int  # longest drawdown, bars
    mean: float  # mean per-bar return
    std: float  # sample standard deviation of the per-bar returns
    downside: float  # downside deviation of the per-bar returns
    mean_equity: float  # mean marked equity, quote currency
    exposed: int  # bars with any position
    avg_exposure: float  # mean gross exposure (fraction)


def curve_figures(result: BacktestResult) -> CurveFigures:
    """The `CurveFigures` of a run with bars (numpy and a compiled pass: mostly without the GIL)."""
    equity = np.asarray(result.equity, dtype=np.float64)
    # Per-bar returns of the marked equity, each against the previous point (the capital for the first),
    # and the drawdown figures, in one compiled pass over the curve.
    from runtime.backtest.curve import equity_stats

    rets, max_dd, max_dd_bars = equity_stats(result.capital, equity)
    exposure = np.asarray(result.exposure, dtype=np.float64)
    return CurveFigures(
        max_dd,
        max_dd_bars,
        *_moments(rets),
        float(np.mean(equity)),
        int(np.count_nonzero(exposure > 0)),
        float(np.mean(exposure)),
    )


def compute_metrics(
    result: BacktestResult, bar_ms: int, *, dates: Calendar | None = None, curve: CurveFigures | None = None
) -> Summary:
    """Compute every metric of a run (see the module docstring for the formulas).

    Args:
        result: the simulation's output.
        bar_ms: bar length of the portfolio time line, in milliseconds.
        dates: the `calendar` of the result's time line, when already known (found otherwise).
        curve: the `curve_figures` of the result, when already computed (a sweep computes them on the
            thread that simulates).

    Raises:
        ValueError: when the result has no bars.
    """
    time = np.asarray(result.time, dtype=np.int64)
    if len(time) == 0:
        raise ValueError("the backtest produced no bars")
    dates = calendar(time, bar_ms) if dates is None else dates
    curve = curve_figures(result) if curve is None else curve
    equity = np.asarray(result.equity, dtype=np.float64)
    final = float(equity[-1])
    per_year = 365 * DAY_MS / bar_ms
    max_dd, mean, std, downside = curve.max_drawdown, curve.mean, curve.std, curve.downside
    scale = math.sqrt(per_year)

    # Growth over the calendar span, from the open of the first bar to the close of the last.
    years = (int(time[-1]) - int(time[0]) + bar_ms) / YEAR_MS
    growth = final / result.capital
    cagr = _cagr(growth, years)

    # Turnover: notional of every fill over the mean marked equity.
    orders = result.order_table
    notional = _total(np.abs(orders.filled_qty) * orders.price)
    mean_equity = curve.mean_equity

    stats = trade_stats(result.trade_table, _total(orders.fee))
    sleeves = tuple(
        SleeveSummary(
            **_breakdown(result, s.name, "sleeve", stats),
            name=s.name,
            strategy=s.strategy,
            symbol=s.symbol,
            timeframe=s.timeframe,
            weight=s.weight,
        )
        for s in result.sleeves
    )
    symbol_names = sorted({s.symbol for s in result.sleeves} | set(result.trade_table.symbol.tolist()))
    symbols = tuple(
        SymbolSummary(**_breakdown(result, sym, "symbol", stats), symbol=sym) for sym in symbol_names
    )
    return Summary(
        **stats.model_dump(),
        final_equity=final,
        total_return=growth - 1.0,
        cagr=cagr,
        max_drawdown=max_dd,
        max_drawdown_duration_bars=curve.max_drawdown_bars,
        volatility=std * scale,
        sharpe=None if (r := _ratio(mean, std)) is None else r * scale,
        sortino=None if (r := _ratio(mean, downside)) is None else r * scale,
        calmar=None if cagr is None else _ratio(cagr, max_dd),
        # A count over the bars: the same value as the mean of the 0/1 flags, without a float pass.
        exposure=curve.exposed / len(result.exposure),
        avg_exposure=curve.avg_exposure,
        turnover=notional / mean_equity if mean_equity > 0 else 0.0,
        bars=len(time),
        bar_ms=bar_ms,
        start=dates.start,
        end=dates.end,
        capital=result.capital,
        quote=result.quote,
        synthetic=result.synthetic,
        sleeves=sleeves,
        symbols=symbols,
        monthly_returns=monthly_returns(result, dates),
    )


def _breakdown(result: BacktestResult, key: str, by: str, total: TradeStats) -> dict[str, object]:
    """Trade statistics and account contribution of one sleeve or symbol, as model fields.

    With a single sleeve (or symbol) the breakdown is the whole run's `total`, which is reused.
    """
    trades, orders = result.trade_table, result.order_table
    alone = len(result.sleeves) == 1 if by == "sleeve" else len({s.symbol for s in result.sleeves}) == 1
    if alone and (len(trades.sleeve) == 0 or key == (trades.sleeve if by == "sleeve" else trades.symbol)[0]):
        stats = total
    else:
        rows = (trades.sleeve if by == "sleeve" else trades.symbol) == key
        fills = (orders.sleeve if by == "sleeve" else orders.symbol) == key
        stats = trade_stats(trades, _total(orders.fee[fills]), rows)
    return {**stats.model_dump(), "contribution": stats.pnl / result.capital}
