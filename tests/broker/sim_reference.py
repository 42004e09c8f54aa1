"""Independent references for the simulator tests and the benchmark: bare numpy and a plain loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_csv(path: Path) -> dict[str, np.ndarray]:
    """Read a candle CSV (timestamp,open,high,low,close,volume) into float / int arrays."""
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    return {
        "time": raw[:, 0].astype(np.int64),
        "open": raw[:, 1].copy(),
        "high": raw[:, 2].copy(),
        "low": raw[:, 3].copy(),
        "close": raw[:, 4].copy(),
        "volume": raw[:, 5].copy(),
    }


def million_bars(btc: dict[str, np.ndarray], n: int = 1_000_000) -> dict[str, np.ndarray]:
    """The benchmark series of ../shared/data/README.md: BTC 1h detrended, tiled to n one-minute bars."""
    m = len(btc["close"])
    mu = np.log(btc["close"][m - 1] / btc["open"][0]) / (m - 1)
    scale = np.exp(-mu * np.arange(m))
    reps = -(-n // m)
    out = {k: np.tile(btc[k] * scale, reps)[:n] for k in ("open", "high", "low", "close")}
    out["volume"] = np.tile(btc["volume"], reps)[:n]
    out["time"] = 1_577_836_800_000 + 60_000 * np.arange(n, dtype=np.int64)
    return out


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average, NaN for the first n-1 bars."""
    cs = np.cumsum(np.insert(x, 0, 0.0))
    out = np.full(len(x), np.nan)
    out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


def s1_signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S1 decisions: SMA 10 crosses above / below SMA 30 (`a > b and a[1] <= b[1]`)."""
    a, b = sma(close, 10), sma(close, 30)
    pa = np.concatenate(([np.nan], a[:-1]))
    pb = np.concatenate(([np.nan], b[:-1]))
    return (a > b) & (pa <= pb), (a < b) & (pa >= pb)


def bare_s1(
    open_: np.ndarray, close: np.ndarray, entry: np.ndarray, exit_: np.ndarray, fee: float, capital: float
) -> tuple[int, float, float]:
    """Vectorized S1 account: (entries, final equity, max drawdown of the close-marked equity).

    Entries and exits of a crossover alternate, so each entry fills at the next open and is closed at the
    open after the next exit signal; all-in with the fee inside the budget.
    """
    n = len(close)
    ent = np.flatnonzero(entry[:-1]) + 1
    ext = np.flatnonzero(exit_[:-1]) + 1
    ext = ext[ext > ent[0]] if len(ent) else ext
    k = len(ext)
    growth = (1.0 - fee) * open_[ext] / (open_[ent[:k]] * (1.0 + fee))
    cash_before = capital * np.concatenate(([1.0], np.cumprod(growth)))
    # Equity at each close: cash when flat, cash_before * close / (entry price * (1 + fee)) when long.
    marks = np.zeros(n, dtype=np.int64)
    marks[ent] = 1
    tid = np.cumsum(marks) - 1  # index of the latest entry filled at or before each bar
    marks[:] = 0
    marks[ext] = 1
    xid = np.cumsum(marks)  # exits filled at or before each bar
    tid_c = np.maximum(tid, 0)
    held = cash_before[tid_c] * close / (open_[ent][tid_c] * (1.0 + fee))
    equity = np.where(tid + 1 > xid, held, cash_before[xid])
    peak = np.maximum.accumulate(equity)
    return len(ent), float(equity[-1]), float(((peak - equity) / peak).max())


def loop_reference(
    bars: dict[str, np.ndarray],
    signals: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    fee: float,
    slip: float,
    fraction: float,
    stop: float | None = None,
    target: float | None = None,
    capital: float = 10_000.0,
) -> tuple[list[tuple[int, int, int, float, float, float]], float]:
    """A plain loop broker: next-open fills, equity_pct sizing, percent stop and target, long and short.

    Returns the trades as (side, entry_bar, exit_bar, entry_price, exit_price, pnl) and the final equity.
    """
    o, h, lo, c = bars["open"], bars["high"], bars["low"], bars["close"]
    el, xl, es, xs = signals
    cash, side, qty, entry, entry_bar, fees = capital, 0, 0.0, 0.0, 0, 0.0
    pending = 0  # +1 / -1: entry of that side; 2: exit
    trades: list[tuple[int, int, int, float, float, float]] = []

    def close(t: int, price: float, fee_rate: float) -> None:
        """Close the whole position at `price` on bar t."""
        nonlocal cash, side, qty, fees
        fee = qty * price * fee_rate
        gross = side * qty * (price - entry)
        cash += qty * entry + gross - fee
        trades.append((side, entry_bar, t, entry, price, gross - fees - fee))
        side, qty = 0, 0.0

    for t in range(len(c)):
        if pending == 2:
            close(t, o[t] * (1 - side * slip), fee)
        elif pending != 0:
            price = o[t] * (1 + pending * slip)
            qty = min(fraction * cash, cash) / (price * (1 + fee))
            fees = qty * price * fee
            cash -= qty * price + fees
            side, entry, entry_bar = pending, price, t
        pending = 0
        if side != 0:
            # From the fill bar on (an entry fills at the open, before the bar's range).
            # Stop first (worst case); a gap through a level fills at the open.
            sl = entry * (1 - side * stop) if stop is not None else None
            tp = entry * (1 + side * target) if target is not None else None
            worst, best = (lo[t], h[t]) if side > 0 else (h[t], lo[t])
            if sl is not None and side * o[t] <= side * sl:
                close(t, o[t] * (1 - side * slip), fee)
            elif tp is not None and side * o[t] >= side * tp:
                close(t, o[t], fee)
            elif sl is not None and side * worst <= side * sl:
                close(t, sl * (1 - side * slip), fee)
            elif tp is not None and side * best >= side * tp:
                close(t, tp, fee)
        if t == len(c) - 1:
            break
        if side != 0:
            if (side > 0 and xl[t]) or (side < 0 and xs[t]):
                pending = 2
            continue
        if el[t] and not es[t] and not xl[t]:
            pending = 1
        elif es[t] and not el[t] and not xs[t]:
            pending = -1
    equity = cash
    if side != 0:
        last = c[-1]
        equity += qty * entry + side * qty * (last - entry)
        trades.append((side, entry_bar, len(c) - 1, entry, last, side * qty * (last - entry) - fees))
    return trades, equity
