"""The FastAPI app: JSON under /api/ for every control command, a live event stream, the dashboard, the docs.

Every /api/ route needs a bearer token when STRAT_API_TOKEN sets one (compared in constant time); the
dashboard page, its static files and the OpenAPI docs load without one (they hold no data). The event
stream also takes the token as `?token=` for an EventSource, which cannot set a header (the dashboard
itself reads the stream with a header). Every error is JSON `{"error": "..."}` with a 4xx status: inputs are
bounded and typed so that a bad request never reaches the service as a 5xx. There is no CORS middleware:
other origins cannot call the API from a browser.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations, some of which
# name dependencies local to `create_app`.
import asyncio
import contextlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.control import models as m
from runtime.control.bus import EventBus, Subscription
from runtime.control.service import ControlError, ControlService, NotFound

STATIC = FilePath(__file__).parent / "static"  # the dashboard: index.html, app.js, app.css
MAX_BODY = 64 * 1024  # largest request body accepted, bytes (a command's body is a few bytes)
DRAIN = 16 * 1024 * 1024  # most of a refused body read (and discarded) before answering 413, bytes
KEEPALIVE_S = 15.0  # longest silence on the event stream before a keep-alive comment, seconds
DOCS = "/docs/assets"  # where Swagger UI's and ReDoc's files are served
BIG_ID = 2**63 - 1  # largest id a store holds (SQL BIGINT)
# The dashboard page's policy: everything from this server, nothing inline, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _docs_assets() -> FilePath | None:
    """The folder of Swagger UI's and ReDoc's files shipped by the fastapi-offline package, if installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = FilePath(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


class Target(BaseModel):
    """The body of pause and resume: one sleeve, or every sleeve when absent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sleeve: StrictStr | None = Field(None, min_length=1, max_length=100)  # sleeve name; None: all


class Confirmed(BaseModel):
    """The body of flatten and halt: what they close must be confirmed with `"confirm": true`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sleeve: StrictStr | None = Field(None, min_length=1, max_length=100)  # sleeve name; None: all
    confirm: StrictBool = False  # the caller's explicit yes: positions are closed at market


class Empty(BaseModel):
    """The body of reset-halt and reload: nothing (an empty object, or no body)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Guard:
    """ASGI middleware: bodies over `limit` bytes get 413 before the app sees them; API answers not cached.

    The body is read here and handed to the app as one message; one over the limit is read to its end (up
    to DRAIN bytes, kept nowhere) and refused.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        """Guard `app`, accepting bodies of at most `limit` bytes."""
        self.app = app  # the guarded app
        self.limit = limit  # largest body accepted, bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body's size, then run the app with the body replayed and the headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            await _error(send, 400, "a malformed Content-Length")
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size > DRAIN or (not more and (size > self.limit or int(declared) > self.limit)):
                # Too large: refused once read (up to DRAIN, discarded), so the client gets the answer
                # instead of a reset connection.
                await _error(send, 413, f"the request body is larger than {self.limit} bytes")
                return
            if size <= self.limit:
                chunks.append(body)
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            """The whole body once, then whatever the client sends (its disconnect)."""
            return replay.pop() if replay else await receive()

        api = scope["path"].startswith("/api/")

        async def headed(message: Message) -> None:
            """Add nosniff everywhere and no-store to API answers."""
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replayed, headed)


