"""The Telegram bot: the control service's commands from a phone, and the notifications of the allowed chats.

Enabled when STRAT_TELEGRAM_TOKEN (the bot's token from @BotFather) and STRAT_TELEGRAM_CHATS (the chat
ids allowed, comma-separated) are set; STRAT_TELEGRAM_API_URL points it at a self-hosted Bot API server
(its base URL, e.g. "http://127.0.0.1:8081/bot": the token and the method are appended). It polls for
updates (no webhook, no open port). Every command is a thin call of the `ControlService`; the commands
that close positions or stop trading (/flatten, /halt, /reset_halt) first ask for a confirmation with
inline buttons, and act only on the Confirm of the same chat, once, within `CONFIRM_TTL_S`. Replies are
monospace tables narrow enough for a phone; lists longer than a page get prev/next buttons (or a page
number argument). Updates from any other chat are ignored and logged without their content; a failing
command answers one plain sentence (its traceback goes to the log, logger "strat.telegram").

This is the only module that imports python-telegram-bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from runtime.control import models as m
from runtime.control.bus import Channel
from runtime.control.service import ControlError, ControlService

log = logging.getLogger("strat.telegram")  # the bot's log: refusals, failures (never message contents)

# The command menu (setMyCommands) and /help, in order: (command, what it does).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("status", "the deployment at a glance"),
    ("positions", "open positions"),
    ("orders", "open and pending orders"),
    ("trades", "recent trades, newest first [page]"),
    ("pnl", "profit today, this week, in total"),
    ("balance", "the account's assets"),
    ("pause", "hold back new entries [sleeve]"),
    ("resume", "allow entries again [sleeve]"),
    ("flatten", "close positions and pause [sleeve] (asks to confirm)"),
    ("reload", "re-read the spec now"),
    ("halt", "close everything, no entries until reset (asks to confirm)"),
    ("reset_halt", "lift the halt (asks to confirm)"),
    ("help", "this list"),
)
LISTS = ("positions", "orders", "trades", "balance")  # the paginated list commands
PAGE_ROWS = 10  # rows of a list per message
NAME_CHARS = 8  # widest cell of a table's first column (names); longer ones are cut with "…"
CELL_CHARS = 11  # widest cell of the other columns
CONFIRM_TTL_S = 120.0  # how long a confirmation button stays valid, seconds
POLL_TIMEOUT_S = 10  # long-poll timeout of getUpdates, seconds (stopping does not wait for it)
READY_WAIT_S = 30.0  # how long a notification waits for the bot to connect before failing (retried)
MAX_REPLY_CHARS = 3500  # longest reply text before escaping (Telegram takes 4096)

T = TypeVar("T")
Reply = tuple[str, InlineKeyboardMarkup | None]  # an HTML text and its buttons
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]  # a command's handler


# ------------------------------------------------------------------------------------------ formatting


def money(value: float | None) -> str:
    """An amount, compact: "12,345", "123.45", "-0.5", "1.23M"; "-" for None."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.2f}M"
    if size >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def signed(value: float) -> str:
    """A profit with its sign: "+12.34", "-1,234"."""
    return money(value) if value < 0 else "+" + money(value)


