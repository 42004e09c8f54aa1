"""The self-contained HTML report of a backtest run.

One file that opens offline: the plotly library is embedded (no CDN), the charts are plotly figures and
the tables plain HTML. Sections: summary, per-sleeve and per-symbol tables, a price chart per symbol with
entries and exits, equity and drawdown, monthly returns heatmap, risk events and the trade table. Long
series are thinned for display (per-bucket minima and maxima, so spikes and troughs survive) to at most
about `MAX_POINTS` points; trade markers are always all drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from runtime.backtest.metrics import Summary, drawdown, equity_curve, iso_times
from runtime.backtest.output import (
    SLEEVE_HEADER,
    TRADE_COLUMNS,
    fmt_num,
    fmt_pct,
    sleeve_rows,
    summary_rows,
    trade_cells,
)
from runtime.broker.result import BacktestResult, Trade

# Most points drawn per line; longer series are thinned for display.
MAX_POINTS = 20_000
# Up to this many candles a price chart shows candlesticks, beyond it a close line.
MAX_CANDLES = 3_000
# Most trades listed in the HTML trade table (trades.csv always has all of them).
MAX_TRADE_ROWS = 5_000
# Month labels of the heatmap.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class CandleArrays(Protocol):
    """Candles of one symbol as the report reads them."""

    time: np.ndarray  # int64 candle open times, UTC ms
    open: np.ndarray  # float64 open prices
    high: np.ndarray  # float64 high prices
    low: np.ndarray  # float64 low prices
    close: np.ndarray  # float64 close prices


# Page styling, kept small and inline.
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}
.banner{background:#c62828;color:#fff;font-weight:bold;padding:10px 16px;margin:12px 0;font-size:1.2em}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.neg{color:#b71c1c}.note{color:#666;font-size:12px}
"""


def decimate(series: Sequence[np.ndarray], max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of the points to draw so that every series keeps its per-bucket minimum and maximum.

    All series share one index (they are drawn on one x axis); the first and last points are always kept.
    """
    n = len(series[0])
    if n <= max_points:
        return np.arange(n)
    # Each series contributes two points per bucket.
    size = math.ceil(n * 2 * len(series) / max_points)
    buckets = math.ceil(n / size)
    starts = np.arange(buckets) * size
    keep = [np.array([0, n - 1])]
    for values in series:
        padded = np.pad(np.asarray(values, dtype=np.float64), (0, buckets * size - n), mode="edge")
        grid = np.nan_to_num(padded, nan=0.0).reshape(buckets, size)
        keep += [starts + grid.argmin(axis=1), starts + grid.argmax(axis=1)]
    return np.unique(np.minimum(np.concatenate(keep), n - 1))


def _x(ms: np.ndarray) -> np.ndarray:
    """Millisecond times as floats, which plotly's date axes read as UTC instants."""
    return np.asarray(ms, dtype=np.float64)


def _markers(trades: Sequence[Trade], fig: go.Figure) -> None:
    """Add entry and exit markers of a symbol's trades to a price figure (smaller when there are many)."""
    size = 9 if len(trades) <= 200 else 5
    for side, symbol, color in (("long", "triangle-up", "#2e7d32"), ("short", "triangle-down", "#c62828")):
        chosen = [t for t in trades if t.side == side]
        if chosen:
            fig.add_trace(
                go.Scatter(
                    x=_x(np.array([t.entry_time for t in chosen])),
                    y=np.array([t.entry_price for t in chosen]),
                    mode="markers",
                    name=f"{side} entry",
                    marker={"symbol": symbol, "size": size, "color": color},
                    text=[f"{t.sleeve}: {side} entry, qty {t.qty:.6g}" for t in chosen],
                    hoverinfo="x+y+text",
                )
            )
    closed = [t for t in trades if t.exit_time is not None]
    if closed:
        fig.add_trace(
            go.Scatter(
                x=_x(np.array([t.exit_time for t in closed])),
                y=np.array([t.exit_price for t in closed]),
                mode="markers",
                name="exit",
                marker={"symbol": "x", "size": size, "color": "#37474f"},
                text=[f"{t.sleeve}: exit ({t.exit_reason}), pnl {t.pnl:,.2f}" for t in closed],
                hoverinfo="x+y+text",
            )
        )


def price_figure(symbol: str, candles: CandleArrays | None, trades: Sequence[Trade]) -> go.Figure:
    """Price of one symbol (candlesticks, or a thinned close line for long histories) with its trades."""
    fig = go.Figure()
    if candles is not None and len(candles.time) <= MAX_CANDLES:
        fig.add_trace(
            go.Candlestick(
                x=_x(candles.time),
                open=candles.open,
                high=candles.high,
                low=candles.low,
                close=candles.close,
                name=symbol,
            )
        )
    elif candles is not None:
        keep = decimate([candles.close])
        fig.add_trace(go.Scatter(x=_x(candles.time[keep]), y=candles.close[keep], mode="lines", name="close"))
    _markers(trades, fig)
    fig.update_layout(
        title=f"{symbol}: price, entries and exits",
        height=420,
        xaxis={"type": "date", "rangeslider": {"visible": False}},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def equity_figure(result: BacktestResult) -> go.Figure:
    """Equity (top) and drawdown (bottom) over the run, thinned for display."""
    equity = np.asarray(result.equity, dtype=np.float64)
    dd = -drawdown(equity_curve(result))[1:] * 100.0
    keep = decimate([equity, dd])
    x = _x(np.asarray(result.time)[keep])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(x=x, y=equity[keep], mode="lines", name=f"equity ({result.quote})"), row=1, col=1
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=dd[keep], mode="lines", fill="tozeroy", name="drawdown (%)", line={"color": "#c62828"}
        ),
        row=2,
        col=1,
    )
    fig.update_layout(title="Equity and drawdown", height=520, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text=result.quote, row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return fig


def monthly_figure(summary: Summary) -> go.Figure:
    """Heatmap of monthly returns in percent: one row per year, one column per month."""
    years = sorted({m.year for m in summary.monthly_returns})
    z = np.full((len(years), 12), np.nan)
    for m in summary.monthly_returns:
        z[years.index(m.year), m.month - 1] = m.ret * 100.0
    text = [["" if math.isnan(v) else f"{v:.1f}%" for v in row] for row in z.tolist()]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(MONTHS),
            y=[str(y) for y in years],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            colorbar={"title": {"text": "%"}},
            hoverongaps=False,
        )
    )
    fig.update_layout(
        title="Monthly returns",
        height=max(260, 40 * len(years) + 120),
        yaxis={"autorange": "reversed", "type": "category"},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    """An HTML table; numeric cells are right-aligned and negative ones shown in red."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            negative = cell[:1] == "-" and cell[1:2].isdigit()
            css = "n neg" if negative else "n" if cell[:1].isdigit() else ""
            cells.append(
                f'<td class="{css}">{html.escape(cell)}</td>' if css else f"<td>{html.escape(cell)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a div and its drawing script (the library itself is embedded once, in the head)."""
    return pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True}
    )