async def _error(send: Send, status: int, text: str) -> None:
    """Answer `status` with a JSON error and close the connection."""
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _next_event(sub: Subscription, closing: asyncio.Event, wait_s: float) -> m.Event | None:
    """The subscription's next event; None after `wait_s` seconds without one, or once `closing` is set."""
    getter = asyncio.ensure_future(sub.get())
    closer = asyncio.ensure_future(closing.wait())
    done, pending = await asyncio.wait({getter, closer}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return getter.result() if getter in done else None


def create_app(service: ControlService, bus: EventBus, tokens: dict[str, str]) -> FastAPI:
    """The app over `service`; `tokens` ({token: name}) are the accepted bearer tokens (none: open)."""
    assets = _docs_assets()
    app = FastAPI(
        title="strat",
        description="Control a strat deployment: status, sleeves, positions, orders, commands, backtest "
        "runs. Every /api/ route needs `Authorization: Bearer <token>` when STRAT_API_TOKEN is set.",
        docs_url=None if assets is not None else "/docs",
        redoc_url=None,
    )
    app.state.closing = asyncio.Event()  # set when the server stops: open event streams end
    bearer = HTTPBearer(auto_error=False)

    def check(given: str | None) -> str:
        """The caller's name ("api:<token name>") for the token `given`; 401 when it is not accepted."""
        if not tokens:
            return "api"
        # Every token is compared, in constant time, so the answer's timing tells nothing.
        raw = (given or "").encode()
        found = [name for token, name in tokens.items() if hmac.compare_digest(raw, token.encode())]
        if not found:
            raise HTTPException(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return f"api:{found[0]}"

    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        """The caller of an /api/ route, from the Authorization header."""
        return check(credentials.credentials if credentials is not None else None)

    def stream_caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        token: Annotated[str | None, Query(max_length=1000, description="for EventSource only")] = None,
    ) -> str:
        """The caller of the event stream: the Authorization header, else `?token=` (EventSource)."""
        return check(credentials.credentials if credentials is not None else token)

    Caller = Annotated[str, Depends(caller)]
    # Every route's optional choice of deployment (default: this process's, else the latest).
    Key = Annotated[str | None, Query(min_length=1, max_length=300, description="deployment key")]
    RunId = Annotated[int, Path(ge=1, le=BIG_ID, description="run id (strat runs)")]

    # ------------------------------------------------------------------------------------- errors

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        """What the request names does not exist: 404 with the plain sentence."""
        return JSONResponse({"error": str(error)}, status_code=404)

    @app.exception_handler(ControlError)
    async def control_error(request: Request, error: ControlError) -> JSONResponse:
        """A command that cannot be done: 409 with the plain sentence."""
        return JSONResponse({"error": str(error)}, status_code=409)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        """Any HTTP error as {"error": ...}; unknown paths and wrong methods say which."""
        text = str(error.detail)
        if error.status_code == 404 and text == "Not Found":
            text = f"no such path: {request.url.path[:200]} (the API is under /api/, its docs at /docs)"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            text = f"{request.method[:20]} is not allowed on {request.url.path[:200]} (allowed: {allowed})"
        return JSONResponse({"error": text}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """A malformed request: 422 with what was wrong (never the values sent)."""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": problems or "malformed request"}, status_code=422)

    # -------------------------------------------------------------------------------------- reads

    @app.get("/api/status", response_model=m.Status, tags=["reads"])
    async def status(who: Caller, deployment: Key = None) -> Any:
        """The deployment at a glance: state, version, equity, sleeves, flags, the last reload."""
        return await service.status(deployment)

    @app.get("/api/deployments", response_model=list[m.Deployment], tags=["reads"])
    async def deployments(who: Caller) -> Any:
        """Every deployment the store knows, the most recently alive first."""
        return await service.deployments()

    @app.get("/api/sleeves", response_model=list[m.Sleeve], tags=["reads"])
    async def sleeves(who: Caller, deployment: Key = None) -> Any:
        """Every sleeve: market, position, PnL and flags."""
        return await service.sleeves(deployment)

    @app.get("/api/positions", response_model=list[m.Position], tags=["reads"])
    async def positions(who: Caller, deployment: Key = None) -> Any:
        """The open positions."""
        return await service.positions(deployment)

    @app.get("/api/orders", response_model=list[m.Order], tags=["reads"])
    async def orders(who: Caller, deployment: Key = None, finished: bool = False) -> Any:
        """Orders not finished yet; `finished=true` adds the latest finished ones."""
        return await service.orders(deployment, finished=finished)

    @app.get("/api/trades", response_model=list[m.Trade], tags=["reads"])
    async def trades(
        who: Caller, deployment: Key = None, limit: Annotated[int, Query(ge=0, le=1000)] = 50
    ) -> Any:
        """The latest trades, newest first (the open ones marked at the latest close)."""
        return await service.trades(deployment, limit=limit)

    @app.get("/api/pnl", response_model=m.PnL, tags=["reads"])
    async def pnl(who: Caller, deployment: Key = None) -> Any:
        """Profit today, this week and since the start."""
        return await service.pnl(deployment)

    @app.get("/api/balance", response_model=list[m.Balance], tags=["reads"])
    async def balance(who: Caller, deployment: Key = None) -> Any:
        """The account's assets (the exchange's live, the simulated account on paper)."""
        return await service.balance(deployment)

    @app.get("/api/equity", response_model=list[m.EquityPoint], tags=["reads"])
    async def equity(
        who: Caller, deployment: Key = None, points: Annotated[int, Query(ge=2, le=5000)] = 500
    ) -> Any:
        """The equity curve, thinned to at most `points` points."""
        return await service.equity(deployment, points=points)

    @app.get("/api/events", response_model=list[m.Event], tags=["reads"])
    async def events(
        who: Caller,
        deployment: Key = None,
        since_id: Annotated[int, Query(ge=0, le=BIG_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """The newest `limit` events with an id above `since_id`, oldest first."""
        return await service.events(deployment, since_id=since_id, limit=limit)

    @app.get("/api/runs", response_model=list[m.Run], tags=["runs"])
    async def runs(who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Any:
        """The saved backtest runs, newest first."""
        return await service.runs(limit)

    @app.get("/api/runs/{run_id}", response_model=m.RunDetail, tags=["runs"])
    async def run(who: Caller, run_id: RunId) -> Any:
        """One saved run: spec, parameters and every metric."""
        return await service.run(run_id)

    @app.get("/api/runs/{run_id}/report", response_class=FileResponse, tags=["runs"])
    async def report(who: Caller, run_id: RunId) -> FileResponse:
        """A saved run's report.html."""
        path = await service.report(run_id)
        if not path.is_file():
            raise NotFound(f"the report of run {run_id} is no longer at {path.name}")
        return FileResponse(path, media_type="text/html; charset=utf-8")

    @app.get("/api/stream", tags=["reads"], response_class=StreamingResponse)
    async def stream(
        who: Annotated[str, Depends(stream_caller)], deployment: Key = None
    ) -> StreamingResponse:
        """Server-sent events: each new event as `id: <id>` and `data: <Event JSON>`; keep-alive comments.

        It ends when the client leaves or the server stops. An EventSource, which cannot send a header,
        passes the token as `?token=`.
        """
        sub = bus.subscribe()
        closing: asyncio.Event = app.state.closing

        async def lines() -> AsyncIterator[str]:
            """The stream's text, until the server closes (the client leaving cancels it)."""
            try:
                yield "retry: 2000\n: connected\n\n"
                while not closing.is_set():
                    event = await _next_event(sub, closing, KEEPALIVE_S)
                    if closing.is_set():
                        break
                    if event is None:
                        yield ": keep-alive\n\n"
                    elif deployment is None or event.deployment == deployment:
                        yield f"id: {event.id}\ndata: {event.model_dump_json()}\n\n"
            finally:
                bus.unsubscribe(sub)

        return StreamingResponse(
            lines(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------------------------------ actions

    def confirmed(body: Confirmed, what: str) -> None:
        """400 unless the body confirms a command that closes positions."""
        if not body.confirm:
            raise HTTPException(400, f'{what} closes positions at market: send {{"confirm": true}} to do it')

    @app.post("/api/pause", response_model=m.Done, tags=["commands"])
    async def pause(who: Caller, body: Target, deployment: Key = None) -> Any:
        """Pause a sleeve (`{"sleeve": "btc"}`) or all (`{}`): no new entries, exits still managed."""
        return await service.pause(body.sleeve, who, deployment)

    @app.post("/api/resume", response_model=m.Done, tags=["commands"])
    async def resume(who: Caller, body: Target, deployment: Key = None) -> Any:
        """Resume a sleeve (`{"sleeve": "btc"}`) or all (`{}`): entries allowed again."""
        return await service.resume(body.sleeve, who, deployment)

    @app.post("/api/flatten", response_model=m.Done, tags=["commands"])
    async def flatten(who: Caller, body: Confirmed, deployment: Key = None) -> Any:
        """Close a sleeve's (or every) position at market and pause it; needs `"confirm": true`."""
        confirmed(body, "flatten")
        return await service.flatten(body.sleeve, who, deployment)

    @app.post("/api/halt", response_model=m.Done, tags=["commands"])
    async def halt(who: Caller, body: Confirmed, deployment: Key = None) -> Any:
        """Halt the portfolio: flatten everything, no entries until reset; needs `"confirm": true`."""
        confirmed(body, "halt")
        if body.sleeve is not None:
            raise HTTPException(400, "halt concerns the whole portfolio: send no sleeve (flatten closes one)")
        return await service.halt(who, deployment)

    @app.post("/api/reset_halt", response_model=m.Done, tags=["commands"])
    async def reset_halt(who: Caller, deployment: Key = None, body: Empty | None = None) -> Any:
        """Lift every halt."""
        return await service.reset_halt(who, deployment)

    @app.post("/api/reload", response_model=m.Done, tags=["commands"])
    async def reload(who: Caller, deployment: Key = None, body: Empty | None = None) -> Any:
        """Re-read the spec now: what changed, or the diagnostics that kept the running version."""
        return await service.reload(who, deployment)

    # ------------------------------------------------------------------------- dashboard and docs

    # The page says whether a token is needed, so that it asks for one before calling the API.
    page = (
        (STATIC / "index.html").read_text(encoding="utf-8").replace("{{auth}}", "token" if tokens else "open")
    )

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        """The dashboard page (it asks for the token itself)."""
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if assets is not None:
        # Swagger UI and ReDoc from the fastapi-offline package's files: the docs work offline too.
        app.mount(DOCS, StaticFiles(directory=assets), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            """Swagger UI over /openapi.json, from local files."""
            return get_swagger_ui_html(
                openapi_url="/openapi.json", title="strat API", swagger_js_url=f"{DOCS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS}/swagger-ui.css", swagger_favicon_url=f"{DOCS}/favicon.png",
                swagger_ui_parameters={"validatorUrl": None},  # no badge from the online validator
            )  # fmt: skip

        @app.get("/redoc", include_in_schema=False)
        async def redoc() -> HTMLResponse:
            """ReDoc over /openapi.json, from local files."""
            return get_redoc_html(
                openapi_url="/openapi.json", title="strat API", redoc_js_url=f"{DOCS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS}/favicon.png", with_google_fonts=False,
            )  # fmt: skip

    app.add_middleware(Guard)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free one), made before anything starts; OSError: taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
    # says so (with proto 0 every small response waited ~40 ms for the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening at once: a client connecting before the server runs waits in the backlog.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers: the process's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to the process (uvicorn would take SIGINT and SIGTERM for itself)."""
        yield


async def serve_api(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve `app` with uvicorn on the bound `sock` in the running loop until `stop` is set.

    On stop the open event streams end first, so the server's shutdown never waits on them.
    """
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await stop.wait()
    app.state.closing.set()
    server.should_exit = True
    await task