def qty(value: float | None) -> str:
    """A quantity with 5 significant digits: "0.012346", "1.5", "123,457"; "-" for None."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.5g}"


def _cell(text: str, limit: int) -> str:
    """A table cell cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A monospace table: the first column left-aligned, the others right-aligned, one space apart."""
    cells = [
        [_cell(c, NAME_CHARS if i == 0 else CELL_CHARS) for i, c in enumerate(row)] for row in [head, *rows]
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join(
        " ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    )


def pre(text: str) -> str:
    """Text as an HTML monospace block, escaped."""
    return f"<pre>{html.escape(text[:MAX_REPLY_CHARS])}</pre>"


def _short_time(iso: str | None) -> str:
    """An ISO time as "MM-DD HH:MM" (UTC); "open" for None."""
    return f"{iso[5:10]} {iso[11:16]}" if iso else "open"


def status_text(s: m.Status) -> str:
    """The /status reply: the deployment, its state and its numbers, one per line."""
    pairs = [
        ("state", f"{s.state} ({s.mode}, {s.exchange})"),
        ("version", s.version),
        ("equity", money(s.equity)),
        ("cash", money(s.cash)),
        ("sleeves", f"{s.sleeves}, {s.positions} holding"),
        ("paused", ", ".join(s.paused) or "none"),
        ("halted", "yes" if s.halted else "no"),
        ("updated", _short_time(s.last_update) if s.last_update else "never"),
    ]
    if s.last_reload is not None:
        ok = "ok" if s.last_reload.ok else "failed"
        pairs.append(("reload", f"{ok} {_short_time(s.last_reload.time)}"))
    return "\n".join([s.deployment, *(f"{k:<8} {v}" for k, v in pairs)])


def pnl_text(p: m.PnL) -> str:
    """The /pnl reply: day, week, total, realized, unrealized, equity."""
    pairs = [
        ("day", signed(p.day)), ("week", signed(p.week)), ("total", signed(p.total)),
        ("realized", signed(p.realized)), ("open", signed(p.unrealized)),
        ("equity", f"{money(p.equity)} {p.quote}"), ("capital", f"{money(p.capital)} {p.quote}"),
    ]  # fmt: skip
    return "\n".join(f"{k:<8} {v}" for k, v in pairs)


def position_rows(items: Sequence[m.Position]) -> tuple[list[str], list[list[str]]]:
    """/positions as a table: sleeve, side, quantity, entry price, open profit."""
    rows = [[p.sleeve, p.side, qty(p.qty), money(p.avg_entry), signed(p.unrealized_pnl)] for p in items]
    return ["sleeve", "side", "qty", "entry", "open"], rows


def order_rows(items: Sequence[m.Order]) -> tuple[list[str], list[list[str]]]:
    """/orders as a table: sleeve, side, intent, status, quantity."""
    rows = [[o.sleeve, o.side, o.intent, o.status, qty(o.qty)] for o in items]
    return ["sleeve", "side", "intent", "status", "qty"], rows


def trade_rows(items: Sequence[m.Trade]) -> tuple[list[str], list[list[str]]]:
    """/trades as a table: sleeve, side, exit time (or "open"), profit."""
    rows = [[t.sleeve, t.side, _short_time(t.exit_time), signed(t.pnl)] for t in items]
    return ["sleeve", "side", "exit", "pnl"], rows


def balance_rows(items: Sequence[m.Balance]) -> tuple[list[str], list[list[str]]]:
    """/balance as a table: asset, free, locked."""
    rows = [[b.asset, qty(b.free), qty(b.locked)] for b in items]
    return ["asset", "free", "locked"], rows


def page(
    title: str, head: Sequence[str], rows: Sequence[Sequence[str]], number: int, command: str, size: int
) -> Reply:
    """Page `number` (from 1, `size` rows) of a list as a table, with prev/next buttons for the others."""
    if not rows:
        return pre(f"{title}: none"), None
    pages = (len(rows) + size - 1) // size
    number = min(max(number, 1), pages)
    shown = rows[(number - 1) * size : number * size]
    where = f" {number}/{pages}" if pages > 1 else ""
    text = pre(f"{title}{where}\n{table(head, shown)}")
    buttons = [
        InlineKeyboardButton(label, callback_data=f"pg:{command}:{to}")
        for label, to in (("‹ prev", number - 1), ("next ›", number + 1))
        if 1 <= to <= pages
    ]
    return text, InlineKeyboardMarkup([buttons]) if buttons else None


# ---------------------------------------------------------------------------------------------- the bot


@dataclass(frozen=True)
class Pending:
    """A destructive command waiting for its confirmation button."""

    action: str  # "flatten", "halt" or "reset_halt"
    sleeve: str | None  # the sleeve concerned (None: all)
    chat: int  # the chat that asked (only its Confirm counts)
    expires: float  # when the buttons stop working, time.monotonic() seconds


def who(update: Update) -> str:
    """Who sent an update, as the event log names them: "telegram:@user" or "telegram:<user id>"."""
    user = update.effective_user
    if user is None:
        return "telegram:?"
    return f"telegram:@{user.username}" if user.username else f"telegram:{user.id}"


def chat_ids(text: str) -> list[int]:
    """The chat ids of STRAT_TELEGRAM_CHATS: integers separated by commas (a group's is negative).

    ValueError names the first part that is not one: a mistyped id would leave its chat out in silence.
    """
    ids = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            ids.append(int(part))
        except ValueError:
            raise ValueError(
                f"STRAT_TELEGRAM_CHATS: {part!r} is not a chat id (an integer; a group's is negative)"
            ) from None
    return ids


class TelegramBot:
    """The bot of one session: commands over the control service, a notification channel to every chat."""

    def __init__(
        self,
        service: ControlService,
        token: str,
        chats: Sequence[int],
        api_url: str | None = None,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        """A bot answering in `chats` only, with `token`, at the official Bot API or at `api_url`."""
        self.service = service  # what every command calls
        self.chats = frozenset(chats)  # the chat ids allowed to command and notified
        self.page_rows = page_rows  # rows of a list per message
        builder = Application.builder().token(token).concurrent_updates(False)
        if api_url:
            builder = builder.base_url(api_url)
            if api_url.endswith("/bot"):
                builder = builder.base_file_url(api_url[: -len("bot")] + "file/bot")
        self.app = builder.build()  # python-telegram-bot's application (polling, handlers, the Bot)
        self.pending: dict[str, Pending] = {}  # confirmation key -> the command it confirms
        self.ready = asyncio.Event()  # set once connected (getMe answered), cleared when stopped
        self.stopped = False  # whether `run` has ended (notifications then fail at once)
        self._register()

    @classmethod
    def from_env(cls, service: ControlService) -> TelegramBot:
        """The bot of STRAT_TELEGRAM_TOKEN, STRAT_TELEGRAM_CHATS and STRAT_TELEGRAM_API_URL.

        ValueError when a chat id is not an integer (`strat run` checks this before it starts).
        """
        chats = chat_ids(os.environ.get("STRAT_TELEGRAM_CHATS", ""))
        # httpx logs every request's URL, which holds the token: keep it quiet.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        token = os.environ.get("STRAT_TELEGRAM_TOKEN", "")
        return cls(service, token, chats, os.environ.get("STRAT_TELEGRAM_API_URL") or None)

    def channel(self) -> TelegramChannel:
        """The notification channel of every allowed chat."""
        return TelegramChannel(self)

    # ---------------------------------------------------------------------------------- life cycle

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying while the network is down), register the menu, poll until `stop` is set."""
        app = self.app
        try:
            if not await self._connect(stop):
                return
            await app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
            await app.start()
            assert app.updater is not None  # built with an updater (polling)
            await app.updater.start_polling(
                poll_interval=0.0,
                timeout=POLL_TIMEOUT_S,
                allowed_updates=["message", "callback_query"],
                error_callback=lambda error: log.warning("telegram: polling failed (%s); retrying", error),
            )
            self.ready.set()
            log.info("telegram bot @%s answers %d chat(s)", app.bot.username, len(self.chats))
            await stop.wait()
        except TelegramError as error:
            log.error("telegram: the bot stopped: %s", error)
        finally:
            # Stop in order: polling, the application, then the connection (RECIPES §3).
            self.ready.clear()
            self.stopped = True
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()

    async def _connect(self, stop: asyncio.Event) -> bool:
        """Initialize the application (getMe), retrying with backoff; False when stopped or refused."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.app.initialize()
                return True
            except InvalidToken:
                log.error("telegram: the bot token was refused; the bot is off")
                return False
            except TelegramError as error:  # no network yet: try again, less and less often
                log.warning("telegram: cannot connect (%s); retrying in %.0f s", error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 60.0)
        return False

    def _register(self) -> None:
        """The handlers: the chat gate first, then the commands, the buttons, unknown commands."""
        app = self.app
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        reads: dict[str, Callable[[list[str]], Awaitable[Reply]]] = {
            "status": self._status, "pnl": self._pnl, "help": self._help,
        }  # fmt: skip
        reads.update({name: functools.partial(self._list, name) for name in LISTS})
        for name, read in reads.items():
            app.add_handler(CommandHandler(name, self._answer(read)))
        for name in ("pause", "resume", "reload"):
            app.add_handler(CommandHandler(name, self._act(name)))
        for name in ("flatten", "halt", "reset_halt"):
            app.add_handler(CommandHandler(name, self._ask(name)))
        app.add_handler(CallbackQueryHandler(self._button))
        app.add_handler(MessageHandler(filters.COMMAND, self._unknown))
        app.add_error_handler(self._error)

    # ------------------------------------------------------------------------------------ handlers

    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Let through the updates of the allowed chats; log the others (without content) and drop them."""
        chat = update.effective_chat
        if chat is None or chat.id not in self.chats:
            user = update.effective_user
            log.warning(
                "telegram: ignored an update from chat %s (user %s): not an allowed chat",
                chat.id if chat else "?", user.id if user else "?",
            )  # fmt: skip
            raise ApplicationHandlerStop

    def _answer(self, read: Callable[[list[str]], Awaitable[Reply]]) -> Handler:
        """A command handler replying what `read(args)` makes (a failure: one plain sentence)."""

        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            """Reply to one command."""
            await self._reply(update, lambda: read(list(context.args or [])))

        return handle

    async def _reply(self, update: Update, make: Callable[[], Awaitable[Reply]]) -> None:
        """Send what `make()` returns, or the plain sentence of its failure."""
        message = update.effective_message
        if message is None:
            return
        try:
            text, buttons = await make()
        except Exception as error:  # every failure answers a sentence; the traceback goes to the log
            await message.reply_text(failure(error, message.text or ""))
            return
        await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=buttons)

    def _act(self, name: str) -> Handler:
        """A handler of /pause, /resume or /reload: the service's action, its sentence as the reply."""

        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            """Do one action."""

            async def make() -> Reply:
                """The action's outcome."""
                sleeve = one_sleeve(context.args)
                done = await self._do(name, sleeve, who(update))
                return html.escape(done.message), None

            await self._reply(update, make)

        return handle

    async def _do(self, name: str, sleeve: str | None, by: str) -> m.Done:
        """Call the service's action `name` for `sleeve` on behalf of `by`."""
        s = self.service
        actions: dict[str, Callable[[], Awaitable[m.Done]]] = {
            "pause": lambda: s.pause(sleeve, by), "resume": lambda: s.resume(sleeve, by),
            "flatten": lambda: s.flatten(sleeve, by), "reload": lambda: s.reload(by),
            "halt": lambda: s.halt(by), "reset_halt": lambda: s.reset_halt(by),
        }  # fmt: skip
        return await actions[name]()

    def _ask(self, name: str) -> Handler:
        """A handler of a destructive command: a question with Confirm / Cancel buttons, nothing done yet."""

        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            """Ask to confirm one destructive command."""

            async def make() -> Reply:
                """The question and its buttons (an unknown sleeve is refused now, not after Confirm)."""
                sleeve = one_sleeve(context.args) if name == "flatten" else None
                if sleeve is not None:
                    names = [s.name for s in await self.service.sleeves()]
                    if sleeve not in names:
                        raise ControlError(f"no sleeve {sleeve!r}; the sleeves are {', '.join(names)}")
                chat = update.effective_chat
                assert chat is not None  # the gate let it through
                now = time.monotonic()
                # Forget the expired questions, then remember this one under a fresh key.
                self.pending = {k: p for k, p in self.pending.items() if p.expires > now}
                key = secrets.token_urlsafe(8)
                self.pending[key] = Pending(name, sleeve, chat.id, now + CONFIRM_TTL_S)
                buttons = InlineKeyboardMarkup(
                    [[InlineKeyboardButton("Confirm", callback_data=f"ok:{key}"),
                      InlineKeyboardButton("Cancel", callback_data=f"no:{key}")]]
                )  # fmt: skip
                return html.escape(question(name, sleeve)), buttons

            await self._reply(update, make)

        return handle

    async def _button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press of an inline button: a page of a list, or the Confirm / Cancel of a pending command."""
        query = update.callback_query
        if query is None or query.data is None:
            return
        kind, _, rest = query.data.partition(":")
        if kind == "pg":
            command, _, number = rest.partition(":")
            await query.answer()
            if command in LISTS:
                try:
                    text, buttons = await self._list(command, [number])
                except Exception as error:  # the page cannot be made: say so in the message
                    text, buttons = html.escape(failure(error, f"/{command}")), None
                await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=buttons)
            return
        pending = self.pending.pop(rest, None)
        chat = update.effective_chat
        if pending is None or pending.expires < time.monotonic() or chat is None or chat.id != pending.chat:
            await query.answer("expired")
            await query.edit_message_text("This confirmation expired or was used; send the command again.")
            return
        if kind != "ok":
            await query.answer("cancelled")
            await query.edit_message_text(f"Cancelled: {command_line(pending)} was not done.")
            return
        await query.answer()
        try:
            done = await self._do(pending.action, pending.sleeve, who(update))
            text = done.message
        except Exception as error:  # the action failed: one sentence in place of the question
            text = failure(error, command_line(pending))
        await query.edit_message_text(text)

    async def _unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command the bot does not have."""
        if update.effective_message is not None:
            await update.effective_message.reply_text("Unknown command; /help lists them.")

    async def _error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what a handler raised (a failed reply, say) with its traceback."""
        log.error("telegram: handling an update failed", exc_info=context.error)

    # --------------------------------------------------------------------------------------- reads

    async def _status(self, args: list[str]) -> Reply:
        """/status."""
        return pre(status_text(await self.service.status())), None

    async def _pnl(self, args: list[str]) -> Reply:
        """/pnl."""
        return pre(pnl_text(await self.service.pnl())), None

    async def _list(self, name: str, args: list[str]) -> Reply:
        """/positions, /orders, /trades or /balance [page]: one page of the list."""
        s = self.service
        fetch: dict[str, Callable[[], Awaitable[tuple[list[str], list[list[str]]]]]] = {
            "positions": lambda: _rows(position_rows, s.positions()),
            "orders": lambda: _rows(order_rows, s.orders()),
            "trades": lambda: _rows(trade_rows, s.trades(limit=200)),
            "balance": lambda: _rows(balance_rows, s.balance()),
        }
        head, rows = await fetch[name]()
        return page(name, head, rows, page_number(args), name, self.page_rows)

    async def _help(self, args: list[str]) -> Reply:
        """/help: the commands and what they do."""
        return "\n".join(f"/{c} — {html.escape(d)}" for c, d in COMMANDS), None


async def _rows(
    shape: Callable[[Sequence[T]], tuple[list[str], list[list[str]]]], items: Awaitable[Sequence[T]]
) -> tuple[list[str], list[list[str]]]:
    """The table (head, rows) of a list the service returns."""
    return shape(await items)


def one_sleeve(args: Sequence[str] | None) -> str | None:
    """The optional sleeve argument (None: all); ControlError for more than one."""
    if args and len(args) > 1:
        raise ControlError("one sleeve at most, or none for all of them")
    return args[0] if args else None


def page_number(args: Sequence[str]) -> int:
    """The optional page argument (1 when absent); ControlError when it is not a number."""
    if not args:
        return 1
    if not args[0].isdigit():
        raise ControlError(f"{args[0]!r} is not a page number")
    return int(args[0])


def command_line(p: Pending) -> str:
    """A pending command as typed: "/flatten btc"."""
    return f"/{p.action}" + (f" {p.sleeve}" if p.sleeve else "")


def question(action: str, sleeve: str | None) -> str:
    """The confirmation question of a destructive command."""
    if action == "flatten":
        what = f"sleeve {sleeve}" if sleeve else "every sleeve"
        return f"Flatten {what}? Its positions are closed with market exits and it is paused."
    if action == "halt":
        return "Halt the portfolio? Every position is closed and no entry is made until /reset_halt."
    return "Reset the halt? Entries are allowed again."


def failure(error: Exception, command: str) -> str:
    """The one sentence a failed command answers (a ControlError says why; anything else is logged)."""
    if isinstance(error, ControlError):
        return str(error)
    name = command.split()[0] if command else "the command"
    log.error("telegram: %s failed", name, exc_info=error)
    return f"{name} failed ({type(error).__name__}); the session's log has the details."


class TelegramChannel(Channel):
    """Notifications to every allowed chat: one message per batch, at most one a second per chat."""

    name = "telegram"  # shown in the log
    min_interval_s = 1.0  # Telegram's limit: about one message per second per chat
    max_chars = 4096  # Telegram's longest message

    def __init__(self, bot: TelegramBot) -> None:
        """Send through `bot` (waits for it to connect)."""
        self.bot = bot  # the bot whose connection sends
        self._done: tuple[str, set[int]] = ("", set())  # the message being delivered, chats that got it

    async def deliver(self, text: str) -> None:
        """Send `text` to every allowed chat that has not got it yet; raise when one failed (retried)."""
        # Wait for the bot to connect, but not for a bot that has stopped (the session is ending).
        waited = 0.0
        while not self.bot.ready.is_set():
            if self.bot.stopped or waited >= READY_WAIT_S:
                raise ConnectionError("the Telegram bot is not connected")
            await asyncio.sleep(0.1)
            waited += 0.1
        if self._done[0] != text:
            self._done = (text, set())
        got = self._done[1]
        failed: list[str] = []
        for chat in sorted(self.bot.chats - got):
            try:
                await self.bot.app.bot.send_message(chat, text)
                got.add(chat)
            except TelegramError as error:  # this chat is retried with the next attempt
                failed.append(f"chat {chat}: {error}")
        if failed:
            raise ConnectionError("; ".join(failed))
