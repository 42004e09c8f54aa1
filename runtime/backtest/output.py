"""The data files of a backtest run (summary.json, the CSVs), its console summary and the shared formatting.

report.html is written by `runtime.backtest.report`, which reads the table helpers here (never the other
way round).

Files are deterministic: no run id or wall-clock time inside, times as ISO-8601 UTC, floats in a fixed
format (shortest round-trip `repr` in trades.csv, orders.csv and risk_events.csv; eight decimals in the
large equity.csv, which is written at about a million rows a second), so identical runs give
byte-identical files.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from dsl.units import format_duration
from runtime.backtest.fastcsv import iso_column, row_bytes, rows_text
from runtime.backtest.metrics import Summary, drawdown, equity_curve, iso_times
from runtime.broker.result import BacktestResult, Trade

# Column headers of the CSV files.
TRADE_COLUMNS = (
    "sleeve", "symbol", "side", "entry_time", "entry_price", "exit_time", "exit_price", "qty", "pnl",
    "return", "fees", "exit_reason", "mae", "mfe",
)  # fmt: skip
EQUITY_COLUMNS = ("time", "equity", "cash", "exposure", "drawdown")
ORDER_COLUMNS = (
    "time", "sleeve", "symbol", "side", "intent", "reason", "requested_qty", "filled_qty", "price", "fee",
)  # fmt: skip
RISK_COLUMNS = ("time", "scope", "rule", "action", "values")
ALERT_COLUMNS = ("time", "sleeve", "strategy", "symbol", "alert")


def new_out_dir(spec_path: str | Path, now: datetime | None = None, root: str | Path = "reports") -> Path:
    """Create and return a fresh run folder `<root>/<spec stem>-<UTC time>/` (relative to the current dir).

    The folder is created atomically (`mkdir` without `exist_ok`), so two runs started in the same second
    never share one: the second gets `-2`, the next `-3`, and so on.
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path(root) / f"{Path(spec_path).stem}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        folder = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            # Another run (or an earlier one) owns this name: try the next suffix.
            continue
        return folder
    raise AssertionError("unreachable")  # pragma: no cover (itertools.count never ends)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV file with LF line ends (quoting only where a field needs it)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _f(value: float) -> str:
    """A float in its shortest round-trip form."""
    return repr(float(value))


def _quote(text: str) -> str:
    """A CSV field as `csv.writer` writes it (quoted only when it holds a comma, quote or line break)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _text(column: np.ndarray) -> list[str]:
    """A text column's CSV fields (each distinct value quoted once)."""
    values = column.tolist()
    fields = {v: _quote(str(v)) for v in set(values)}
    return [fields[v] for v in values]


def _times(ms: np.ndarray, millis: bool | None = None) -> list[str]:
    """ISO times of a column, compiled when the times allow it (see `fastcsv`)."""
    precise = bool(np.any(ms % 1000)) if millis is None else millis
    fast = iso_column(ms, precise)
    return iso_times(ms, precise) if fast is None else fast


