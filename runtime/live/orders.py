"""The order manager of a live deployment: sends the broker's pending orders and books what comes back.

Safety rules (the part users lose money on):

- Every order has a deterministic client order id derived from (deployment, sleeve, bar, intent)
  (`client_id`), and its intent is written to the store *before* the request is sent (write-ahead). An
  intent already in the store is never sent again: it is looked up instead.
- After an uncertain outcome (timeout, 5xx, dropped connection) the order is looked up by its client id
  before anything is resent; it is resent (with the same id) only once the exchange says it does not
  know it. Binance refuses a duplicate client id only while the first order is open, so a blind retry of
  a market order that did go through would buy twice.
- Rejections (insufficient balance, lot size, minimum notional) are not retried: they become events and
  the order is dropped. The quantity is rounded down to the lot step; an order under the minimum is
  skipped with an event.
- Fills are booked through the shared broker (`Simulator.book`), each exchange quantity once: an
  intent's `booked` quantity is saved in the same transaction as the broker snapshot (the engine's
  checkpoint), so a process killed at any point books the rest, and only the rest, on restart.
- Fees are booked in the asset the exchange charged them in: a fee in the base asset reduces the
  quantity received (and costs its value at the fill price), a fee in the quote asset is paid from cash.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from runtime.broker.simulator import PendingOrder, Simulator
from runtime.exchange.client import ExchangeRejected, ExchangeUnavailable
from runtime.exchange.trading import (
    ExchangeOrder,
    FilterRejected,
    InsufficientBalance,
    OrderUncertain,
    TradingClient,
)
from runtime.store.live import FillRow, Intent, LiveEvent, LiveStore

# Exchange order states after which nothing more can fill.
FINAL = frozenset({"closed", "canceled", "rejected", "expired"})
# Intent states that may still change on the exchange (looked up on reconciliation).
UNFINISHED = frozenset({"pending", "open", "partial", "unknown"})
# Lookups of an order after an uncertain outcome before it is declared unknown to the exchange.
LOOKUPS = 4


def client_id(deployment: str, sleeve: int, bar_close_ms: int, intent: str) -> str:
    """The deterministic client order id of a decision: 34 characters from [0-9a-z].

    Layout: "st" + 6 characters of the deployment's hash (the prefix that marks our orders) + the sleeve
    index (2 hex digits) + 24 characters of the hash of (deployment, sleeve, bar, intent).
    """
    return (
        deployment_prefix(deployment)
        + f"{sleeve:02x}"
        + _digest(f"{deployment}|{sleeve}|{bar_close_ms}|{intent}")[:24]
    )


def deployment_prefix(deployment: str) -> str:
    """The client id prefix of a deployment's orders (orders without it are not ours)."""
    return "st" + _digest(deployment)[:6]


def sleeve_of(prefix: str, cid: str) -> int | None:
    """The sleeve index a client id of ours encodes, or None for an id that is not ours."""
    if not cid.startswith(prefix) or len(cid) != len(prefix) + 26:
        return None
    try:
        return int(cid[len(prefix) : len(prefix) + 2], 16)
    except ValueError:
        return None


