"""Builders of simulator inputs shared by the simulator tests and the benchmark."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from runtime.plan.model import Execution, PortfolioInput, SleeveInput

HOUR = 3_600_000  # one hour, ms
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, ms

# Execution without fees or slippage, for hand-computed cases.
FREE = Execution(fee_maker=0.0, fee_taker=0.0)


def flags(n: int, *at: int) -> np.ndarray:
    """A bool array of length n, True at the given indices."""
    out = np.zeros(n, dtype=bool)
    out[list(at)] = True
    return out


def sleeve(
    o: list[float] | np.ndarray,
    h: list[float] | np.ndarray | None = None,
    lo: list[float] | np.ndarray | None = None,
    c: list[float] | np.ndarray | None = None,
    *,
    el: tuple[int, ...] = (),
    xl: tuple[int, ...] = (),
    es: tuple[int, ...] = (),
    xs: tuple[int, ...] = (),
    volume: list[float] | np.ndarray | None = None,
    name: str = "main",
    timeframe: str = "1h",
    t0: int = T0,
    **settings: Any,
) -> SleeveInput:
    """A sleeve on hourly bars from lists (high/low/close default to the open), decisions by index."""
    op = np.asarray(o, dtype=np.float64)
    n = len(op)
    step = {"1h": HOUR, "4h": 4 * HOUR, "1m": 60_000}[timeframe]
    base = SleeveInput(
        name=name,
        strategy="test",
        symbol=settings.pop("symbol", "BTC/USDT"),
        timeframe=timeframe,
        weight=settings.pop("weight", 1.0),
        time=t0 + step * np.arange(n, dtype=np.int64),
        open=op,
        high=op.copy() if h is None else np.asarray(h, dtype=np.float64),
        low=op.copy() if lo is None else np.asarray(lo, dtype=np.float64),
        close=op.copy() if c is None else np.asarray(c, dtype=np.float64),
        volume=np.full(n, 1e9) if volume is None else np.asarray(volume, dtype=np.float64),
        entry_long=flags(n, *el),
        exit_long=flags(n, *xl),
        entry_short=flags(n, *es),
        exit_short=flags(n, *xs),
        execution=settings.pop("execution", FREE),
    )
    return replace(base, **settings)


def solo(s: SleeveInput, capital: float = 1000.0, **kw: Any) -> PortfolioInput:
    """A portfolio of one sleeve."""
    return PortfolioInput(capital=capital, quote="USDT", sleeves=(s,), **kw)