def write_report(
    result: BacktestResult,
    summary: Summary,
    candles_by_symbol: Mapping[str, CandleArrays],
    path: str | Path,
    *,
    title: str = "Backtest",
) -> Path:
    """Write report.html and return its path.

    Args:
        result: the simulation's output.
        summary: its metrics.
        candles_by_symbol: candles per market symbol for the price charts (a symbol without candles still
            gets a chart of its entries and exits).
        path: destination file.
        title: heading of the page, usually the spec's name.
    """
    symbols = [s.symbol for s in summary.symbols]
    sections: list[str] = [f"<h1>{html.escape(title)}: backtest report</h1>"]
    if result.synthetic:
        sections.append(
            '<div class="banner" id="synthetic">SYNTHETIC DATA: these prices are generated, '
            "not real market history</div>"
        )
    sections.append(
        f'<p class="note">{html.escape(summary.start)} → {html.escape(summary.end)}, '
        f"{summary.bars:,} bars, quote currency {html.escape(summary.quote)}</p>"
    )
    sections += ["<h2>Summary</h2>", _table(("Metric", "Value"), summary_rows(summary), "summary")]
    sections += ["<h2>Sleeves</h2>", _table(SLEEVE_HEADER, sleeve_rows(summary), "sleeves")]
    symbol_rows = [
        (
            s.symbol,
            f"{s.entries:,}",
            fmt_pct(s.win_rate),
            fmt_num(s.pnl),
            fmt_pct(s.contribution),
            fmt_num(s.fees),
        )
        for s in summary.symbols
    ]
    sections += [
        "<h2>Symbols</h2>",
        _table(("Symbol", "Entries", "Win rate", "PnL", "Contribution", "Fees"), symbol_rows, "symbols"),
    ]
    sections += ["<h2>Equity and drawdown</h2>", _figure_html(equity_figure(result), "equity-chart")]
    for i, symbol in enumerate(symbols):
        trades = [t for t in result.trades if t.symbol == symbol]
        fig = price_figure(symbol, candles_by_symbol.get(symbol), trades)
        sections += [f"<h2>{html.escape(symbol)}</h2>", _figure_html(fig, f"price-chart-{i}")]
    sections += ["<h2>Monthly returns</h2>", _figure_html(monthly_figure(summary), "monthly-chart")]
    if result.risk_events:
        times = iso_times(np.array([e.time for e in result.risk_events], dtype=np.int64))
        risk_rows = [
            (t, e.scope, e.rule, e.action, ", ".join(f"{k}={v:.6g}" for k, v in e.values))
            for e, t in zip(result.risk_events, times, strict=True)
        ]
        sections += [
            "<h2>Risk events</h2>",
            _table(("Time", "Scope", "Rule", "Action", "Values"), risk_rows, "risk-events"),
        ]
    shown = result.trades[:MAX_TRADE_ROWS]
    sections.append(f"<h2>Trades ({len(result.trades):,})</h2>")
    if len(shown) < len(result.trades):
        sections.append(f'<p class="note">First {len(shown):,} trades; trades.csv lists all of them.</p>')
    sections.append(_table(TRADE_COLUMNS, trade_cells(shown), "trades"))

    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}: backtest report</title>\n<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target
