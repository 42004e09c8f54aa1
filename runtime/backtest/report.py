"""The self-contained HTML report of a backtest run.

One file that opens offline: the plotly library is embedded (no CDN), the charts are plotly figures and
the tables plain HTML. Sections: summary, per-sleeve and per-symbol tables, equity and drawdown against
buy-and-hold benchmarks (the portfolio's weights, and each symbol alone), each sleeve's cumulative PnL, a
price chart per symbol with the strategy's own price-level series (moving averages, bands) and every
entry and exit, monthly returns heatmap, risk events, alerts, the run's parameters and data, and the trade
table. Every chart starts at the run's first bar (warm-up history is not drawn). Long series are thinned
for display (per-bucket minima and maxima, so spikes and troughs survive) to at most about `MAX_POINTS`
points; trade markers are outlined so they show on either candle colour, and a small script thins and
sizes them by how many are in view (at most 600 drawn, small when thousands are, all and large when
zoomed in).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dsl import builtins
from dsl.ir import Expr
from dsl.render import format_value, render_expr
from dsl.units import format_duration
from runtime.backtest.metrics import Summary, drawdown, equity_curve, iso_times
from runtime.backtest.output import (
    ALERT_COLUMNS,
    SLEEVE_HEADER,
    TRADE_COLUMNS,
    bar_count,
    fmt_num,
    fmt_pct,
    sleeve_rows,
    summary_rows,
    trade_cells,
)
from runtime.broker.result import BacktestResult, Trade

if TYPE_CHECKING:
    from runtime.plan.plan import RunPlan

# Most points drawn per line; longer series are thinned for display.
MAX_POINTS = 20_000
# Up to this many candles a price chart shows candlesticks, beyond it a close line.
MAX_CANDLES = 3_000
# Most trades (and alerts) listed in the HTML tables (trades.csv and alerts.csv always have all of them).
MAX_TRADE_ROWS = 5_000
# Trade markers in view at which they are drawn at full size; more in view draw them smaller (see _SIZE_JS).
FULL_SIZE_MARKERS = 150
# Most trade markers drawn in view at once; more in view are thinned to every k-th (see _SIZE_JS).
MAX_SHOWN_MARKERS = 600
# Marker colours: none is a candle colour, and each marker has a dark outline, so all show on any candle.
ENTRY_COLORS = {"long": "#1e88e5", "short": "#8e24aa"}  # blue long entries, purple short entries
EXIT_COLOR = "#ffb300"  # amber exits
# Month labels of the heatmap.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class CandleArrays(Protocol):
    """Candles of one symbol as the report reads them."""

    time: np.ndarray  # int64 candle open times, UTC ms
    open: np.ndarray  # float64 open prices
    high: np.ndarray  # float64 high prices
    low: np.ndarray  # float64 low prices
    close: np.ndarray  # float64 close prices


@dataclass(frozen=True)
class Line:
    """A series drawn over a symbol's price: a price-level binding a sleeve computes (an average, a band)."""

    name: str  # legend label, "btc_trend: fast_ma"
    time: np.ndarray  # int64 bar open times, UTC ms
    values: np.ndarray  # float64 values in the symbol's price units (NaN where na)


@dataclass(frozen=True)
class RunSetup:
    """The report's parameters section: how the run was set up and what data fed it."""

    spec: str  # the spec file run
    settings: tuple[tuple[str, str, str], ...]  # (scope: the portfolio or a sleeve, name, value as written)
    data: tuple[tuple[str, str], ...]  # (candle series label, quality note or "clean"), in load order


