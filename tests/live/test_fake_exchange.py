"""The fake Binance spot exchange against the real ccxt clients (sync and asyncio): Binance's semantics.

Market fills at the forming candle's open, fees in both modes, balances, resting limit orders, queries by
client id, duplicate client ids, filters, authentication, klines, and what each injected fault raises in
ccxt (RECIPES §2b) and whether it executed.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from fake_binance import HOUR, JAN_1_2024, FakeBinance, candles

from runtime.exchange.client import _rebase

T0 = JAN_1_2024
MINUTE = 60_000
OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}


def _client(fake: FakeBinance, cls: Any = ccxt.binance, key: str = "", secret: str = "") -> Any:
    """A ccxt binance client on the fake with the fake's credentials (or the given ones), 0.3 s timeout."""
    ex = cls(
        {
            "apiKey": key or fake.api_key,
            "secret": secret or fake.secret,
            "enableRateLimit": False,
            "timeout": 300,
            "options": dict(OPTIONS),
        }
    )
    ex.urls["api"] = _rebase(ex.urls["api"], fake.url)
    return ex


@pytest.fixture
def btc(fake_exchange: FakeBinance) -> FakeBinance:
    """The fake with hourly BTC/USDT candles opening at 100, 101, ... and 10 000 USDT; clock 1h30 in."""
    fake_exchange.set_candles("BTC/USDT", "1h", candles([100.0 + i for i in range(10)]))
    fake_exchange.deposit("USDT", 10_000)
    fake_exchange.now_ms = T0 + HOUR + 30 * MINUTE
    return fake_exchange


def test_market_buy_fills_at_the_forming_open_with_quote_fees(btc: FakeBinance) -> None:
    ex = _client(btc)
    ex.load_markets()
    order = ex.create_order("BTC/USDT", "market", "buy", 2, None, {"newClientOrderId": "c1"})
    assert (order["clientOrderId"], order["status"], order["filled"], order["average"]) == (
        "c1",
        "closed",
        2,
        101,
    )
    assert order["fee"] == {"currency": "USDT", "cost": 0.202}
    assert btc.balances["BTC"].free == Decimal(2)
    assert btc.balances["USDT"].free == Decimal("10000") - Decimal("202") - Decimal("0.202")
    # Looked up by client id, and in the account's trades.
    found = ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "c1"})
    assert (found["id"], found["status"], found["filled"]) == (order["id"], "closed", 2)
    trades = ex.fetch_my_trades("BTC/USDT", params={"orderId": order["id"]})
    assert [(t["amount"], t["price"], t["fee"]["cost"], t["timestamp"]) for t in trades] == [
        (2, 101, 0.202, T0 + HOUR + 30 * MINUTE)
    ]
    assert ex.fetch_balance()["total"] == {"BTC": 2.0, "USDT": 9797.798}


def test_received_fee_mode_charges_base_on_buys_and_quote_on_sells(btc: FakeBinance) -> None:
    btc.fee_asset = "received"
    ex = _client(btc)
    ex.load_markets()
    buy = ex.create_order("BTC/USDT", "market", "buy", 1, None)
    assert buy["fee"] == {"currency": "BTC", "cost": 0.001}
    btc.advance(HOUR)  # the forming candle now opens at 102
    sell = ex.create_order("BTC/USDT", "market", "sell", 0.5, None)
    assert (sell["average"], sell["fee"]) == (102, {"currency": "USDT", "cost": 0.051})
    assert btc.balances["BTC"].free == Decimal("0.499")
    assert btc.balances["USDT"].free == Decimal("10000") - 101 + 51 - Decimal("0.051")


def test_partial_fault_fills_a_market_order_in_several_fills_at_one_price(btc: FakeBinance) -> None:
    ex = _client(btc)
    ex.load_markets()
    btc.inject("POST /api/v3/order", "partial")
    order = ex.create_order("BTC/USDT", "market", "buy", 0.5, None)
    assert [(t["amount"], t["price"]) for t in order["trades"]] == [
        (0.16667, 101),
        (0.16667, 101),
        (0.16666, 101),
    ]
    assert (order["filled"], order["fee"]["cost"]) == (0.5, 0.0505)
    assert len(ex.fetch_my_trades("BTC/USDT")) == 3


def test_limit_order_rests_locks_funds_and_fills_when_a_later_candle_crosses(btc: FakeBinance) -> None:
    ex = _client(btc)
    ex.load_markets()
    order = ex.create_order("BTC/USDT", "limit", "buy", 1, 93.5, {"newClientOrderId": "lim"})
    assert order["status"] == "open"
    assert (btc.balances["USDT"].free, btc.balances["USDT"].locked) == (Decimal("9906.5"), Decimal("93.5"))
    assert [o["clientOrderId"] for o in ex.fetch_open_orders("BTC/USDT")] == ["lim"]
    # A second open order with the same client id is refused while the first is open.
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        ex.create_order("BTC/USDT", "limit", "buy", 1, 90, {"newClientOrderId": "lim"})
    btc.advance(HOUR)  # the next candle is forming (open 102): nothing crosses yet
    assert ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "lim"})["status"] == "open"
    btc.advance(HOUR)  # that candle closed (low 92): it crossed 93.5
    found = ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "lim"})
    assert (found["status"], found["average"]) == ("closed", 93.5)
    assert (btc.balances["USDT"].locked, btc.trades[-1].maker) == (Decimal(0), True)
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(None, "BTC/USDT", params={"origClientOrderId": "lim"})


