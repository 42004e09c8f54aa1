"""The FastAPI app: JSON under /api/ for every control command, bearer-token auth, errors as JSON."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations, some of which
# name dependencies local to `create_app`.
import asyncio
import hmac
import socket
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from runtime.control import models as m
from runtime.control.bus import EventBus
from runtime.control.service import ControlError, ControlService


def create_app(service: ControlService, bus: EventBus, tokens: dict[str, str]) -> FastAPI:
    """The app over `service`; `tokens` ({token: name}) are the accepted bearer tokens (none: open)."""
    app = FastAPI(title="strat", description="Control a strat deployment: status, sleeves, commands.")
    bearer = HTTPBearer(auto_error=False)

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        """The caller's name ("api:<token name>"); 401 without a valid token when tokens are set."""
        if not tokens:
            return "api"
        given = credentials.credentials.encode() if credentials is not None else b""
        # Every token is compared, in constant time, so the answer's timing tells nothing.
        found = [name for token, name in tokens.items() if hmac.compare_digest(given, token.encode())]
        if not found:
            raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer <token>)")
        return f"api:{found[0]}"

    Caller = Annotated[str, Depends(caller)]

    @app.exception_handler(ControlError)
    async def control_error(request: Request, error: ControlError) -> JSONResponse:
        """A command that cannot be done: 409 with the plain sentence."""
        return JSONResponse({"error": str(error)}, status_code=409)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        """Any HTTP error as {"error": ...}."""
        return JSONResponse(
            {"error": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """A malformed request: 422 with what was wrong."""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": problems}, status_code=422)

    @app.get("/api/status", response_model=m.Status)
    async def status(who: Caller, deployment: str | None = None) -> Any:
        """The deployment at a glance."""
        return await service.status(deployment)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free one), made before anything starts; OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_api(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve `app` with uvicorn on the bound `sock` in the running loop until `stop` is set."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await stop.wait()
    server.should_exit = True
    await task