def _digest(text: str) -> str:
    """Hex sha256 of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class OrderManager:
    """Sends a deployment's orders through a `TradingClient` and books them into its `Simulator`."""

    deployment: str  # deployment key
    trading: TradingClient  # the exchange account
    store: LiveStore  # write-ahead intents, fills and events
    simulator: Simulator  # the shared broker (external fills)
    symbols: dict[str, str]  # sleeve name -> ccxt symbol
    clock: Callable[[], int]  # exchange time, UTC ms
    events: list[LiveEvent] = field(default_factory=list)  # events since the engine last collected them
    # changed intents, saved with the next checkpoint
    intents: dict[str, Intent] = field(default_factory=dict)
    dust: dict[str, float] = field(default_factory=dict)  # base asset -> quantity written off as dust
    # Intents whose outcome is not settled yet, by client id (kept across checkpoints until settled).
    unsettled: dict[str, Intent] = field(default_factory=dict)

    def waiting(self) -> set[str]:
        """Sleeves with an order whose outcome is not settled yet (no new order is sent for them)."""
        return {i.sleeve for i in self.unsettled.values()}

    async def settle(self) -> None:
        """Look up every unsettled order (open, partly filled, or of unknown outcome) and book its fills."""
        for intent in list(self.unsettled.values()):
            await self.resolve(intent)

    def event(self, kind: str, sleeve: str, message: str) -> None:
        """Record an event for the next checkpoint."""
        self.events.append(LiveEvent(self.clock(), kind, sleeve, message))

    async def submit(self, order: PendingOrder, bar_close_ms: int) -> None:
        """Send one pending order of the broker, or look it up when it was sent before; book the result."""
        symbol = self.symbols[order.sleeve]
        cid = client_id(self.deployment, order.index, bar_close_ms, order.intent)
        known = self.store.intent(cid)
        if known is not None:
            # Written (and maybe sent) by an earlier attempt or process: never sent twice.
            await self.resolve(known)
            return
        qty = self.trading.round_qty(symbol, order.qty)
        if qty <= 0.0:
            self.event(
                "skipped", order.sleeve, f"{order.intent} of {order.qty:g} {symbol} is under the minimum"
            )
            self.simulator.drop(order.sleeve)
            return
        now = self.clock()
        side = "buy" if order.buy else "sell"
        intent = Intent(
            cid, self.deployment, order.sleeve, symbol, bar_close_ms, order.intent, order.reason, side, qty,
            "pending", "", 0.0, 0.0, math.nan, 0.0, now, now, "",
        )  # fmt: skip
        intent = self.store.write_intent(intent)
        await self._send(intent, resend=True)

    async def _send(self, intent: Intent, resend: bool) -> None:
        """Place a written intent's market order; after an uncertain outcome look it up (resend once)."""
        try:
            placed = await self.trading.place_market(intent.symbol, intent.side, intent.qty, intent.client_id)
        except OrderUncertain as error:
            self.event("uncertain", intent.sleeve, f"{intent.client_id}: {error}; looking it up")
            try:
                found = await self.lookup(intent)
            except ExchangeUnavailable as unreachable:
                self._save(replace(intent, status="unknown", error=str(unreachable)[:200]))
                return
            if found is None and resend:
                # The exchange does not know it: it was never placed, so sending it (same id) is safe.
                await self._send(intent, resend=False)
            elif found is None:
                self._save(replace(intent, status="unknown", error=str(error)[:200]))
            else:
                self.apply(intent, found)
            return
        except (InsufficientBalance, FilterRejected, ExchangeRejected) as error:
            self._save(replace(intent, status="rejected", error=str(error)[:200]))
            self.event("rejected", intent.sleeve, f"{intent.side} {intent.qty:g} {intent.symbol}: {error}")
            self._drop(intent.sleeve)
            return
        except ExchangeUnavailable as error:
            # The request may or may not have reached the exchange: reconciliation settles it.
            self._save(replace(intent, status="unknown", error=str(error)[:200]))
            self.event("error", intent.sleeve, f"{intent.client_id}: {error}")
            return
        self.apply(intent, placed)

    async def lookup(self, intent: Intent) -> ExchangeOrder | None:
        """The exchange's view of an intent's order; None when the exchange says it does not know it.

        Asked a few times (an order just placed may take a moment to show); raises ExchangeUnavailable
        when the exchange cannot be asked: then nobody knows, and the intent stays unsettled.
        """
        for attempt in range(LOOKUPS):
            found = await self.trading.order_by_client_id(intent.symbol, intent.client_id)
            if found is not None:
                return found
            await asyncio.sleep(0.05 * 2**attempt)
        return None

    async def resolve(self, intent: Intent) -> None:
        """Settle an intent whose outcome the store does not know: book what filled, or mark it missed.

        An intent the exchange does not know was never placed: it is marked missed (a decision is never
        sent late).
        """
        try:
            found = await self.lookup(intent)
        except ExchangeUnavailable:
            # Nobody can tell now: it stays unsettled (its sleeve sends nothing new) and is asked again.
            if intent.client_id not in self.unsettled:
                self._save(replace(intent, status="unknown" if intent.status == "pending" else intent.status))
            return
        if found is None and intent.status in ("open", "partial"):
            # The exchange accepted it once: keep asking (the lookup failed, not the order).
            return
        if found is None:
            self._save(replace(intent, status="missed", updated_ms=self.clock()))
            self.event(
                "missed", intent.sleeve, f"{intent.intent} {intent.client_id} never reached the exchange"
            )
            self._drop(intent.sleeve)
            return
        self.apply(intent, found)

    def apply(self, intent: Intent, order: ExchangeOrder) -> None:
        """Book the part of `order` not booked yet into the broker and update the intent."""
        new = order.filled - intent.booked
        booked_cost = intent.booked * (0.0 if math.isnan(intent.avg_price) else intent.avg_price)
        fee_total = self._fee_quote(intent.symbol, order)
        if new > 1e-12:
            price = (order.filled * order.average - booked_cost) / new
            fee = fee_total - intent.fee
            self._book(intent, new, price, fee, order)
            intent = replace(intent, booked=order.filled, avg_price=order.average, fee=fee_total)
            for trade in order.trades:
                self.store.record_fill(
                    FillRow(self.deployment, intent.client_id, trade.trade_id, intent.sleeve, intent.symbol,
                            trade.side, trade.qty, trade.price, trade.fee, trade.fee_asset, trade.time_ms)
                )  # fmt: skip
            self.event(
                "fill",
                intent.sleeve,
                f"{intent.side} {new:g} {intent.symbol} at {price:g} ({intent.client_id})",
            )
        status = {
            "closed": "filled",
            "canceled": "canceled",
            "expired": "canceled",
            "rejected": "rejected",
        }.get(order.status, "partial" if order.filled > 0 else "open")
        self._save(
            replace(
                intent, status=status, order_id=order.order_id, filled=order.filled, updated_ms=self.clock()
            )
        )
        if order.status in FINAL:
            self._drop(intent.sleeve)

    def _book(self, intent: Intent, qty: float, price: float, fee: float, order: ExchangeOrder) -> None:
        """Book `qty` (exchange quantity) of an intent's order into its sleeve, net of a base-asset fee."""
        sim = self.simulator
        pending = {p.sleeve: p for p in sim.pending(sized=False)}.get(intent.sleeve)
        if pending is None:
            # The broker restarted from a checkpoint taken before this order: put it back in its slot.
            side = 1 if (intent.side == "buy") == (intent.intent != "exit") else -1
            pending = sim.adopt(intent.sleeve, intent.intent, side, intent.reason)
        base = intent.symbol.split("/")[0]
        net = qty
        if order.fee_asset == base and intent.side == "buy":
            # The fee was taken from what was bought: the position grows by what arrived.
            net = qty - fee / price if price > 0 else qty
        held = abs(sim.position(intent.sleeve))
        if intent.intent == "exit":
            net = min(net, held)
        sim.book(pending, net, price, fee, intent.qty)
        # An exit that leaves less than a lot step (fees taken in the base asset) writes the rest off.
        rest = abs(sim.position(intent.sleeve))
        if intent.intent == "exit" and rest > 0.0 and order.status in FINAL:
            self.dust[base] = self.dust.get(base, 0.0) + rest
            sim.book(pending, rest, price, 0.0, intent.qty)

    def _fee_quote(self, symbol: str, order: ExchangeOrder) -> float:
        """An order's total fee in quote currency (a fee in another asset than base or quote counts 0)."""
        base, quote = symbol.split("/")[0], symbol.split("/")[1].split(":")[0]
        if order.fee_asset == quote or not order.fee:
            return order.fee
        if order.fee_asset == base:
            return order.fee * order.average
        self.event(
            "fee", "", f"fee of {order.fee:g} {order.fee_asset} on {order.client_id} not in {base} or {quote}"
        )
        return 0.0

    def _drop(self, sleeve: str) -> None:
        """End a sleeve's pending order in the broker, if it has one."""
        if any(p.sleeve == sleeve for p in self.simulator.pending(sized=False)):
            self.simulator.drop(sleeve)

    def _save(self, intent: Intent) -> None:
        """Keep an intent's new state for the next checkpoint (the write-ahead row stays until then)."""
        self.intents[intent.client_id] = intent
        if intent.status in UNFINISHED:
            self.unsettled[intent.client_id] = intent
        else:
            self.unsettled.pop(intent.client_id, None)
