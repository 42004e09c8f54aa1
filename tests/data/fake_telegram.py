"""A fake Telegram Bot API server on 127.0.0.1, for the real python-telegram-bot client to talk to.

Served under `/bot<token>/<method>` (point the client's base_url at `url + "/bot"`): `getMe`,
`deleteWebhook`, `setMyCommands` (the commands are recorded), `getUpdates` (a long poll over the queued
updates), `sendMessage`, `editMessageText` and `answerCallbackQuery` (each recorded), anything else
answers `true`. Parameters arrive as form fields, the non-string ones JSON-encoded, as PTB sends them.

The test thread drives it: `push_command(chat, "/pause btc")` queues a message with its `bot_command`
entity, `push_callback(chat, message_id, data)` a press of an inline button; `wait_sent(pred)` waits for
a sent message matching a predicate; `sent`, `edits`, `answers`, `commands`, `calls` hold what the bot
did. Every record carries the time it arrived (`monotonic`), to check the spacing of notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from local_server import LocalServer

BOT = {"id": 4242, "is_bot": True, "first_name": "FakeBot", "username": "fake_bot"}  # the bot's getMe


@dataclass
class FakeTelegram(LocalServer):
    """The fake server; `start()` runs it in a daemon thread, `stop()` ends it."""

    port: int = 0  # TCP port once started
    calls: list[str] = field(default_factory=list)  # every method called, in order
    commands: list[dict[str, str]] = field(default_factory=list)  # the last setMyCommands list
    sent: list[dict[str, Any]] = field(default_factory=list)  # sendMessage params (+ "message_id", "at")
    edits: list[dict[str, Any]] = field(default_factory=list)  # editMessageText params (+ "at")
    answers: list[dict[str, Any]] = field(default_factory=list)  # answerCallbackQuery params

    def __post_init__(self) -> None:
        """The queue of updates and the counters."""
        self._cond = threading.Condition()  # guards the records and wakes `wait_sent`
        self._updates: list[dict[str, Any]] = []  # queued updates not confirmed yet
        self._next_update = 1  # next update_id
        self._next_message = 1  # next message_id (the users' and the bot's)
        self._closing = False  # set by `stop`: a pending long poll answers at once

    # ----- life cycle -------------------------------------------------------------------------------

    name = "fake Telegram"  # shown when it cannot start

    def _routes(self, app: web.Application) -> None:
        """Every Bot API method goes through `_dispatch`."""
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)

    def _on_start(self) -> None:
        """The event a long poll waits on."""
        self._arrived = asyncio.Event()  # set (in the server loop) when an update is queued

    def _on_stop(self) -> None:
        """End a pending long poll at once."""
        self._closing = True
        self._arrived.set()

    @property
    def api_url(self) -> str:
        """The base URL for the client (STRAT_TELEGRAM_API_URL): PTB appends `<token>/<method>`."""
        return f"http://127.0.0.1:{self.port}/bot"

    # ----- controls (test thread) -------------------------------------------------------------------

    def push_command(self, chat: int, text: str, user: int = 1, username: str | None = "alice") -> int:
        """Queue a message `text` ("/cmd args") from `user` in `chat`, with its bot_command entity; its id."""
        command = text.split()[0]
        message = {
            **self._message(chat, text, _user(user, username)),
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
        }
        self._push({"message": message})
        return int(message["message_id"])

    def push_callback(
        self, chat: int, message_id: int, data: str, user: int = 1, username: str | None = "alice"
    ) -> None:
        """Queue a press of an inline button with callback `data` on the bot's message `message_id`."""
        with self._cond:
            query_id = f"cq{self._next_update}"
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat),
            "from": BOT,
            "text": "?",
        }
        self._push(
            {
                "callback_query": {
                    "id": query_id, "from": _user(user, username), "chat_instance": f"ci{chat}",
                    "data": data, "message": message,
                }
            }
        )  # fmt: skip

    def wait_sent(
        self, pred: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 20, after: int = 0
    ) -> dict[str, Any]:
        """The first sent message (from index `after` on) matching `pred`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.sent[after:]:
                    if pred(message):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"no such message sent; sent: {[m['text'] for m in self.sent]}"
                self._cond.wait(left)

    def wait_for(self, done: Callable[[], object], what: str, timeout: float = 20) -> None:
        """Wait until `done()` holds (checked whenever the bot calls the fake)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}"
                self._cond.wait(min(left, 0.1))

    # ----- internals --------------------------------------------------------------------------------

    def _message(self, chat: int, text: str, sender: dict[str, Any]) -> dict[str, Any]:
        """A new Message object (a fresh message_id)."""
        with self._cond:
            message_id = self._next_message
            self._next_message += 1
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat),
            "from": sender,
            "text": text,
        }

    def _push(self, update: dict[str, Any]) -> None:
        """Queue an update and wake a pending long poll."""
        with self._cond:
            self._updates.append({"update_id": self._next_update, **update})
            self._next_update += 1
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def _dispatch(self, request: web.Request) -> web.Response:
        """Serve one Bot API method: `{"ok": true, "result": ...}`."""
        method = request.match_info["method"]
        params = {k: _decode(v) for k, v in (await request.post()).items() if isinstance(v, str)}
        params |= {k: v for k, v in request.query.items()}
        if method == "getUpdates":
            return _ok(await self._get_updates(params))
        with self._cond:
            self.calls.append(method)
            result: Any = True
            if method == "getMe":
                result = BOT
            elif method == "setMyCommands":
                self.commands = list(params.get("commands", []))
            elif method in ("sendMessage", "editMessageText"):
                now = time.monotonic()
                if method == "sendMessage":
                    result = self._message(int(params["chat_id"]), str(params["text"]), BOT)
                    self.sent.append({**params, "message_id": result["message_id"], "at": now})
                else:
                    result = {**self._message(int(params["chat_id"]), str(params["text"]), BOT),
                              "message_id": int(params["message_id"])}  # fmt: skip
                    self.edits.append({**params, "at": now})
            elif method == "answerCallbackQuery":
                self.answers.append(params)
            self._cond.notify_all()
        return _ok(result)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The queued updates from `offset` on (confirming those before it), waiting up to `timeout`."""
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            with self._cond:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates or time.monotonic() >= deadline or self._closing:
                    return list(self._updates)
                self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(deadline - time.monotonic(), 0.0))


def _user(user: int, username: str | None) -> dict[str, Any]:
    """A User object."""
    return {"id": user, "is_bot": False, "first_name": "T"} | ({"username": username} if username else {})


def _chat(chat: int) -> dict[str, Any]:
    """A Chat object (private)."""
    return {"id": chat, "type": "private"}


def _decode(value: str) -> Any:
    """A form value: JSON when it parses, else the string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _ok(result: Any) -> web.Response:
    """The Bot API's success envelope."""
    return web.json_response({"ok": True, "result": result})
