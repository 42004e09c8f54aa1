"""The Telegram bot: the real python-telegram-bot client of a paper session, against a fake Bot API server.

A `strat run --paper` process runs the bot (STRAT_TELEGRAM_* point it at tests/data/fake_telegram.py);
the test plays the users (commands, button presses) and checks the answers, the engine's state through the
API and the store, and the notifications. The replies' tables are checked as units too.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_session import SPEC, PaperSession
from fake_binance import FakeBinance
from fake_telegram import FakeTelegram

from runtime.control import models as m
from runtime.control.service import ControlError, ControlService
from runtime.store.live import LiveEvent, LiveStore
from runtime.store.runs import RunStore
from runtime.store.schema import open_store
from runtime.telegram import (
    COMMANDS,
    TelegramBot,
    balance_rows,
    failure,
    money,
    order_rows,
    page,
    pnl_text,
    position_rows,
    qty,
    signed,
    status_text,
    table,
    trade_rows,
)

TOKEN = "123456:TEST-TOKEN"  # the bot token the fake accepts (any)
CHAT = 777  # the allowed chat the tests command from
SECOND = 778  # another allowed chat (notified, silent)
OTHER = 999  # a chat that is not allowed


class BotSession(PaperSession):
    """A paper session with its bot; its events read from its store."""

    def store(self) -> tuple[LiveStore, str]:
        """The session's store and deployment key."""
        return LiveStore(open_store(self.db)), self.get("/api/status")["deployment"]

    def events(self, kind: str) -> list[LiveEvent]:
        """The deployment's events of one kind, oldest first."""
        store, key = self.store()
        return [e for _, e in store.events(key, limit=1000) if e.kind == kind]


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    """The fake Bot API server."""
    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture
def session(market: FakeBinance, telegram: FakeTelegram, tmp_path: Path) -> Iterator[BotSession]:
    """A paper session whose bot talks to the fake, chats 777 and 778 allowed; its menu registered."""
    env = {
        "STRAT_TELEGRAM_TOKEN": TOKEN,
        "STRAT_TELEGRAM_CHATS": f"{CHAT}, {SECOND}",
        "STRAT_TELEGRAM_API_URL": telegram.api_url,
    }
    # Faster crosses (SMA 2/4) than the shared spec: trades open and close within a few bars.
    spec = SPEC.replace("param fast = 3", "param fast = 2").replace("param slow = 8", "param slow = 4")
    paper = BotSession(market, tmp_path, env=env, spec=spec)
    telegram.wait_for(lambda: telegram.commands, "the command menu")
    yield paper
    paper.stop()


def is_notice(message: dict[str, Any]) -> bool:
    """Whether a sent message is a notification (a line per event, "[duo] kind sleeve: ...")."""
    return str(message["text"]).startswith("[duo]")


def ask(tg: FakeTelegram, text: str, chat: int = CHAT, **user: Any) -> dict[str, Any]:
    """Send a command from `chat`; the bot's reply there (notifications aside)."""
    after = len(tg.sent)
    tg.push_command(chat, text, **user)
    return tg.wait_sent(lambda s: s["chat_id"] == chat and not is_notice(s), after=after)


def press(tg: FakeTelegram, message: dict[str, Any], label: str, **user: Any) -> dict[str, Any]:
    """Press the button `label` under a sent message; the edit of that message it caused."""
    after = len(tg.edits)
    data = next(b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == label)  # fmt: skip
    tg.push_callback(int(message["chat_id"]), int(message["message_id"]), data, **user)
    tg.wait_for(lambda: len(tg.edits) > after, "the edit")
    return tg.edits[after]


def labels(message: dict[str, Any]) -> list[str]:
    """The labels of a message's inline buttons."""
    markup = message.get("reply_markup") or {"inline_keyboard": []}
    return [b["text"] for row in markup["inline_keyboard"] for b in row]


