"""Notifications to a Lark (Feishu) group through a custom bot's webhook.

Enabled by STRAT_LARK_WEBHOOK (the bot's webhook address, a secret: whoever has it can post to the
group); with STRAT_LARK_SECRET (the bot's "signature verification" key) every message is signed: it
carries `timestamp` (Unix seconds, a string) and `sign`, the base64 of an HMAC-SHA256 keyed with the
timestamp, a line break and the secret, over an empty message (Lark's custom bot guide). A message is
plain text; an answer other than HTTP 2xx with `code` 0 is a failure, which the outbox retries. The
address never appears in a log line or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from runtime.control.bus import Channel, DeliveryError

# Where the address would otherwise show: httpx logs every request's URL at INFO.
HIDDEN = "<STRAT_LARK_WEBHOOK>"


def lark_sign(timestamp: int, secret: str) -> str:
    """The signature of a message sent at `timestamp` (Unix seconds) with the bot's `secret`."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def check_webhook(text: str) -> str:
    """STRAT_LARK_WEBHOOK stripped; ValueError when it is unset or not an http(s) address with a host.

    The error never repeats the address (it is a secret).
    """
    webhook = text.strip()
    if not webhook:
        raise ValueError("STRAT_LARK_WEBHOOK is not set")
    parts = urlsplit(webhook)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "STRAT_LARK_WEBHOOK is not an http(s) address (the custom bot's webhook address, "
            "https://.../open-apis/bot/v2/hook/...)"
        )
    return webhook


class _Hide(logging.Filter):
    """Replaces the webhook address in the log records of a logger (httpx's request lines)."""

    def __init__(self, secret: str) -> None:
        """Hide `secret` wherever it appears."""
        super().__init__()
        self.secret = secret  # the text never logged

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, its message without the secret."""
        text = record.getMessage()
        if self.secret in text:
            record.msg, record.args = text.replace(self.secret, HIDDEN), ()
        return True


class LarkChannel(Channel):
    """A Lark/Feishu custom bot: each message one POST of a text message to its webhook."""

    name = "lark"
    # Lark allows a custom bot 5 messages a second and 100 a minute; one a second keeps bursts batched.
    min_interval_s = 1.0
    max_chars = 4000

    def __init__(
        self,
        webhook: str,
        secret: str | None = None,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Post to `webhook`, signing with `secret` when given; one request waits at most `timeout_s` s."""
        self.webhook = webhook  # the bot's webhook address (a secret)
        self.secret = secret or None  # the signing key (a secret), None: unsigned
        self.timeout_s = timeout_s  # HTTP timeout of one request, seconds
        self.clock = clock  # Unix time, seconds (the signature's timestamp)
        hide = _Hide(webhook)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(hide)

    @classmethod
    def from_env(cls) -> LarkChannel:
        """The channel of STRAT_LARK_WEBHOOK, signed with STRAT_LARK_SECRET when set (see `check_webhook`)."""
        webhook = check_webhook(os.environ.get("STRAT_LARK_WEBHOOK", ""))
        return cls(webhook, os.environ.get("STRAT_LARK_SECRET", "").strip() or None)

    def payload(self, text: str) -> dict[str, Any]:
        """The JSON body of one text message (signed when the bot has a secret)."""
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if self.secret is not None:
            stamp = int(self.clock())
            body |= {"timestamp": str(stamp), "sign": lark_sign(stamp, self.secret)}
        return body

    async def deliver(self, text: str) -> None:
        """Post one message; DeliveryError when Lark does not take it (the outbox retries)."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                answer = await client.post(self.webhook, json=self.payload(text))
        except httpx.HTTPError as error:
            # httpx's messages may quote the address: hidden.
            why = str(error).replace(self.webhook, HIDDEN) or "no answer"
            raise DeliveryError(f"{type(error).__name__}: {why}") from None
        try:
            reply = answer.json()
        except ValueError:
            reply = {}
        reply = reply if isinstance(reply, dict) else {}
        # Lark answers {"code": 0, "msg": "success"} (older bots: {"StatusCode": 0, ...}).
        code = reply.get("code", reply.get("StatusCode", 0))
        said = reply.get("msg", reply.get("StatusMessage", ""))
        if not answer.is_success:
            raise DeliveryError(f"HTTP {answer.status_code}" + (f": {said}" if said else ""))
        if code:
            raise DeliveryError(f"Lark refused the message (code {code}: {said})")
