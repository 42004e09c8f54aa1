"""Rendering open times for people (standard library only, so that any command may import it early)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(ms: int | None) -> str:
    """Render UTC ms as `2024-01-01 00:00` ('-' for None)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