def test_commands(session: BotSession, telegram: FakeTelegram) -> None:
    """The menu, reads, pause with who asked, refusals, other chats ignored, confirmations of flatten."""
    assert [c["command"] for c in telegram.commands] == [c for c, _ in COMMANDS]

    # /status: the deployment and its state, as a monospace block.
    reply = ask(telegram, "/status")
    assert telegram.calls[:3] == ["getMe", "setMyCommands", "deleteWebhook"]
    assert reply["parse_mode"] == "HTML"
    lines = html.unescape(reply["text"]).removeprefix("<pre>").removesuffix("</pre>").splitlines()
    assert lines[:2] == ["duo:paper:binance:paper", "state    running (paper, binance)"]
    assert "paused   none" in lines
    assert ask(telegram, "/help")["text"].count("\n") == len(COMMANDS) - 1

    # /pause btc pauses the sleeve, visible through the API; the event names the Telegram user.
    assert ask(telegram, "/pause btc")["text"] == "paused btc"
    assert session.get("/api/status")["paused"] == ["btc"]
    assert [(e.sleeve, e.who) for e in session.events("pause")] == [("btc", "telegram:@alice")]

    # A failing command answers one plain sentence.
    reply = ask(telegram, "/pause doge")
    assert reply["text"] == "no sleeve 'doge' in duo; its sleeves: btc, eth"
    assert "parse_mode" not in reply
    assert ask(telegram, "/pause btc eth")["text"] == "one sleeve at most, or none for all of them"
    assert ask(telegram, "/frobnicate")["text"] == "Unknown command; /help lists them."

    # Another chat: no answer, nothing changes; the log names the chat but not what it said.
    sent = len(telegram.sent)
    telegram.push_command(OTHER, "/resume btc", user=5, username="mallory")
    ask(telegram, "/orders")  # updates are handled in order: the other chat's came first
    assert [s for s in telegram.sent[sent:] if s["chat_id"] == OTHER] == []
    assert session.get("/api/status")["paused"] == ["btc"]
    log = (session.folder / "out" / "strat.log").read_text(encoding="utf-8")
    assert "ignored an update from chat 999 (user 5): not an allowed chat" in log
    assert "/resume" not in log and "mallory" not in log

    # /flatten asks first: nothing happens before Confirm, Cancel changes nothing.
    question = ask(telegram, "/flatten eth")
    assert (
        question["text"] == "Flatten sleeve eth? Its positions are closed with market exits and it is paused."
    )
    assert labels(question) == ["Confirm", "Cancel"]
    assert session.events("flatten") == []
    assert press(telegram, question, "Cancel")["text"] == "Cancelled: /flatten eth was not done."
    assert session.events("flatten") == [] and session.get("/api/status")["paused"] == ["btc"]
    assert ask(telegram, "/flatten doge")["text"] == "no sleeve 'doge'; the sleeves are btc, eth"

    # A press from a chat that is not allowed does nothing and gets no answer.
    question = ask(telegram, "/flatten eth")
    answers, edits = len(telegram.answers), len(telegram.edits)
    data = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    telegram.push_callback(OTHER, int(question["message_id"]), data, user=5)
    ask(telegram, "/balance")  # handled after the press
    assert (len(telegram.answers), len(telegram.edits)) == (answers, edits)
    assert session.events("flatten") == []

    # Confirm (by a user without a username) flattens; the buttons are single-use.
    done = press(telegram, question, "Confirm", user=55, username=None)
    assert done["text"] == "flatten: nothing held; paused until resumed"
    assert [(e.sleeve, e.who) for e in session.events("flatten")] == [("eth", "telegram:55")]
    assert session.get("/api/status")["paused"] == ["btc", "eth"]
    again = press(telegram, question, "Confirm")
    assert again["text"] == "This confirmation expired or was used; send the command again."
    assert len(session.events("flatten")) == 1
    assert ask(telegram, "/resume")["text"] == "resumed btc, eth"
    assert session.get("/api/status")["paused"] == []

    # /halt and /reset_halt ask too.
    question = ask(telegram, "/halt")
    assert labels(question) == ["Confirm", "Cancel"] and session.events("halt") == []
    assert press(telegram, question, "Confirm")["text"] == "halted: nothing held; no entries until reset"
    assert session.get("/api/status")["halted"] is True
    question = ask(telegram, "/reset_halt")
    assert question["text"] == "Reset the halt? Entries are allowed again."
    assert press(telegram, question, "Confirm")["text"] == "halt reset"
    assert session.get("/api/status")["halted"] is False
    assert [e.who for e in session.events("halt") + session.events("reset_halt")] == ["telegram:@alice"] * 2