# Page styling, kept small and inline; tables use the page's width.
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}
.banner{background:#c62828;color:#fff;font-weight:bold;padding:10px 16px;margin:12px 0;font-size:1.2em}
table{border-collapse:collapse;font-size:13px;width:100%}td,th{padding:3px 10px;border-bottom:1px solid #eee}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.neg{color:#b71c1c}.note{color:#666;font-size:12px}table.kv{width:auto;min-width:40%}
"""

# Thins and sizes the trade markers of every price chart by how many are in view, on load and on every zoom
# or pan: at most MAX_SHOWN_MARKERS are drawn (every k-th of those in view, the others transparent: still
# there to hover), at full size up to FULL_SIZE_MARKERS in view, then smaller (down to 3 px) as the count
# grows. It reads the decoded traces (`_fullData`: the figure's arrays arrive base64-encoded in `data`).
_SIZE_JS = """
function ms(v){ return typeof v==='number' ? v : Date.parse(String(v).replace(' ','T')+'Z'); }
window.addEventListener('load', function(){
 document.querySelectorAll('.price-chart .plotly-graph-div').forEach(function(div){
  function resize(){
    var r=(div.layout.xaxis||{}).range||[-Infinity, Infinity], lo=ms(r[0]), hi=ms(r[1]), n=0, idx=[];
    div._fullData.forEach(function(t){ if(t.meta==='trades'){ idx.push(t.index);
      Array.prototype.forEach.call(t.x, function(x){ var v=ms(x); if(v>=lo&&v<=hi) n++; }); } });
    if(!idx.length) return;
    var size=Math.max(3, Math.min(10, 10*Math.sqrt(FULL_SIZE/Math.max(n,1))));
    var every=Math.max(1, Math.ceil(n/MAX_SHOWN)), seen=0, opacity=[];
    idx.forEach(function(i){ opacity.push(Array.prototype.map.call(div._fullData.find(function(t){
      return t.index===i; }).x, function(x){ var v=ms(x); if(v<lo||v>hi) return 1;
      return (seen++ % every)===0 ? 1 : 0; })); });
    Plotly.restyle(div, {'marker.size': size, 'marker.line.width': size < 6 ? 0.5 : 1,
                         'marker.opacity': opacity}, idx);
  }
  div.on('plotly_relayout', resize); resize();
 });
});
""".replace("FULL_SIZE", str(FULL_SIZE_MARKERS)).replace("MAX_SHOWN", str(MAX_SHOWN_MARKERS))


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


def _y(values: np.ndarray) -> np.ndarray:
    """Values of a drawn line as float32: seven significant digits are plenty on screen, at half the size."""
    return np.asarray(values, dtype=np.float32)


def _dates(ms: np.ndarray) -> np.ndarray:
    """Millisecond times as floats, which plotly's date axes read as UTC instants."""
    return np.asarray(ms, dtype=np.float64)


def _markers(trades: Sequence[Trade], fig: go.Figure) -> None:
    """Add entry and exit markers of a symbol's trades to a price figure.

    Markers are outlined in a dark colour and filled with colours no candle uses, so they show on either
    candle colour; their size is set in the browser by how many are in view (`_SIZE_JS`).
    """
    outline = {"color": "#102027", "width": 1}
    for side, symbol in (("long", "triangle-up"), ("short", "triangle-down")):
        chosen = [t for t in trades if t.side == side]
        if chosen:
            fig.add_trace(
                go.Scatter(
                    x=_dates(np.array([t.entry_time for t in chosen])),
                    y=np.array([t.entry_price for t in chosen]),
                    mode="markers",
                    name=f"{side} entry",
                    meta="trades",
                    marker={"symbol": symbol, "size": 10, "color": ENTRY_COLORS[side], "line": outline},
                    text=[f"{t.sleeve}: {side} entry, qty {t.qty:.6g}" for t in chosen],
                    hoverinfo="x+y+text",
                )
            )
    closed = [t for t in trades if t.exit_time is not None]
    if closed:
        fig.add_trace(
            go.Scatter(
                x=_dates(np.array([t.exit_time for t in closed])),
                y=np.array([t.exit_price for t in closed]),
                mode="markers",
                name="exit",
                meta="trades",
                marker={"symbol": "diamond", "size": 10, "color": EXIT_COLOR, "line": outline},
                text=[f"{t.sleeve}: exit ({t.exit_reason}), pnl {t.pnl:,.2f}" for t in closed],
                hoverinfo="x+y+text",
            )
        )


def price_figure(
    symbol: str,
    candles: CandleArrays | None,
    trades: Sequence[Trade],
    lines: Sequence[Line] = (),
    span: tuple[int, int] | None = None,
) -> go.Figure:
    """Price of one symbol (candlesticks, or a thinned close line for long histories) with its trades.

    `lines` are drawn over the price; `span` (first bar's open, last bar's close, UTC ms) is the run's
    range: candles and lines before it (warm-up history) are left out and the x axis shows exactly it.
    """
    fig = go.Figure()
    if candles is not None:
        first = 0 if span is None else int(np.searchsorted(candles.time, span[0]))
        time = np.asarray(candles.time)[first:]
        if len(time) <= MAX_CANDLES:
            fig.add_trace(
                go.Candlestick(
                    x=_dates(time),
                    open=candles.open[first:],
                    high=candles.high[first:],
                    low=candles.low[first:],
                    close=candles.close[first:],
                    name=symbol,
                )
            )
        else:
            close = np.asarray(candles.close)[first:]
            keep = decimate([close])
            fig.add_trace(go.Scatter(x=_dates(time[keep]), y=_y(close[keep]), mode="lines", name="close"))
    for line in lines:
        first = 0 if span is None else int(np.searchsorted(line.time, span[0]))
        values = np.asarray(line.values, dtype=np.float64)[first:]
        keep = decimate([values])
        fig.add_trace(
            go.Scatter(
                x=_dates(np.asarray(line.time)[first:][keep]),
                y=_y(values[keep]),
                mode="lines",
                name=line.name,
                line={"width": 1.2},
            )
        )
    _markers(trades, fig)
    fig.update_layout(
        title=f"{symbol}: price, the strategy's lines, entries and exits",
        height=460,
        xaxis={"type": "date", "rangeslider": {"visible": False}},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    _span(fig, span)
    return fig


def _span(fig: go.Figure, span: tuple[int, int] | None) -> None:
    """Make every x axis of a figure show the run's range (first bar's open to last bar's close)."""
    if span is not None:
        fig.update_xaxes(range=[_iso(span[0]), _iso(span[1])])


def _iso(ms: int) -> str:
    """A UTC millisecond time as the date text plotly's date axes read."""
    return iso_times(np.array([ms], dtype=np.int64), True)[0].rstrip("Z").replace("T", " ")


def _at(candles: CandleArrays, times: np.ndarray) -> np.ndarray:
    """A symbol's last close at or before each time (NaN before its first bar has closed)."""
    opens = np.asarray(candles.time, dtype=np.int64)
    bar = int(np.min(np.diff(opens))) if len(opens) > 1 else 0
    index = np.searchsorted(opens + bar, times, side="right") - 1
    prices = np.asarray(candles.close, dtype=np.float64)[np.maximum(index, 0)]
    return np.where(index >= 0, prices, np.nan)


def benchmarks(
    result: BacktestResult, candles_by_symbol: Mapping[str, CandleArrays]
) -> list[tuple[str, np.ndarray]]:
    """Buy-and-hold equity on the run's time line: the portfolio's weights, then each symbol alone.

    Each holds the capital (or its sleeve's weight of it) in the symbol from the close of the run's first
    bar (cash until the symbol's first close), without fees or rebalancing; weights not invested stay cash.
    """
    times = np.asarray(result.time, dtype=np.int64)
    growth: dict[str, np.ndarray] = {}
    for symbol, candles in candles_by_symbol.items():
        prices = _at(candles, times)
        valid = np.flatnonzero(prices == prices)
        if len(valid):
            growth[symbol] = np.where(prices == prices, prices / prices[valid[0]], 1.0)
    lines: list[tuple[str, np.ndarray]] = []
    # The portfolio's benchmark needs every sleeve's prices (a sleeve without would count as cash).
    if len(result.sleeves) > 1 and all(s.symbol in growth for s in result.sleeves):
        cash = max(0.0, 1.0 - sum(s.weight for s in result.sleeves))
        weighted = sum((s.weight * growth[s.symbol] for s in result.sleeves), np.zeros(len(times)))
        portfolio = result.capital * (cash + weighted)
        lines.append(("buy & hold, the sleeves' weights", portfolio))
    return lines + [(f"buy & hold {symbol}", result.capital * g) for symbol, g in sorted(growth.items())]


def sleeve_pnl(result: BacktestResult, candles_by_symbol: Mapping[str, CandleArrays]) -> list[np.ndarray]:
    """Each sleeve's cumulative PnL on the run's time line (quote currency), open trades marked at the close.

    A closed trade's PnL (after fees) counts from the close of its exit bar; while open, a trade counts
    its price move on its quantity less its entry fee (half its fees when it has closed since).
    """
    times = np.asarray(result.time, dtype=np.int64)
    n = len(times)
    out = []
    for sleeve in result.sleeves:
        realized = np.zeros(n + 1)
        marked = np.zeros(n)
        candles = candles_by_symbol.get(sleeve.symbol)
        prices = _at(candles, times) if candles is not None else np.full(n, np.nan)
        for t in (t for t in result.trades if t.sleeve == sleeve.name):
            start = int(np.searchsorted(times, t.entry_time, side="right"))
            stop = n if t.exit_time is None else int(np.searchsorted(times, t.exit_time, side="right"))
            if t.exit_time is not None:
                realized[stop] += t.pnl
            sign = 1.0 if t.side == "long" else -1.0
            fee = t.fees if t.exit_time is None else t.fees / 2
            move = sign * t.qty * (prices[start:stop] - t.entry_price) - fee
            marked[start:stop] += np.nan_to_num(move)
        out.append(np.cumsum(realized)[:n] + marked)
    return out


def equity_figure(
    result: BacktestResult,
    candles_by_symbol: Mapping[str, CandleArrays] | None = None,
    span: tuple[int, int] | None = None,
) -> go.Figure:
    """Equity against buy-and-hold benchmarks (top) and drawdown (bottom) over the run, thinned."""
    equity = np.asarray(result.equity, dtype=np.float64)
    dd = -drawdown(equity_curve(result))[1:] * 100.0
    marks = benchmarks(result, candles_by_symbol or {})
    keep = decimate([equity, dd, *(values for _, values in marks)])
    x = _dates(np.asarray(result.time)[keep])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(
            x=x, y=_y(equity[keep]), mode="lines", name=f"equity ({result.quote})", line={"width": 2.5}
        ),
        row=1,
        col=1,
    )
    for name, values in marks:
        fig.add_trace(
            go.Scatter(x=x, y=_y(values[keep]), mode="lines", name=name, line={"width": 1, "dash": "dot"}),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=x, y=_y(dd[keep]), mode="lines", fill="tozeroy", name="drawdown (%)", line={"color": "#c62828"}
        ),
        row=2,
        col=1,
    )
    fig.update_layout(
        title="Equity against buy and hold, and drawdown",
        height=560,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text=result.quote, row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    _span(fig, span)
    return fig


def sleeves_figure(
    result: BacktestResult,
    candles_by_symbol: Mapping[str, CandleArrays] | None = None,
    span: tuple[int, int] | None = None,
) -> go.Figure:
    """Each sleeve's cumulative PnL over the run (see `sleeve_pnl`), thinned for display."""
    curves = sleeve_pnl(result, candles_by_symbol or {})
    keep = decimate(curves) if curves else np.arange(0)
    x = _dates(np.asarray(result.time)[keep])
    fig = go.Figure()
    for sleeve, pnl in zip(result.sleeves, curves, strict=True):
        fig.add_trace(go.Scatter(x=x, y=_y(pnl[keep]), mode="lines", name=f"{sleeve.name} ({sleeve.symbol})"))
    fig.update_layout(
        title=f"Sleeves: cumulative PnL ({result.quote}), open trades marked at each close",
        height=380,
        xaxis={"type": "date"},
        yaxis={"title": {"text": result.quote}},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    _span(fig, span)
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


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    table_id: str,
    *,
    numeric: bool = True,
    css: str = "",
) -> str:
    """An HTML table; with `numeric`, numeric cells are right-aligned and negative ones shown in red."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            negative = numeric and cell[:1] == "-" and cell[1:2].isdigit()
            css_cell = "n neg" if negative else "n" if numeric and cell[:1].isdigit() else ""
            cells.append(
                f'<td class="{css_cell}">{html.escape(cell)}</td>'
                if css_cell
                else f"<td>{html.escape(cell)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{css}"' if css else ""
    return (
        f'<table id="{table_id}"{klass}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a div and its drawing script (the library itself is embedded once, in the head)."""
    return pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True}
    )