def _write_rows(path: Path, header: Sequence[str], columns: Sequence[Sequence[str]]) -> None:
    """Write a CSV file with LF line ends: the header, then the columns' fields joined by commas per row."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(header) + "\n")
        if columns and len(columns[0]):
            handle.write("\n".join(map(",".join, zip(*columns, strict=True))) + "\n")


def _floats(column: np.ndarray, memo: dict[float, str]) -> list[str]:
    """A float column's CSV fields, each the shortest round-trip repr as `_f` writes it.

    repr of a 17-digit float is the dearest part of writing trades.csv and orders.csv, and values recur
    (a quantity in both files, a price in many rows): each distinct value of the column is written once,
    looked up first in `memo` (texts of the values already written, shared across columns). Zeros are
    written afresh (0.0 and -0.0 are one value to numpy and to a dict, but two texts).
    """
    values = np.asarray(column, dtype=np.float64)
    distinct, where = np.unique(values, return_inverse=True)
    texts = [memo.get(v) or memo.setdefault(v, repr(v)) for v in distinct.tolist()]
    fields: list[str] = np.array(texts, dtype=object)[where].tolist()
    for i in np.flatnonzero(values == 0).tolist():
        fields[i] = repr(float(values[i]))
    return fields


def write_trades(result: BacktestResult, path: Path, memo: dict[float, str] | None = None) -> None:
    """Write trades.csv: one row per trade, the still-open one with an empty exit_time.

    `memo` is a float-to-text cache to share with `write_orders` (see `_floats`).
    """
    t = result.trade_table
    memo = {} if memo is None else memo
    exits = _times(np.where(t.closed, t.exit_time, 0))
    columns: list[Sequence[str]] = [
        _text(t.sleeve),
        _text(t.symbol),
        _text(t.side),
        _times(t.entry_time),
        _floats(t.entry_price, memo),
        [x if done else "" for x, done in zip(exits, t.closed.tolist(), strict=True)],
        _floats(t.exit_price, memo),
        _floats(t.qty, memo),
        _floats(t.pnl, memo),
        _floats(t.ret, memo),
        _floats(t.fees, memo),
        _text(t.exit_reason),
        _floats(t.mae, memo),
        _floats(t.mfe, memo),
    ]
    _write_rows(path, TRADE_COLUMNS, columns)


def write_equity(result: BacktestResult, path: Path, peak: float | None = None) -> None:
    """Write equity.csv: time (bar close), equity, cash, exposure and drawdown at every bar.

    With `peak` (a live session's outputs, written as they come) the rows are appended to the file, and
    their drawdown is measured from the higher of `peak` (the equity peak of the rows already written)
    and their own; the header is written with the first rows.
    """
    curve = equity_curve(result) if peak is None else np.concatenate(([peak], result.equity))
    dd = drawdown(curve)[1:]
    block = np.stack(
        [np.asarray(a, dtype=np.float64) for a in (result.equity, result.cash, result.exposure, dd)]
    )
    time = np.asarray(result.time, dtype=np.int64)
    millis = bool(np.any(time % 1000))
    fresh = peak is None or not path.exists() or path.stat().st_size == 0
    with path.open("wb" if peak is None else "ab") as handle:
        if fresh:
            handle.write((",".join(EQUITY_COLUMNS) + "\n").encode())
        # In chunks, so a million-bar run never holds the whole text; the compiled formatter writes the
        # bytes `%.8f` would, and a chunk it cannot handle (a huge value, an odd year) goes the slow way.
        buffer = np.empty(min(len(time), _CHUNK) * row_bytes(len(block)), dtype=np.uint8)
        for start in range(0, len(time), _CHUNK):
            part = slice(start, start + _CHUNK)
            text = rows_text(time, block, millis, buffer, start, start + _CHUNK)
            if text is None:
                rows = zip(iso_times(time[part], millis), *(a.tolist() for a in block[:, part]), strict=True)
                handle.write("".join(map("%s,%.8f,%.8f,%.8f,%.8f\n".__mod__, rows)).encode())
            else:
                handle.write(text.data)


# Rows of equity.csv formatted at a time.
_CHUNK = 131_072


def write_orders(result: BacktestResult, path: Path, memo: dict[float, str] | None = None) -> None:
    """Write orders.csv: every fill in time order (`memo` as for `write_trades`)."""
    o = result.order_table
    memo = {} if memo is None else memo
    columns: list[Sequence[str]] = [
        _times(o.time),
        _text(o.sleeve),
        _text(o.symbol),
        _text(o.side),
        _text(o.intent),
        _text(o.reason),
        _floats(o.requested_qty, memo),
        _floats(o.filled_qty, memo),
        _floats(o.price, memo),
        _floats(o.fee, memo),
    ]
    _write_rows(path, ORDER_COLUMNS, columns)


def write_risk_events(result: BacktestResult, path: Path) -> None:
    """Write risk_events.csv; `values` holds the metrics the rule saw as `name=value;name=value`."""
    events = result.risk_events
    times = iso_times(np.array([e.time for e in events], dtype=np.int64))
    rows = (
        (time, e.scope, e.rule, e.action, ";".join(f"{k}={_f(v)}" for k, v in e.values))
        for e, time in zip(events, times, strict=True)
    )
    _write_csv(path, RISK_COLUMNS, rows)


def write_alerts(result: BacktestResult, path: Path) -> None:
    """Write alerts.csv: every alert that fired, at the close time of its bar, in time order."""
    alerts = result.alerts
    times = iso_times(np.array([a.time for a in alerts], dtype=np.int64))
    rows = ((time, a.sleeve, a.strategy, a.symbol, a.text) for a, time in zip(alerts, times, strict=True))
    _write_csv(path, ALERT_COLUMNS, rows)


def write_outputs(result: BacktestResult, summary: Summary, out_dir: str | Path) -> Path:
    """Write every data file of a run into `out_dir` (created if needed) and return the folder.

    summary.json, trades.csv, orders.csv, risk_events.csv, alerts.csv and equity.csv; report.html is
    written by `runtime.backtest.report.write_report`, which reads this module's table helpers.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # equity.csv, the largest file, is formatted by a compiled kernel that releases the GIL: write it on a
    # second thread while this one formats the Python-built files.
    with ThreadPoolExecutor(max_workers=1) as pool:
        equity = pool.submit(write_equity, result, folder / "equity.csv")
        (folder / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
        memo: dict[float, str] = {}
        write_trades(result, folder / "trades.csv", memo)
        write_orders(result, folder / "orders.csv", memo)
        write_risk_events(result, folder / "risk_events.csv")
        write_alerts(result, folder / "alerts.csv")
        equity.result()
    return folder


def fmt_pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals; a dash when undefined."""
    return "–" if value is None else fmt_num(value * 100) + "%"


def fmt_num(value: float | None, digits: int = 2) -> str:
    """A number with thousands separators (scientific beyond a billion); a dash when undefined."""
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e9 else f"{value:,.{digits}f}"


def bar_count(bars: int, bar_ms: int) -> str:
    """A number of bars with their clock and the time they span: `4,226 bars of 1h (176.1 days)`."""
    return f"{bars:,} bars of {format_duration(bar_ms)} ({bars * bar_ms / 86_400_000:,.1f} days)"


def summary_rows(summary: Summary) -> list[tuple[str, str]]:
    """The headline metrics as (label, formatted value) pairs, shared by the console and the report."""
    q = summary.quote
    ratios = (summary.sharpe, summary.sortino, summary.calmar)
    cut = 19 if summary.bar_ms < 60_000 else 16  # ISO times to the minute, to the second for second bars
    return [
        ("Period (UTC)", f"{summary.start[:cut]} → {summary.end[:cut]}".replace("T", " ")),
        ("Bars", bar_count(summary.bars, summary.bar_ms)),
        ("Final equity", f"{fmt_num(summary.final_equity)} {q} (from {fmt_num(summary.capital)})"),
        ("Total return", fmt_pct(summary.total_return)),
        ("CAGR", fmt_pct(summary.cagr)),
        (
            "Max drawdown",
            f"{fmt_pct(summary.max_drawdown)}, lasting "
            + bar_count(summary.max_drawdown_duration_bars, summary.bar_ms),
        ),
        ("Volatility (annual)", fmt_pct(summary.volatility)),
        ("Sharpe / Sortino / Calmar", " / ".join(map(fmt_num, ratios))),
        ("Entries (closed)", f"{summary.entries:,} ({summary.closed_trades:,})"),
        ("Win rate", fmt_pct(summary.win_rate)),
        ("Profit factor", fmt_num(summary.profit_factor)),
        ("Expectancy", f"{fmt_num(summary.expectancy)} {q}"),
        (
            "Hold (mean / median)",
            f"{fmt_num(summary.avg_hold_bars, 1)} / {fmt_num(summary.median_hold_bars, 1)} "
            "bars of each sleeve",
        ),
        ("Exposure", fmt_pct(summary.exposure)),
        ("Turnover", f"{fmt_num(summary.turnover)}x"),
        ("Fees", f"{fmt_num(summary.fees)} {q}"),
    ]


def sleeve_rows(summary: Summary) -> list[tuple[str, ...]]:
    """One row per sleeve (name, symbol, weight, entries, win rate, pnl, contribution, fees)."""
    return [
        (
            s.name,
            s.symbol,
            fmt_pct(s.weight),
            f"{s.entries:,}",
            fmt_pct(s.win_rate),
            fmt_num(s.pnl),
            fmt_pct(s.contribution),
            fmt_num(s.fees),
        )
        for s in summary.sleeves
    ]


def trade_cells(trades: Sequence[Trade]) -> list[list[str]]:
    """Formatted trade table cells, one row per trade, in trades.csv's column order."""
    entries = iso_times(np.array([t.entry_time for t in trades], dtype=np.int64))
    exits = iso_times(np.array([t.exit_time or 0 for t in trades], dtype=np.int64))
    return [
        [
            t.sleeve,
            t.symbol,
            t.side,
            entry,
            f"{t.entry_price:.8g}",
            exit_ if t.exit_time is not None else "open",
            f"{t.exit_price:.8g}",
            f"{t.qty:.6g}",
            fmt_num(t.pnl),
            fmt_pct(t.ret),
            fmt_num(t.fees),
            t.exit_reason,
        ]
        for t, entry, exit_ in zip(trades, entries, exits, strict=True)
    ]


# Header of the per-sleeve table.
SLEEVE_HEADER = ("Sleeve", "Symbol", "Weight", "Entries", "Win rate", "PnL", "Contribution", "Fees")


# Width of a console that is not a terminal (a pipe, a file): wide enough that no table cell is ever cut.
PIPE_WIDTH = 1_000


def make_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width on a terminal; `PIPE_WIDTH` when piped, so no cell is cut."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


def print_summary(summary: Summary, console: Console, alerts: int | None = None) -> None:
    """Print the summary table, the per-sleeve table and, for a run, how many alerts fired (`alerts`)."""
    if summary.synthetic:
        console.print(
            Panel(
                "SYNTHETIC DATA: these prices are generated, not real market history",
                style="bold red",
                expand=False,
            )
        )
    table = Table(title="Backtest summary" + (" [SYNTHETIC DATA]" if summary.synthetic else ""))
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for label, value in summary_rows(summary):
        table.add_row(label, value)
    console.print(table)
    sleeves = Table(title="Sleeves")
    for i, name in enumerate(SLEEVE_HEADER):
        sleeves.add_column(name, justify="left" if i < 2 else "right")
    for row in sleeve_rows(summary):
        sleeves.add_row(*row)
    console.print(sleeves)
    if alerts is not None:
        console.print(
            f"{alerts:,} alert{'' if alerts == 1 else 's'} fired" + (" (alerts.csv)" if alerts else "")
        )