def test_notifications_and_pages(session: BotSession, telegram: FakeTelegram) -> None:
    """Fills reach every allowed chat; a burst is batched, 1 s apart per chat; long lists are paged."""
    # Close bars until two trades are closed (the store keeps the closed ones: the pages below).
    store = open_store(session.db)
    service = ControlService(LiveStore(store), RunStore(store))
    for _ in range(40):
        if len(asyncio.run(service.trades())) >= 2:
            break
        session.bars(1)
    fills = session.events("fill")
    for chat in (CHAT, SECOND):
        line = f"[duo] fill {fills[0].sleeve}: {fills[0].message}"
        telegram.wait_sent(lambda s, c=chat, t=line: s["chat_id"] == c and t in s["text"].splitlines())  # type: ignore[misc]

    # The other reads of a session holding trades.
    pnl = html.unescape(ask(telegram, "/pnl")["text"]).removeprefix("<pre>").removesuffix("</pre>")
    assert [line.split()[0] for line in pnl.splitlines()] == [
        "day", "week", "total", "realized", "open", "equity", "capital",
    ]  # fmt: skip
    assert ask(telegram, "/trades")["text"].startswith("<pre>trades\nsleeve side")
    assert ask(telegram, "/positions")["text"].startswith(("<pre>positions\nsleeve", "<pre>positions: none"))

    # A burst of six events goes out in fewer messages, one second apart at least.
    start = len(telegram.sent)
    for i in range(3):
        telegram.push_command(CHAT, "/pause eth", user=10 + i)
        telegram.push_command(CHAT, "/resume eth", user=10 + i)
    expected = [f"[duo] {kind} eth: " for kind in ("pause", "resume") * 3]

    def delivered() -> list[str]:
        """The notification lines chat 777 got since the burst started, of pause/resume of eth."""
        got = [s for s in telegram.sent[start:] if s["chat_id"] == CHAT and is_notice(s)]
        lines = [line for s in got for line in s["text"].splitlines()]
        return [line for line in lines if line.startswith(("[duo] pause eth: ", "[duo] resume eth: "))]

    telegram.wait_for(lambda: len(delivered()) == 6, "the burst's notifications")
    assert [line.split(": ")[0] + ": " for line in delivered()] == expected
    burst = [s for s in telegram.sent[start:] if s["chat_id"] == CHAT and is_notice(s)]
    assert len(burst) < 6
    notices = [s for s in telegram.sent if s["chat_id"] == CHAT and is_notice(s)]
    assert all(b["at"] - a["at"] >= 1.0 for a, b in itertools.pairwise(notices))

    # Pages: a bot over the session's store alone, one row per page, against a second fake.
    asyncio.run(_pages(service))


async def _pages(service: ControlService) -> None:
    """/trades a page at a time: next/prev buttons edit the message, a page number jumps."""
    trades = await service.trades(limit=200)
    head, rows = trade_rows(trades)
    assert len(rows) >= 2
    fake = FakeTelegram().start()
    bot = TelegramBot(service, TOKEN, [CHAT], fake.api_url, page_rows=1)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        first = await asyncio.to_thread(ask, fake, "/trades")
        n = len(rows)
        assert html.unescape(first["text"]) == f"<pre>trades 1/{n}\n{table(head, rows[:1])}</pre>"
        assert labels(first) == ["next ›"]
        second = await asyncio.to_thread(press, fake, first, "next ›")
        assert html.unescape(second["text"]) == f"<pre>trades 2/{n}\n{table(head, rows[1:2])}</pre>"
        assert labels(second) == ["‹ prev", "next ›"][: 1 + (n > 2)]
        jump = await asyncio.to_thread(ask, fake, f"/trades {n}")
        assert html.unescape(jump["text"]) == f"<pre>trades {n}/{n}\n{table(head, rows[-1:])}</pre>"
        assert (await asyncio.to_thread(ask, fake, "/trades x"))["text"] == "'x' is not a page number"
        # Over the store alone an action is refused with a sentence.
        refused = await asyncio.to_thread(ask, fake, "/pause btc")
        assert refused["text"].startswith("deployment duo:paper:binance:paper does not run in this process")
    finally:
        stop.set()
        await task
        fake.stop()


# ----------------------------------------------------------------------------------------- the tables


