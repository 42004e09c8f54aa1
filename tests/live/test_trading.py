"""TradingClient against the fake Binance: orders by client id, fills, fees, balances, faults, credentials.

Every fault on a market order maps to our error types: an uncertain outcome raises OrderUncertain after a
single request (never resent), rate limits are waited out and retried, refusals are not retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from fake_binance import HOUR, JAN_1_2024, FakeBinance, candles

from runtime.data.markets import MarketRules
from runtime.data.times import wall_clock_ms
from runtime.exchange.client import RetryPolicy
from runtime.exchange.trading import (
    AuthenticationFailed,
    Balance,
    Credentials,
    CredentialsError,
    ExchangeOrder,
    ExchangeRejected,
    ExchangeTrade,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientBalance,
    OrderUncertain,
    TradingClient,
    load_credentials,
)

T0 = JAN_1_2024
NOW = T0 + HOUR + 1_800_000  # the fake's clock in these tests: half way through the second hourly candle
POST = "POST /api/v3/order"
R = TypeVar("R")


@pytest.fixture
def btc(fake_exchange: FakeBinance) -> FakeBinance:
    """The fake with hourly BTC/USDT candles opening at 100, 101, ... and 10 000 USDT; clock 1h30 in."""
    fake_exchange.set_candles("BTC/USDT", "1h", candles([100.0 + i for i in range(48)]))
    fake_exchange.deposit("USDT", 10_000)
    fake_exchange.now_ms = NOW
    return fake_exchange


def trade(fake: FakeBinance, work: Callable[[TradingClient], Awaitable[R]], **options: object) -> R:
    """Run work(client) with a started TradingClient on the fake (0.3 s timeout, quick retries)."""
    credentials = options.pop("credentials", Credentials(fake.api_key, fake.secret))
    retry = options.pop("retry", RetryPolicy(attempts=3, backoff_s=0.01, backoff_max_s=0.05, timeout_ms=300))

    async def run() -> R:
        """Start, work, close."""
        client = TradingClient("binance", credentials, api_url=fake.url, retry=retry, rate_limit=False)  # type: ignore[arg-type]
        client.client.timeout_on_exit = 0  # ccxt's pause on close is for TLS sessions; these are plain HTTP
        try:
            await client.start()
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def test_market_order_fills_at_the_forming_open_and_is_found_by_client_id(btc: FakeBinance) -> None:
    async def work(client: TradingClient) -> tuple[ExchangeOrder, ExchangeOrder | None, list[Balance]]:
        placed = await client.place_market("BTC/USDT", "buy", 2, "cid-1")
        return placed, await client.order_by_client_id("BTC/USDT", "cid-1"), await client.balances()

    placed, found, balances = trade(btc, work)
    fill = ExchangeTrade("1", "1000", "cid-1", "BTC/USDT", "buy", 2.0, 101.0, 0.202, "USDT", NOW)
    assert placed == ExchangeOrder(
        "cid-1", "1000", "BTC/USDT", "buy", "market", "closed", 2.0, 2.0, 101.0, 0.202, "USDT", (fill,), NOW
    )
    assert found == placed  # the lookup fetches the fills from the account's trades
    assert balances == [Balance("BTC", 2.0, 0.0), Balance("USDT", 9797.798, 0.0)]


def test_partial_fills_aggregate_and_fees_in_the_received_asset(btc: FakeBinance) -> None:
    btc.fee_asset = "received"
    btc.inject(POST, "partial")
    order = trade(btc, lambda c: c.place_market("BTC/USDT", "buy", 0.5, "p"))
    assert [(t.qty, t.price, t.fee, t.fee_asset) for t in order.trades] == [
        (0.16667, 101.0, 0.00016667, "BTC"),
        (0.16667, 101.0, 0.00016667, "BTC"),
        (0.16666, 101.0, 0.00016666, "BTC"),
    ]
    assert (order.filled, order.average, order.fee, order.fee_asset) == (0.5, 101.0, 0.0005, "BTC")
    assert btc.balances["BTC"].free == Decimal("0.4995")


@pytest.mark.parametrize(("kind", "executed"), [("lost", True), ("502_exec", True), ("drop_exec", True),
                                                ("timeout_exec", True), ("timeout", False), ("503", False),
                                                ("500", False)])  # fmt: skip
def test_an_uncertain_outcome_is_never_resent_and_is_resolved_by_client_id(
    btc: FakeBinance, kind: str, executed: bool
) -> None:
    btc.inject(POST, kind)

    async def work(client: TradingClient) -> ExchangeOrder | None:
        with pytest.raises(OrderUncertain, match="client id u-1"):
            await client.place_market("BTC/USDT", "buy", 1, "u-1")
        return await client.order_by_client_id("BTC/USDT", "u-1")

    found = trade(btc, work)
    assert btc.count(POST) == 1
    assert (found is not None, len(btc.orders)) == (executed, int(executed))
    if found is not None:
        assert (found.status, found.filled, found.average, len(found.trades)) == ("closed", 1.0, 101.0, 1)


def test_rate_limits_are_waited_out_by_retry_after_and_retried(btc: FakeBinance) -> None:
    btc.retry_after_s = 1
    btc.inject(POST, "429", "418")

    async def work(client: TradingClient) -> tuple[ExchangeOrder, float]:
        return await client.place_market("BTC/USDT", "buy", 1, "r"), client.exchange.waited_s

    order, waited = trade(btc, work, retry=RetryPolicy(attempts=3, backoff_s=0.01, timeout_ms=300))
    assert (order.status, btc.count(POST), len(btc.orders)) == ("closed", 3, 1)
    assert waited == 2.0  # Retry-After: 1 twice, rather than the 0.01 s and 0.02 s backoff


def test_a_retry_after_beyond_the_cap_gives_up_at_once(btc: FakeBinance) -> None:
    btc.retry_after_s = 600
    btc.inject(POST, "429")
    with pytest.raises(ExchangeUnavailable, match="rate-limits this client for 600 s") as caught:
        trade(btc, lambda c: c.place_market("BTC/USDT", "buy", 1, "r"))
    assert not isinstance(caught.value, OrderUncertain)
    assert btc.count(POST) == 1


@pytest.mark.parametrize(
    ("setup", "qty", "error", "message"),
    [
        ({}, 200.0, InsufficientBalance, "insufficient balance"),
        ({"min_qty": "0.01"}, 0.005, FilterRejected, "LOT_SIZE"),
        ({"min_notional": "500"}, 1.0, FilterRejected, "NOTIONAL"),
        ({}, 0.000001, FilterRejected, "minimum amount precision"),
    ],
)
def test_refusals_are_not_retried(
    btc: FakeBinance, setup: dict[str, str], qty: float, error: type[Exception], message: str
) -> None:
    btc.market("BTC/USDT", **setup)
    with pytest.raises(error, match=message):
        trade(btc, lambda c: c.place_market("BTC/USDT", "buy", qty, "x"))
    assert btc.count(POST) <= 1 and btc.orders == []


def test_reads_are_retried_through_5xx_and_timeouts(btc: FakeBinance) -> None:
    btc.inject("GET /api/v3/order", "503", "timeout")
    btc.inject("GET /api/v3/account", "lost")

    async def work(client: TradingClient) -> tuple[ExchangeOrder | None, ExchangeOrder | None, list[Balance]]:
        await client.place_market("BTC/USDT", "buy", 1, "k")
        missing = await client.order_by_client_id("BTC/USDT", "nobody")
        return await client.order_by_client_id("BTC/USDT", "k"), missing, await client.balances()

    found, missing, balances = trade(btc, work)
    assert (found is not None and found.filled, missing) == (1.0, None)
    assert balances[0] == Balance("BTC", 1.0, 0.0)


def test_a_reused_client_id_of_a_filled_order_trades_again_and_the_lookup_gives_the_latest(
    btc: FakeBinance,
) -> None:
    async def work(client: TradingClient) -> ExchangeOrder | None:
        await client.place_market("BTC/USDT", "buy", 1, "same")
        await client.place_market("BTC/USDT", "sell", 1, "same")
        return await client.order_by_client_id("BTC/USDT", "same")

    found = trade(btc, work)
    assert found is not None and (found.order_id, found.side) == ("1001", "sell")
    assert len(btc.orders) == 2


def test_open_orders_and_cancel_by_client_id(btc: FakeBinance) -> None:
    async def work(
        client: TradingClient,
    ) -> tuple[list[ExchangeOrder], ExchangeOrder | None, ExchangeOrder | None]:
        await client.client.create_order("BTC/USDT", "limit", "buy", 1, 50, {"newClientOrderId": "rest"})
        opened = await client.open_orders()
        return opened, await client.cancel("BTC/USDT", "rest"), await client.cancel("BTC/USDT", "rest")

    opened, cancelled, again = trade(btc, work)
    assert [(o.client_id, o.status, o.amount, o.filled, math.isnan(o.average)) for o in opened] == [
        ("rest", "open", 1.0, 0.0, True)
    ]
    assert cancelled is not None and (cancelled.client_id, cancelled.status) == ("rest", "canceled")
    assert again is None
    assert btc.balances["USDT"].locked == 0


def test_my_trades_walks_24h_windows_and_pages_with_client_ids(btc: FakeBinance) -> None:
    btc.deposit("USDT", 100_000)

    async def work(client: TradingClient) -> list[ExchangeTrade]:
        client.trades_page = 2
        for i in range(3):
            await client.place_market("BTC/USDT", "buy", 1, f"early-{i}")
        btc.advance(30 * HOUR)  # more than one 24 h window later
        for i in range(3):
            await client.place_market("BTC/USDT", "buy", 1, f"late-{i}")
        fresh = TradingClient("binance", client.credentials, api_url=btc.url, rate_limit=False)
        fresh.trades_page = 2
        try:
            await fresh.start()
            return await fresh.my_trades("BTC/USDT", T0)
        finally:
            await fresh.close()

    trades = trade(btc, work)
    assert [(t.client_id, t.price, t.time_ms) for t in trades] == [
        *[(f"early-{i}", 101.0, NOW) for i in range(3)],
        *[(f"late-{i}", 131.0, NOW + 30 * HOUR) for i in range(3)],
    ]


def test_rules_round_qty_clock_and_sandbox(btc: FakeBinance) -> None:
    btc.market("BTC/USDT", step="0.001", min_qty="0.01", tick="0.1")

    async def work(client: TradingClient) -> tuple[MarketRules, float, float, int]:
        before = wall_clock_ms()
        server = await client.server_time()
        # The offset is the exchange clock minus the local clock at the middle of the request.
        assert NOW - wall_clock_ms() <= client.clock_offset_ms <= NOW - before
        rounded = client.round_qty("BTC/USDT", 0.12399), client.round_qty("BTC/USDT", 0.0099)
        return client.rules("BTC/USDT"), *rounded, server

    rules, rounded, under, server = trade(btc, work)
    assert rules == MarketRules("binance", "BTC/USDT", 0.001, 0.01, 5.0, tick_size=0.1)
    assert (rounded, under, server) == (0.123, 0.0, NOW)
    with pytest.raises(ExchangeRejected, match="kraken has no sandbox"):
        TradingClient("kraken", Credentials("k", "s"), sandbox=True)
    sandboxed = TradingClient("binance", Credentials("k", "s"), sandbox=True)
    assert sandboxed.client.urls["api"]["private"].startswith("https://testnet.binance.vision/")
    redirected = TradingClient("binance", Credentials("k", "s"), sandbox=True, api_url=btc.url)
    assert redirected.client.urls["api"]["private"] == btc.url + "/api/v3"


def test_wrong_credentials_fail_without_showing_them(
    btc: FakeBinance, caplog: pytest.LogCaptureFixture
) -> None:
    key, secret = "KEY-d1st1nct1ve-4242", "SECRET-s3cr3t-9191"
    btc.api_key = key  # the key is right but the secret wrong: the signature check fails
    credentials = Credentials(key, secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationFailed) as caught:
        trade(btc, lambda c: c.place_market("BTC/USDT", "buy", 1, "z"), credentials=credentials)
    btc.inject(POST, "lost")  # an uncertain outcome's message echoes the request too
    btc.api_key, btc.secret = key, secret
    with pytest.raises(OrderUncertain) as uncertain:
        trade(btc, lambda c: c.place_market("BTC/USDT", "buy", 1, "z"), credentials=credentials)
    texts = [str(caught.value), repr(caught.value), str(uncertain.value), repr(credentials), str(credentials)]
    texts += [str(e.value.__cause__) for e in (caught, uncertain)] + [caplog.text]
    assert any("api/v3/order" in r.getMessage() for r in caplog.records)  # ccxt did log the requests
    for text in texts:
        assert key not in text and secret not in text
    assert repr(credentials) == f"Credentials(account={credentials.account})"
    assert credentials.account.startswith("sha256:") and len(credentials.account) == 15


def test_credentials_from_the_environment_then_the_secrets_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRAT_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("STRAT_BINANCE_API_SECRET", raising=False)
    assert load_credentials("binance", tmp_path) is None
    (tmp_path / ".strat").mkdir()
    secrets = tmp_path / ".strat" / "secrets.toml"
    secrets.write_text('[binance]\napi_key = "file-key"\napi_secret = "file-secret"\n')
    assert load_credentials("binance", tmp_path) == Credentials("file-key", "file-secret")
    assert load_credentials("kraken", tmp_path) is None
    monkeypatch.setenv("STRAT_BINANCE_API_KEY", "env-key")
    with pytest.raises(CredentialsError, match="STRAT_BINANCE_API_SECRET is not set"):
        load_credentials("binance", tmp_path)
    monkeypatch.setenv("STRAT_BINANCE_API_SECRET", "env-secret")
    assert load_credentials("binance", tmp_path) == Credentials("env-key", "env-secret")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[binance]\napi_key = "leaky-value\n', "not valid TOML"),
        ('[binance]\napi_key = "leaky-value"\n', "needs string values for api_secret"),
        ("[binance]\napi_key = 12\napi_secret = 'leaky-value'\n", "needs string values for api_key"),
    ],
)
def test_a_malformed_secrets_file_is_named_without_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.delenv("STRAT_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("STRAT_BINANCE_API_SECRET", raising=False)
    (tmp_path / ".strat").mkdir()
    (tmp_path / ".strat" / "secrets.toml").write_text(text)
    with pytest.raises(CredentialsError, match=message) as caught:
        load_credentials("binance", tmp_path)
    assert "secrets.toml" in str(caught.value) and "leaky" not in str(caught.value)


def test_an_exchange_that_cannot_be_reached_is_not_an_uncertain_order(btc: FakeBinance) -> None:
    async def work(client: TradingClient) -> None:
        # A second client with the markets but no kept-alive connection (one that breaks after sending
        # would be uncertain): after the fake stops, its connections are refused, nothing was sent.
        fresh = TradingClient("binance", client.credentials, api_url=btc.url, retry=client.exchange.retry)
        fresh.client.set_markets(client.client.markets)
        btc.stop()
        try:
            with pytest.raises(ExchangeUnavailable, match="cannot connect") as caught:
                await fresh.place_market("BTC/USDT", "buy", 1, "gone")
            assert not isinstance(caught.value, OrderUncertain)
        finally:
            await fresh.close()

    try:
        trade(btc, work)
    finally:
        btc.start()  # the fixture stops it again
    assert btc.orders == []


def test_unknown_market_is_rejected(btc: FakeBinance) -> None:
    async def work(client: TradingClient) -> None:
        client.rules("DOGE/USDT")

    with pytest.raises(ExchangeRejected, match="no spot market 'DOGE/USDT'"):
        trade(btc, work)