def html_page(title: str, sections: Sequence[str], scripts: Sequence[str] = ()) -> str:
    """A self-contained page: the report's style and plotly embedded, the `sections` and `scripts`.

    `sections` are HTML fragments; `scripts` JavaScript run at the end of the body.
    """
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        + "\n".join(sections)
        + "".join(f"\n<script>{script}</script>" for script in scripts)
        + "\n</body>\n</html>\n"
    )


def write_report(
    result: BacktestResult,
    summary: Summary,
    candles_by_symbol: Mapping[str, CandleArrays],
    path: str | Path,
    *,
    title: str = "Backtest",
    lines: Mapping[str, Sequence[Line]] | None = None,
    setup: RunSetup | None = None,
    watch: bool = False,
) -> Path:
    """Write report.html and return its path.

    Args:
        result: the simulation's output.
        summary: its metrics.
        candles_by_symbol: candles per market symbol for the price charts and the buy-and-hold benchmarks
            (a symbol without candles still gets a chart of its entries and exits).
        path: destination file.
        title: heading of the page: the portfolio's (or strategy's) name.
        lines: price-level series to draw over each symbol's price (see `plotted_lines`).
        setup: the parameters section (see `run_setup`); left out when None.
        watch: the page reloads itself when the report is written again (`strat run --watch`): it polls a
            small script beside it, `report.version.js`, which each write changes.
    """
    symbols = [s.symbol for s in summary.symbols]
    first = int(datetime.fromisoformat(summary.start.replace("Z", "+00:00")).timestamp() * 1000)
    span = (first, int(result.time[-1])) if len(result.time) else None
    sections: list[str] = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Backtest report{" of " + html.escape(setup.spec) if setup else ""}</p>',
    ]
    if result.synthetic:
        sections.append(
            '<div class="banner" id="synthetic">SYNTHETIC DATA: these prices are generated, '
            "not real market history</div>"
        )
    sections.append(
        f'<p class="note">{html.escape(summary.start)} → {html.escape(summary.end)}, '
        f"{bar_count(summary.bars, summary.bar_ms)}, quote currency {html.escape(summary.quote)}</p>"
    )
    sections += [
        "<h2>Summary</h2>",
        html_table(("Metric", "Value"), summary_rows(summary), "summary", css="kv"),
    ]
    sections += ["<h2>Sleeves</h2>", html_table(SLEEVE_HEADER, sleeve_rows(summary), "sleeves")]
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
        html_table(("Symbol", "Entries", "Win rate", "PnL", "Contribution", "Fees"), symbol_rows, "symbols"),
    ]
    sections += [
        "<h2>Equity and drawdown</h2>",
        figure_html(equity_figure(result, candles_by_symbol, span), "equity-chart"),
        "<h2>Sleeves over time</h2>",
        figure_html(sleeves_figure(result, candles_by_symbol, span), "sleeves-chart"),
    ]
    for i, symbol in enumerate(symbols):
        trades = [t for t in result.trades if t.symbol == symbol]
        drawn = (lines or {}).get(symbol, ())
        fig = price_figure(symbol, candles_by_symbol.get(symbol), trades, drawn, span)
        sections += [
            f"<h2>{html.escape(symbol)}</h2>",
            f'<div class="price-chart">{figure_html(fig, f"price-chart-{i}")}</div>',
        ]
    sections += ["<h2>Monthly returns</h2>", figure_html(monthly_figure(summary), "monthly-chart")]
    if result.risk_events:
        times = iso_times(np.array([e.time for e in result.risk_events], dtype=np.int64))
        risk_rows = [
            (t, e.scope, e.rule, e.action, ", ".join(f"{k}={v:.6g}" for k, v in e.values))
            for e, t in zip(result.risk_events, times, strict=True)
        ]
        sections += [
            "<h2>Risk events</h2>",
            html_table(("Time", "Scope", "Rule", "Action", "Values"), risk_rows, "risk-events"),
        ]
    sections += _alerts_section(result)
    if setup is not None:
        sections += [
            "<h2>Parameters and settings</h2>",
            html_table(("Scope", "Name", "Value"), setup.settings, "parameters", numeric=False),
            "<h2>Data</h2>",
            html_table(("Candles", "Quality"), setup.data, "data", numeric=False),
        ]
    shown = result.trades[:MAX_TRADE_ROWS]
    sections.append(f"<h2>Trades ({len(result.trades):,})</h2>")
    if len(shown) < len(result.trades):
        sections.append(f'<p class="note">First {len(shown):,} trades; trades.csv lists all of them.</p>')
    sections.append(html_table(TRADE_COLUMNS, trade_cells(shown), "trades"))

    page = html_page(f"{title}: backtest report", sections, [_SIZE_JS, *([_RELOAD_JS] if watch else [])])
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    if watch:
        # Written after the page: a tab that sees the new version loads the new page.
        version = f"{time.time_ns()}"
        (target.parent / "report.version.js").write_text(
            f"window.reportVersion({version});\n", encoding="utf-8"
        )
    return target


