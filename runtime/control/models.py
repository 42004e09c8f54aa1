"""The control service's typed results (pydantic, frozen): what every front-end shows.

Times are ISO-8601 UTC strings ("2026-12-01T12:00:00Z"); money is in the deployment's quote currency;
quantities are in base units. NaN never appears: an undefined value is None.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base of every result: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Sleeve(Model):
    """One sleeve of a deployment: its market, position, PnL and flags."""

    name: str  # sleeve name
    symbol: str  # market symbol, "BTC/USDT"
    timeframe: str  # bar length, "1h"
    position: float  # signed quantity, base units (negative: short)
    avg_entry: float | None  # average entry price (None when flat)
    last_close: float | None  # the latest close of its market (None before the first bar)
    realized_pnl: float  # closed profit after fees
    unrealized_pnl: float  # open profit at the latest close
    paused: bool  # whether new entries are held back (see `held`)
    held: list[str]  # why: "paused" (a command), "stale" (a feed), "frozen" (a position mismatch)
    halted: bool  # whether a halt (a risk rule or a command) is in force
    last_bar: str  # close time of the last processed bar
    open_orders: int  # orders not finished yet


class Reload(Model):
    """The latest reload of the spec: applied or not, and what it said."""

    time: str  # when it was tried
    ok: bool  # whether the new version was put in force
    message: str  # what changed, or the diagnostics that kept the running version
    who: str  # who asked ("engine" for a save of the file)


class Status(Model):
    """A deployment at a glance."""

    deployment: str  # deployment key: name:mode:exchange:account
    name: str  # portfolio or strategy name
    mode: str  # "paper" or "live"
    exchange: str  # ccxt exchange id
    state: str  # "running", "stopped", "halted", or "not responding" (no heartbeat for a minute)
    attached: bool  # whether the engine runs in this process (commands need it)
    spec_path: str  # the spec file
    version: str  # first 12 hex digits of the sha256 of the spec text in force
    started: str  # when the engine last started
    heartbeat: str  # its last sign of life
    last_update: str | None  # time of the last checkpoint (None before the first)
    equity: float | None  # account equity at the last checkpoint
    cash: float | None  # account cash at the last checkpoint
    sleeves: int  # number of sleeves
    positions: int  # sleeves holding a position
    paused: list[str]  # sleeves whose entries are held back
    halted: bool  # whether the portfolio (or any sleeve) is halted
    last_reload: Reload | None  # the latest reload, if any


class Position(Model):
    """An open position."""

    sleeve: str  # sleeve name
    symbol: str  # market symbol
    side: str  # "long" or "short"
    qty: float  # absolute quantity, base units
    avg_entry: float | None  # average entry price
    last_close: float | None  # the latest close
    value: float | None  # qty * last close
    unrealized_pnl: float  # open profit at the latest close


class Order(Model):
    """An order the deployment sent (live) or has pending (paper: the broker's next-open order)."""

    id: str  # client order id (live) or "paper:<sleeve>" (paper)
    sleeve: str  # sleeve name
    symbol: str  # market symbol
    side: str  # "buy" or "sell"
    intent: str  # "entry", "scale_in" or "exit"
    reason: str  # why ("signal", "stop", "risk", ...)
    qty: float | None  # requested quantity, base units (None: sized when it fills, on paper)
    filled: float  # filled so far, base units
    avg_price: float | None  # average fill price
    status: str  # "pending", "open", "partial", "unknown", "closed", "canceled", "rejected", ...
    created: str  # when it was decided
    error: str  # the last error about it, "" when none


class Trade(Model):
    """A round trip (the open one marked at the latest close)."""

    sleeve: str  # sleeve name
    symbol: str  # market symbol
    side: str  # "long" or "short"
    qty: float  # quantity, base units
    entry_time: str  # entry fill time
    entry_price: float  # average entry price
    exit_time: str | None  # exit fill time (None while open)
    exit_price: float | None  # average exit price (None while open)
    pnl: float  # profit after fees (open: marked)
    ret: float  # pnl as a fraction of the entry value
    fees: float  # fees paid
    exit_reason: str  # "signal", "stop", ..., "open" while open
    closed: bool  # whether it is closed


class PnL(Model):
    """Profit over the day, the week and the whole deployment."""

    day: float  # since 00:00 UTC today
    week: float  # since Monday 00:00 UTC
    total: float  # since the start (equity minus capital)
    realized: float  # closed profit of every sleeve
    unrealized: float  # open profit of every sleeve
    equity: float  # account equity now
    capital: float  # starting capital
    quote: str  # quote currency


class Balance(Model):
    """One asset of the account."""

    asset: str  # asset code, "BTC"
    free: float  # available, asset units
    locked: float  # in open orders, asset units
    total: float  # free + locked


class EquityPoint(Model):
    """One point of the equity curve."""

    time: str  # checkpoint time
    equity: float  # account equity
    cash: float  # account cash


class Event(Model):
    """One entry of the event log."""

    id: int  # store id (increasing)
    time: str  # when
    kind: str  # "fill", "rejected", "error", "stale", "risk", "reload", "alert", "pause", ...
    sleeve: str  # sleeve(s) concerned, "" for the whole deployment
    message: str  # one line (a reload's diagnostics: several)
    who: str  # "engine", or who commanded it ("api:alice", "telegram:@bob")
    deployment: str  # deployment key


class Deployment(Model):
    """A deployment the store knows."""

    key: str  # deployment key
    name: str  # portfolio or strategy name
    mode: str  # "paper" or "live"
    exchange: str  # ccxt exchange id
    state: str  # see `Status.state`
    heartbeat: str  # last sign of life
    attached: bool  # whether it runs in this process


class Run(Model):
    """A saved backtest run, as `strat runs` lists it."""

    id: int  # run id
    saved: str  # when it was saved
    spec: str  # spec file stem
    mode: str  # "backtest", "replay" or "optimize"
    start: str  # open time of the first bar
    end: str  # close time of the last bar
    total_return: float  # fraction
    max_drawdown: float  # fraction
    sharpe: float | None  # annualised Sharpe ratio
    report: bool  # whether its report.html can be served


class RunDetail(Model):
    """One saved run: its spec, parameters and every metric."""

    run: Run  # the headline
    spec_path: str  # the spec as given
    params: dict[str, str]  # --set overrides
    trades: int  # number of trades
    summary: dict[str, object]  # every metric (summary.json)


class Done(Model):
    """The outcome of a command that changes something."""

    ok: bool  # whether it changed anything
    message: str  # one sentence for people
    sleeves: list[str]  # the sleeves it concerned