def test_cancel_releases_the_locked_funds(btc: FakeBinance) -> None:
    ex = _client(btc)
    ex.load_markets()
    ex.create_order("BTC/USDT", "limit", "buy", 1, 50, {"newClientOrderId": "low"})
    cancelled = ex.cancel_order(None, "BTC/USDT", params={"origClientOrderId": "low"})
    assert (cancelled["status"], cancelled["info"]["origClientOrderId"]) == ("canceled", "low")
    assert (btc.balances["USDT"].free, btc.balances["USDT"].locked) == (Decimal(10_000), Decimal(0))
    assert ex.fetch_open_orders("BTC/USDT") == []


def test_a_filled_market_orders_client_id_can_be_reused_and_executes_again(btc: FakeBinance) -> None:
    ex = _client(btc)
    ex.load_markets()
    for _ in range(2):
        ex.create_order("BTC/USDT", "market", "buy", 1, None, {"newClientOrderId": "again"})
    assert [o.client_id for o in btc.orders] == ["again", "again"]
    assert btc.balances["BTC"].free == Decimal(2)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"min_qty": "0.01"}, ccxt.InvalidOrder, "LOT_SIZE"),
        ({"min_notional": "500"}, ccxt.BadRequest, "NOTIONAL"),
    ],
)
def test_filters_refuse_with_binances_codes(
    btc: FakeBinance, params: dict[str, str], error: Any, message: str
) -> None:
    btc.market("BTC/USDT", **params)
    ex = _client(btc)
    ex.load_markets()
    with pytest.raises(error, match=message):
        ex.create_order("BTC/USDT", "market", "buy", 0.005, None)
    assert btc.orders == []


def test_price_filter_and_insufficient_balance(btc: FakeBinance) -> None:
    btc.market("BTC/USDT", tick="0.5")
    ex = _client(btc)
    ex.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "sell", 1, None)
    btc.market("BTC/USDT", tick="1")  # after load_markets: ccxt sends 93.5, the fake refuses it
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        ex.create_order("BTC/USDT", "limit", "buy", 1, 93.5)
    assert btc.orders == []


def test_wrong_secret_or_key_is_an_authentication_error(btc: FakeBinance) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        _client(btc, secret="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        _client(btc, key="wrong").fetch_balance()


def test_klines_serve_only_opened_candles_the_forming_one_last_any_interval(btc: FakeBinance) -> None:
    btc.set_candles("ETH/USDT", "1s", candles([5.0, 6.0, 7.0], start=T0, step=1000))
    btc.now_ms = T0 + 1500
    ex = _client(btc)
    assert [row[0] for row in ex.fetch_ohlcv("ETH/USDT", "1s")] == [T0, T0 + 1000]
    btc.now_ms = T0 + 2 * HOUR
    assert [row[1] for row in ex.fetch_ohlcv("BTC/USDT", "1h", T0)] == [100, 101, 102]
    assert btc.price("BTC/USDT") == Decimal(102)
    assert ex.fetch_time() == T0 + 2 * HOUR


# Each fault on POST /api/v3/order: (ccxt error raised by the sync client, by the asyncio one, executed?).
FAULTS = {
    "lost": (ccxt.RequestTimeout, ccxt.RequestTimeout, True),
    "502_exec": (ccxt.ExchangeNotAvailable, ccxt.ExchangeNotAvailable, True),
    "drop_exec": (ccxt.NetworkError, ccxt.ExchangeNotAvailable, True),
    "503": (ccxt.ExchangeNotAvailable, ccxt.ExchangeNotAvailable, False),
    "500": (ccxt.ExchangeNotAvailable, ccxt.ExchangeNotAvailable, False),
    "429": (ccxt.DDoSProtection, ccxt.DDoSProtection, False),
    "418": (ccxt.DDoSProtection, ccxt.DDoSProtection, False),
    "timeout": (ccxt.RequestTimeout, ccxt.RequestTimeout, False),
    "timeout_exec": (ccxt.RequestTimeout, ccxt.RequestTimeout, True),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_each_fault_raises_recipes_error_in_sync_and_async_ccxt(btc: FakeBinance, kind: str) -> None:
    sync_error, async_error, executed = FAULTS[kind]
    ex = _client(btc)
    ex.load_markets()
    btc.inject("POST /api/v3/order", kind)
    with pytest.raises(sync_error) as caught:
        ex.create_order("BTC/USDT", "market", "buy", 1, None, {"newClientOrderId": "s"})
    assert isinstance(caught.value, ccxt.NetworkError)

    async def place() -> None:
        """The same with the asyncio client."""
        aex = _client(btc, ccxt_async.binance)
        try:
            await aex.load_markets()
            btc.inject("POST /api/v3/order", kind)
            with pytest.raises(async_error):
                await aex.create_order("BTC/USDT", "market", "buy", 1, None, {"newClientOrderId": "a"})
        finally:
            await aex.close()

    asyncio.run(place())
    assert [o.client_id for o in btc.orders] == (["s", "a"] if executed else [])


def test_chaos_draws_the_same_faults_for_the_same_seed(btc: FakeBinance) -> None:
    def run() -> list[bool]:
        """Ten time requests under chaos; which failed."""
        btc.chaos(0.5, seed=7, kinds=("503",), routes=("GET /api/v3/time",))
        ex = _client(btc)
        outcome = []
        for _ in range(10):
            try:
                ex.fetch_time()
                outcome.append(True)
            except ccxt.ExchangeNotAvailable:
                outcome.append(False)
        return outcome

    first = run()
    assert first == run()
    assert True in first and False in first
    btc.chaos(0, seed=0, kinds=())
    assert _client(btc).fetch_time() == btc.now_ms