# Reloads the page when report.version.js announces another version than the one first seen (a <script>
# element re-added every second: it works from file:// too, where fetch() does not).
_RELOAD_JS = """
(function () {
  var seen = null;
  window.reportVersion = function (v) {
    if (seen === null) { seen = v; } else if (v !== seen) { location.reload(); }
  };
  function poll() {
    var s = document.createElement("script");
    s.src = "report.version.js?t=" + Date.now();
    s.onload = s.onerror = function () { s.remove(); };
    document.body.appendChild(s);
  }
  poll();
  setInterval(poll, 1000);
})();
"""


def _alerts_section(result: BacktestResult) -> list[str]:
    """The alerts heading, with a table of the first `MAX_TRADE_ROWS` alerts (alerts.csv has all)."""
    alerts = result.alerts
    out = [f"<h2>Alerts ({len(alerts):,})</h2>"]
    if not alerts:
        return [*out, '<p class="note">No alert fired.</p>']
    shown = alerts[:MAX_TRADE_ROWS]
    if len(shown) < len(alerts):
        out.append(f'<p class="note">First {len(shown):,} alerts; alerts.csv lists all of them.</p>')
    times = iso_times(np.array([a.time for a in shown], dtype=np.int64))
    rows = [(t, a.sleeve, a.strategy, a.symbol, a.text) for a, t in zip(shown, times, strict=True)]
    return [*out, html_table(ALERT_COLUMNS, rows, "alerts", numeric=False)]


