"""A fake Lark (Feishu) custom-bot webhook on 127.0.0.1: records what is posted, answers like Lark.

`POST /open-apis/bot/v2/hook/<token>` takes a JSON body; a good request is answered 200
`{"code": 0, "msg": "success"}`. With `secret` set, a body whose `sign` is not the base64 of an
HMAC-SHA256 keyed with the timestamp, a line break and the secret over nothing (or whose timestamp is more
than an hour off) is answered `{"code": 19021, "msg": "sign match fail ..."}` with HTTP 200, as Lark does.
Faults: `fail(n, "500")` answers the next n requests with HTTP 500, `fail(n, "sign")` with code 19021;
`hang = True` leaves every request unanswered until the server stops.

Everything is inspectable from the test thread: `requests` (every body received), `texts()` (the texts
Lark would have shown: the accepted messages').
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from local_server import LocalServer

TOKEN = "c0ffee00-0000-4000-8000-5ecre7t0ken0"  # the hook's token (the secret part of the address)
SIGN_FAIL = {"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour"}


@dataclass(frozen=True)
class Posted:
    """One request the webhook received."""

    path: str  # the request path
    body: dict[str, Any]  # its JSON body ({} when it was not JSON)
    accepted: bool  # whether it was answered with code 0


@dataclass
class FakeLark(LocalServer):
    """The fake webhook; `start()` runs it in a daemon thread, `stop()` ends it."""

    secret: str | None = None  # the bot's signing secret (None: signatures are not checked)
    hang: bool = False  # True: requests are never answered (until the server stops)
    requests: list[Posted] = field(default_factory=list)  # every request received, in order
    port: int = 0  # TCP port once started

    def __post_init__(self) -> None:
        """The fault queue and the lock shared with the test thread."""
        self._lock = threading.Lock()  # guards `requests` and the faults
        self._faults: list[str] = []  # answers owed to the next requests: "500" or "sign"

    @property
    def url(self) -> str:
        """The webhook address a bot is configured with."""
        return f"http://127.0.0.1:{self.port}/open-apis/bot/v2/hook/{TOKEN}"

    def fail(self, n: int, kind: str = "500") -> None:
        """Answer the next `n` requests with a failure: "500" (HTTP 500) or "sign" (code 19021)."""
        with self._lock:
            self._faults += [kind] * n

    def texts(self) -> list[str]:
        """The texts of the accepted messages, in order."""
        with self._lock:
            return [p.body["content"]["text"] for p in self.requests if p.accepted]

    def wait(self, done: Callable[[FakeLark], object], what: str, seconds: float = 30) -> None:
        """Wait until `done(self)` holds (AssertionError after `seconds`)."""
        deadline = time.monotonic() + seconds
        while not done(self):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    # ----- life cycle -------------------------------------------------------------------------------

    name = "fake Lark"  # shown when it cannot start

    def _routes(self, app: web.Application) -> None:
        """The webhook."""
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self._hook)

    def _on_start(self) -> None:
        """The event hanging requests wait on."""
        self._stopping = asyncio.Event()  # set at stop: hanging requests end

    def _on_stop(self) -> None:
        """End the hanging requests."""
        self._stopping.set()

    # ----- the webhook ------------------------------------------------------------------------------

    async def _hook(self, request: web.Request) -> web.Response:
        """Record one post and answer it as Lark would (or as the queued fault says)."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if self.hang:
            with self._lock:
                self.requests.append(Posted(request.path, body, False))
            await self._stopping.wait()
            return web.json_response({"code": 0, "msg": "success"})
        answer: dict[str, Any] = {"code": 0, "data": {}, "msg": "success"}
        status = 200
        if fault == "500":
            answer, status = {"code": 500, "msg": "internal error"}, 500
        elif fault == "sign" or not self._signed(body):
            answer = SIGN_FAIL
        elif body.get("msg_type") != "text" or not isinstance(body.get("content", {}).get("text"), str):
            answer = {"code": 9499, "data": {}, "msg": "Bad Request"}
        with self._lock:
            self.requests.append(Posted(request.path, body, answer["code"] == 0))
        return web.json_response(answer, status=status)

    def _signed(self, body: dict[str, Any]) -> bool:
        """Whether a body carries the right signature (always true without a secret)."""
        if self.secret is None:
            return True
        stamp = str(body.get("timestamp", ""))
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > 3600:
            return False
        key = f"{stamp}\n{self.secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, str(body.get("sign", "")))
