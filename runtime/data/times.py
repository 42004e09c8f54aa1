"""UTC times in ms: the local clock every source reads "now" from, and rendering for people.

Standard library only, so that any command may import it early.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def wall_clock_ms() -> int:
    """The current UTC time in ms."""
    return time.time_ns() // 1_000_000


def format_time(ms: int | None) -> str:
    """Render UTC ms as `2024-01-01 00:00`, with seconds when not on a minute (`00:00:05`); '-' for None."""
    if ms is None:
        return "-"
    seconds = ":%S" if ms % 60_000 else ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M" + seconds)