def plotted_lines(run_plan: RunPlan) -> dict[str, list[Line]]:
    """The price-level series of each sleeve's strategy, by symbol, to draw over its price.

    A named binding (or struct field) whose unit is a price and whose values lie on the price's scale
    (a moving average, a band, a channel; not an oscillator, a price difference such as MACD, or a candle
    struct's own fields); bindings that read trade state are left out (only a simulation has them).
    """
    from runtime.graph.drivers import run_batch
    from runtime.plan.inputs import market_pair

    out: dict[str, list[Line]] = {}
    for sp in run_plan.sleeves:
        kinds = _column_kinds(sp.strategy.bindings)
        chosen = [(name, node) for name, node in sp.graph.columns if kinds.get(name) == "price"]
        chosen = [(name, node) for name, node in chosen if not sp.graph.nodes[node].state]
        if not chosen:
            continue
        values = run_batch(sp.graph, sp.feeds, [node for _, node in chosen])
        close = np.asarray(sp.feeds.candles[0].close, dtype=np.float64)
        scale = float(np.nanmedian(close)) if len(close) else math.nan
        time = np.asarray(sp.feeds.candles[0].time, dtype=np.int64)
        for name, node in chosen:
            series = np.broadcast_to(np.asarray(values[node], dtype=np.float64), time.shape)
            level = float(np.nanmedian(series)) if np.any(series == series) else math.nan
            # On the price's scale: within a factor of two of the median close.
            if scale / 2 <= level <= scale * 2:
                label = name if len(run_plan.sleeves) == 1 else f"{sp.sleeve.name}: {name}"
                out.setdefault(market_pair(sp.sleeve.symbol), []).append(Line(label, time, series))
    return out


