"""The scaffold of the fake servers: an aiohttp app on 127.0.0.1, served by its own thread and event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class LocalServer:
    """Serves `_routes` on an ephemeral port of 127.0.0.1 from a daemon thread; `stop()` ends it.

    Subclasses (dataclasses with a `port: int = 0` field) add their routes in `_routes`, make their
    loop-bound objects in `_on_start` and release what waits in `_on_stop` (run in the server's loop).
    """

    name = "server"  # shown when it cannot start
    shutdown_timeout_s = 1.0  # how long open requests may finish at stop, seconds
    port: int  # TCP port once started

    def _routes(self, app: web.Application) -> None:
        """Add the server's routes to `app`."""
        raise NotImplementedError

    def _on_start(self) -> None:
        """Make what lives in the server's loop (called in `start`, once the loop exists)."""

    def _on_stop(self) -> None:
        """Release what waits in the server's loop (called in that loop, before it stops)."""

    def start(self) -> Self:
        """Start serving in a background thread; returns self once the port is bound."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()  # the server's event loop, in its own thread
        self._on_start()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)  # server thread
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        """Thread body: bind an ephemeral port, signal readiness, run until stopped."""
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self._routes(app)
        # the aiohttp runner, cleaned up on stop
        self._runner = web.AppRunner(app, shutdown_timeout=self.shutdown_timeout_s)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        """Stop the server (what waits released first) and join its thread."""
        self._loop.call_soon_threadsafe(self._on_stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
