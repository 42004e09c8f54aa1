"""Durations, timeframes and symbols: the unit-bearing literals shared by the language and the runtime."""

from __future__ import annotations

import re

# Milliseconds per duration suffix; `ms` is accepted for latency settings.
DURATION_MS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}

# Timeframes a strategy may run on or read with bars(): Binance's fixed-length kline intervals, in ms
# (`1s`: Binance spot serves second bars).
TIMEFRAMES: dict[str, int] = {
    tf: int(tf[:-1]) * DURATION_MS[tf[-1]]
    for tf in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
}

_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_SYMBOL_RE = re.compile(r"^([A-Z][A-Z0-9_]*):([A-Z0-9]+)/([A-Z0-9]+)$")


def parse_duration(text: str) -> int | None:
    """Return the length of a duration literal such as `45m` or `7d` in milliseconds, or None if malformed."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        return None
    return int(match.group(1)) * DURATION_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """Render a millisecond duration with the largest suffix that divides it exactly (`3600000` → `1h`)."""
    for suffix in ("w", "d", "h", "m", "s"):
        size = DURATION_MS[suffix]
        if ms and ms % size == 0:
            return f"{ms // size}{suffix}"
    return f"{ms}ms"


def timeframe_ms(text: str) -> int:
    """Return the length of a supported timeframe in ms; raise ValueError naming the supported ones."""
    if text not in TIMEFRAMES:
        raise ValueError(f"timeframe {text} is not available; supported: {', '.join(TIMEFRAMES)}")
    return TIMEFRAMES[text]


def parse_symbol(text: str) -> tuple[str, str, str] | None:
    """Split `EXCHANGE:BASE/QUOTE` into its three upper-case parts, or None when malformed."""
    match = _SYMBOL_RE.match(text.strip())
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3)


def is_spot(symbol: str) -> bool:
    """Whether a symbol names a spot market: one without a settlement currency (ccxt's `BASE/QUOTE:SETTLE`).

    The language writes symbols as `EXCHANGE:BASE/QUOTE` only, so today every valid symbol is spot.
    """
    return ":" not in symbol.partition(":")[2]