def _column_kinds(bindings: Sequence[tuple[str, Expr]]) -> dict[str, str]:
    """The unit kind of each output column of a strategy's bindings (struct fields as `name.field`).

    The fields of a candle struct (`bars(...)`) get the kind "bars": they are candles, not lines.
    """
    kinds: dict[str, str] = {}
    for name, expr in bindings:
        fields = builtins.STRUCTS.get(expr.kind)
        if expr.kind == "bars":
            kinds |= {f"{name}.{field}": "bars" for field, _ in fields or ()}
        elif fields:
            source = expr.args[0].kind if expr.args else "number"
            kinds |= {f"{name}.{field}": source if kind == "@" else kind for field, kind in fields}
        else:
            kinds[name] = expr.kind
    return kinds


def run_setup(run_plan: RunPlan, spec: str, notes: Mapping[str, str]) -> RunSetup:
    """The parameters section of a run: the account, risk rules, each sleeve's params and settings, data.

    `notes` maps each candle series' label to its validation note ('' or missing: clean).
    """
    quote = run_plan.quote
    rows: list[tuple[str, str, str]] = [(run_plan.name, "capital", f"{fmt_num(run_plan.capital)} {quote}")]
    if run_plan.rebalance_ms is not None:
        rows.append((run_plan.name, "rebalance", f"every {format_duration(run_plan.rebalance_ms)}"))
    rows += [(run_plan.name, f"risk ({r.scope})", r.text) for r in run_plan.risk]
    for sp in run_plan.sleeves:
        scope = f"{sp.sleeve.name} ({sp.strategy.name})"
        rows += [
            (scope, "market", f"{sp.sleeve.symbol} {sp.sleeve.timeframe}"),
            (scope, "weight", fmt_pct(sp.sleeve.weight)),
            (scope, "warm-up", f"{sp.graph.warmup:,} bars of {sp.sleeve.timeframe}"),
        ]
        overridden = {name for name, _ in sp.sleeve.overrides}
        rows += [
            (
                scope,
                f"param {p.name}",
                format_value(sp.values[p.name], p.kind) + (" (set)" if p.name in overridden else ""),
            )
            for p in sp.strategy.params
        ]
        settings = (*sp.strategy.settings, *(("execution." + k, v) for k, v in sp.strategy.execution))
        rows += [(scope, key, render_expr(value)) for key, value in settings]
    data: list[tuple[str, str]] = []
    for sp in run_plan.sleeves:
        for candles in sp.feeds.candles:
            label = str(getattr(candles, "label", ""))
            if label and label not in (d[0] for d in data):
                data.append((label, notes.get(label) or "clean"))
    return RunSetup(spec, tuple(rows), tuple(data))
