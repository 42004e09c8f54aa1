"""`strat serve [--api HOST:PORT]`, and the control front-ends every paper or live session hosts.

A session (`strat run SPEC --paper|--live`) runs, in its own event loop beside the engine: the event bus,
the REST API with the dashboard (`--api`, default 127.0.0.1:8700; `--no-api` turns it off), the Telegram
bot (when STRAT_TELEGRAM_TOKEN and STRAT_TELEGRAM_CHATS are set) and the notifications (the log, the
Telegram chats, a Lark webhook when STRAT_LARK_WEBHOOK is set) with the daily summary. `strat serve`
runs the API and dashboard over the store alone: saved backtest runs and the deployments' persisted
state, read-only. Everything that could stop a start (a bad --api, a public address without a token) or
silently lose messages (half the bot's settings, a chat id or webhook that is not one) is refused before
anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.control.bus import EventBus
    from runtime.control.service import ControlService

DEFAULT_API = "127.0.0.1:8700"  # where the API listens unless told otherwise
log = logging.getLogger("strat.control")  # what the front-ends report (binds, refusals)


@dataclass(frozen=True)
class ApiBind:
    """Where the API listens and who may call it (decoded once from --api and STRAT_API_TOKEN)."""

    host: str  # address bound, "127.0.0.1"
    port: int  # TCP port bound (the free one chosen for --api HOST:0)
    tokens: tuple[tuple[str, str], ...]  # (token, name) pairs accepted as bearer tokens; () = none
    sock: socket.socket  # the bound socket the server accepts on

    @property
    def url(self) -> str:
        """The dashboard's address."""
        return f"http://{self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}/"


def register(subparsers: Any) -> None:
    """Add the `serve` sub-command."""
    parser = subparsers.add_parser(
        "serve", help="serve the REST API and dashboard over the store (backtest runs, deployments)"
    )
    parser.add_argument(
        "--api", metavar="HOST:PORT", default=DEFAULT_API, help=f"where to listen (default {DEFAULT_API})"
    )
    parser.add_argument("--db", metavar="URL", help="database URL (default $STRAT_DB_URL or .strat/strat.db)")
    parser.set_defaults(handler=run)


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --api and --no-api to a paper or live session."""
    group = parser.add_argument_group("control (paper and live)")
    group.add_argument(
        "--api",
        metavar="HOST:PORT",
        default=DEFAULT_API,
        help=f"serve the REST API and dashboard here (default {DEFAULT_API}; a non-loopback address needs "
        "STRAT_API_TOKEN)",
    )
    group.add_argument("--no-api", action="store_true", help="serve no REST API nor dashboard")


def api_bind(text: str) -> ApiBind:
    """Decode --api HOST:PORT with the tokens of STRAT_API_TOKEN and bind it; ValueError: why it cannot.

    STRAT_API_TOKEN holds one token (its name in the event log: "api") or `name:token` pairs separated by
    commas. Without a token only a loopback address is accepted. The port is bound now, so a port in use
    stops the command before anything starts.
    """
    from runtime.api import bind_problem, listen, parse_tokens

    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--api {text}: expected HOST:PORT, e.g. {DEFAULT_API}")
    tokens = parse_tokens(os.environ.get("STRAT_API_TOKEN"))
    problem = bind_problem(host, tokens)
    if problem:
        raise ValueError(f"--api {text}: {problem}")
    try:
        sock = listen(host, int(port_text))
    except OSError as error:
        raise ValueError(f"--api {text}: cannot listen there: {error.strerror or error}") from None
    return ApiBind(host, sock.getsockname()[1], tuple(tokens.items()), sock)


def notify_problem() -> str | None:
    """Why the bot and notification settings in the environment cannot work; None when they can.

    Checked before a session starts: a bot with a token but no chats (or chats but no token) would stay
    off, and a mistyped chat id or webhook would drop messages, all in silence.
    """
    token = os.environ.get("STRAT_TELEGRAM_TOKEN", "").strip()
    chats = os.environ.get("STRAT_TELEGRAM_CHATS", "").strip()
    webhook = os.environ.get("STRAT_LARK_WEBHOOK", "")
    if bool(token) != bool(chats):
        return (
            "the Telegram bot needs both STRAT_TELEGRAM_TOKEN and STRAT_TELEGRAM_CHATS (the allowed chat "
            f"ids); {'STRAT_TELEGRAM_CHATS' if token else 'STRAT_TELEGRAM_TOKEN'} is not set"
        )
    try:
        if chats:
            from runtime.telegram import chat_ids

            chat_ids(chats)
        if webhook:
            from runtime.lark import check_webhook

            check_webhook(webhook)
    except ValueError as error:
        return str(error)
    return None


def run(args: argparse.Namespace) -> int:
    """Serve the API and dashboard over the store until Ctrl-C or SIGTERM; the exit code."""
    try:
        bind = api_bind(args.api)
    except ValueError as error:
        print(f"strat serve: {error}", file=sys.stderr)
        return 2
    from runtime.control.service import ControlService
    from runtime.store.live import LiveStore
    from runtime.store.runs import RunStore
    from runtime.store.schema import StoreError, open_store

    try:
        engine = open_store(args.db)
    except StoreError as error:
        print(f"strat serve: {error}", file=sys.stderr)
        return 1
    log_to(None)
    service = ControlService(LiveStore(engine), RunStore(engine))
    return asyncio.run(_serve(service, bind))


async def _serve(service: ControlService, bind: ApiBind) -> int:
    """Run the bus and the API until a signal stops them."""
    from runtime.control.bus import EventBus

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bus = EventBus(service.live, lambda: [d.key for d in service.live.deployments()])
    await asyncio.gather(*host(service, bus, bind, stop, notify=False))
    return 0


def log_to(path: str | None) -> None:
    """Send the "strat" loggers (events, deliveries, front-ends) to a file, or to stderr for None."""
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("strat")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def host(
    service: ControlService, bus: EventBus, bind: ApiBind | None, stop: asyncio.Event, notify: bool
) -> list[asyncio.Task[Any]]:
    """Start the front-ends of a process as tasks of the running loop; each ends when `stop` is set.

    The bus always; the API and dashboard when `bind` is given; with `notify` (a process running an
    engine) the Telegram bot when configured, the notifications and the daily summary.
    """
    from runtime.control.bus import Channel, LogChannel, Notifier, daily_summaries

    tasks = [asyncio.create_task(bus.run(stop))]
    if bind is not None:
        from runtime.api import create_app, serve_api

        app = create_app(service, bus, dict(bind.tokens))
        tasks.append(asyncio.create_task(serve_api(app, bind.sock, stop)))
        log.info("API and dashboard on %s%s", bind.url, "" if bind.tokens else " (no token: loopback only)")
    if not notify:
        return tasks
    channels: list[Channel] = [LogChannel()]
    if os.environ.get("STRAT_TELEGRAM_TOKEN", "").strip():
        from runtime.telegram import TelegramBot

        bot = TelegramBot.from_env(service)
        tasks.append(asyncio.create_task(bot.run(stop)))
        channels.append(bot.channel())
    if os.environ.get("STRAT_LARK_WEBHOOK", "").strip():
        from runtime.lark import LarkChannel

        channels.append(LarkChannel.from_env())
    # A deployment's key begins with its name (`name:mode:exchange:account`): the label of its lines.
    notifier = Notifier(bus, channels, lambda key: key.split(":")[0])
    tasks.append(asyncio.create_task(notifier.run(stop)))
    tasks.append(asyncio.create_task(daily_summaries(service, stop)))
    return tasks
