"""The REST API and the dashboard: a FastAPI app over the control service (the only module importing it)."""

from __future__ import annotations

import ipaddress

from .app import create_app, listen, serve_api

__all__ = ["bind_problem", "create_app", "listen", "parse_tokens", "serve_api"]


def parse_tokens(value: str | None) -> dict[str, str]:
    """The bearer tokens of STRAT_API_TOKEN as {token: name}; unset or empty: none.

    One bare token is named "api"; several are `name:token` pairs separated by commas.
    """
    tokens: dict[str, str] = {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, token = item.partition(":")
        if not sep:
            name, token = "api", item
        if not token:
            raise ValueError(f"STRAT_API_TOKEN: {name}: an empty token")
        tokens[token] = name
    return tokens


def is_loopback(host: str) -> bool:
    """Whether `host` names the loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, tokens: dict[str, str]) -> str | None:
    """Why the API must not listen on `host` (a non-loopback address without a token), or None."""
    if tokens or is_loopback(host):
        return None
    return (
        f"{host} is reachable from other machines and STRAT_API_TOKEN is not set: set a token, or listen "
        "on 127.0.0.1"
    )