def test_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Bot API that cannot be reached: retried and logged, stopped at once, notifications refused."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("STRAT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("STRAT_TELEGRAM_CHATS", "777,, -100123")
    monkeypatch.setenv("STRAT_TELEGRAM_API_URL", f"http://127.0.0.1:{port}/bot")
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    bot = TelegramBot.from_env(ControlService(LiveStore(store), RunStore(store)))
    assert bot.chats == {777, -100123}

    async def scenario() -> None:
        """Run until the first failed connection is logged, then stop."""
        stop = asyncio.Event()
        task = asyncio.create_task(bot.run(stop))
        while not any("cannot connect" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
        stop.set()
        await task
        with pytest.raises(ConnectionError, match="the Telegram bot is not connected"):
            await bot.channel().deliver("hello")

    with caplog.at_level(logging.INFO, logger="strat.telegram"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if r.name == "strat.telegram"]
    assert said[0].startswith("telegram: cannot connect (") and said[0].endswith("retrying in 1 s")
    assert not any(TOKEN in line for line in said)


def test_failure_sentence(caplog: pytest.LogCaptureFixture) -> None:
    """A ControlError is its own sentence; anything else is named in a sentence, its traceback logged."""
    assert failure(ControlError("no sleeve 'x'"), "/pause x") == "no sleeve 'x'"
    try:
        {}["missing"]
    except KeyError as error:
        said = failure(error, "/status now")
    assert said == "/status failed (KeyError); the session's log has the details."
    assert "Traceback" not in said
    assert caplog.records[-1].name == "strat.telegram" and caplog.records[-1].exc_info is not None


def test_numbers() -> None:
    """Amounts, profits and quantities in few characters."""
    assert [money(v) for v in (None, 0.5, -12.345, 1234.5, -98_765.4, 2_345_678.0)] == [
        "-", "0.50", "-12.35", "1,234", "-98,765", "2.35M",
    ]  # fmt: skip
    assert [signed(v) for v in (0.0, 12.3, -4.5)] == ["+0.00", "+12.30", "-4.50"]
    assert [qty(v) for v in (None, 0.0123456789, 1.5, 123456.7)] == ["-", "0.012346", "1.5", "123,457"]


def test_tables_fit_a_phone() -> None:
    """Every table and block stays within 40 characters a line, even with long names and big numbers."""
    position = m.Position(
        sleeve="a_long_sleeve_name", symbol="BTC/USDT", side="short", qty=0.012345678, avg_entry=42150.55,
        last_close=43000.0, value=530.8, unrealized_pnl=-1234.56,
    )  # fmt: skip
    order = m.Order(
        id="x", sleeve="a_long_sleeve_name", symbol="ETH/USDT", side="sell", intent="scale_in",
        reason="signal", qty=0.012345678,
        filled=0.0, avg_price=None, status="canceled", created="2026-12-01T13:00:00Z", error="",
    )  # fmt: skip
    trade = m.Trade(
        sleeve="btc", symbol="BTC/USDT", side="long", qty=0.1, entry_time="2026-12-01T10:00:00Z",
        entry_price=42000.0, exit_time="2026-12-01T13:00:00Z", exit_price=43000.0, pnl=98.7654, ret=0.0235,
        fees=8.5, exit_reason="signal", closed=True,
    )  # fmt: skip
    balance = m.Balance(asset="USDT", free=123456.789, locked=0.0, total=123456.789)
    status = m.Status(
        deployment="duo:paper:binance:paper", name="duo", mode="paper", exchange="binance", state="running",
        attached=True, spec_path="spec.strat", version="0123456789ab", started="", heartbeat="",
        last_update="2026-12-01T13:00:00Z", equity=10234.5, cash=5000.0, sleeves=2, positions=1,
        paused=["btc"], halted=False,
        last_reload=m.Reload(time="2026-12-01T12:00:00Z", ok=True, message="reloaded", who="engine"),
    )  # fmt: skip
    pnl = m.PnL(
        day=12.5, week=-300.25, total=234.5, realized=200.0, unrealized=34.5, equity=10234.5,
        capital=10000.0, quote="USDT",
    )  # fmt: skip
    assert table(*position_rows([position])).splitlines() == [
        "sleeve    side      qty  entry   open",
        "a_long_… short 0.012346 42,151 -1,235",
    ]
    assert table(*trade_rows([trade])).splitlines() == [
        "sleeve side        exit    pnl",
        "btc    long 12-01 13:00 +98.77",
    ]
    blocks = [
        table(*position_rows([position])), table(*order_rows([order])), table(*trade_rows([trade])),
        table(*balance_rows([balance])), status_text(status), pnl_text(pnl),
    ]  # fmt: skip
    assert max(len(line) for block in blocks for line in block.splitlines()) <= 40
    assert status_text(status).splitlines()[-1] == "reload   ok 12-01 12:00"


def test_page_buttons() -> None:
    """A list longer than a page: its page, the page count, prev/next callbacks; an empty list says none."""
    rows = [[f"s{i}", str(i)] for i in range(25)]
    text, buttons = page("trades", ["sleeve", "n"], rows, 2, "trades", 10)
    assert text.startswith("<pre>trades 2/3\nsleeve  n\ns10    10\n")
    assert buttons is not None
    assert [(b.text, b.callback_data) for b in buttons.inline_keyboard[0]] == [
        ("‹ prev", "pg:trades:1"), ("next ›", "pg:trades:3"),
    ]  # fmt: skip
    assert page("trades", ["sleeve", "n"], rows, 9, "trades", 10)[0].startswith("<pre>trades 3/3\n")
    assert page("orders", ["sleeve"], [], 1, "orders", 10) == ("<pre>orders: none</pre>", None)
    assert page("orders", ["x"], [["<b>"]], 1, "orders", 10)[0] == "<pre>orders\nx\n&lt;b&gt;</pre>"
