"""The self-contained report.html of an optimisation (plotly embedded, as the backtest report).

Sections: the best member and the overfitting statistics; a heatmap of the objective over the two params
with the most effect (the largest spread of the objective's mean between their values), each cell the
best member of that pair of values; a parallel-coordinates plot of every member; the top members; and,
with walk-forward, the folds (in-sample against out-of-sample objective) and the stitched out-of-sample
equity against buying and holding.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from runtime.backtest.metrics import iso_time, iso_times
from runtime.backtest.output import fmt_num, fmt_pct
from runtime.backtest.report import figure_html, html_page, html_table
from runtime.optimize.members import format_number, member_text
from runtime.optimize.runner import Optimization

# Members listed in the report's table.
TOP_ROWS = 50


def effects(result: Optimization) -> list[tuple[float, str]]:
    """Each searched param's effect on the objective, largest first, as (effect, name).

    The effect is the spread of the objective's mean between the param's values.
    """
    found = []
    for d in result.space.domains:
        groups: dict[float, list[float]] = defaultdict(list)
        for o in result.outcomes:
            value = result.objective.value(o)
            if value is not None:
                groups[dict(o.params)[d.name]].append(value)
        means = [float(np.mean(v)) for v in groups.values()]
        found.append((max(means) - min(means) if len(means) > 1 else 0.0, d.name))
    return sorted(found, key=lambda e: -e[0])


def heatmap(result: Optimization) -> go.Figure | None:
    """The objective over the two params of most effect, each cell the best member there (None: < 2)."""
    ranked = effects(result)
    if len(ranked) < 2:
        return None
    x_name, y_name = ranked[0][1], ranked[1][1]
    cells: dict[tuple[float, float], float] = {}
    for o in result.outcomes:
        value = result.objective.value(o)
        if value is None:
            continue
        key = (dict(o.params)[x_name], dict(o.params)[y_name])
        kept = cells.get(key)
        if kept is None or (value > kept if result.objective.maximize else value < kept):
            cells[key] = value
    xs = sorted({k[0] for k in cells})
    ys = sorted({k[1] for k in cells})
    z = [[cells.get((x, y)) for x in xs] for y in ys]
    fig = go.Figure(
        go.Heatmap(x=xs, y=ys, z=z, colorscale="Viridis", colorbar={"title": result.objective.metric})
    )
    fig.update_layout(xaxis_title=x_name, yaxis_title=y_name, height=480, margin={"t": 30})
    return fig


def parallel(result: Optimization) -> go.Figure:
    """Every member that ran as a line through its params and its objective."""
    ran = [o for o in result.outcomes if result.objective.value(o) is not None]
    values = [result.objective.value(o) for o in ran]
    dims = [{"label": d.name, "values": [dict(o.params)[d.name] for o in ran]} for d in result.space.domains]
    dims.append({"label": result.objective.metric, "values": values})
    fig = go.Figure(
        go.Parcoords(line={"color": values, "colorscale": "Viridis", "showscale": True}, dimensions=dims)
    )
    fig.update_layout(height=420, margin={"t": 50})
    return fig


def walk_figures(result: Optimization) -> tuple[go.Figure, go.Figure] | None:
    """The folds' in- and out-of-sample objective, and the stitched out-of-sample equity against holding."""
    walk = result.walk
    if walk is None:
        return None
    labels = [f"{k} ({iso_time(f.fold.train_end)[:10]})" for k, f in enumerate(walk.folds, 1)]
    folds = go.Figure()
    for name, side in (("in sample", "train"), ("out of sample", "test")):
        ys = [
            None if getattr(f, side) is None else result.objective.value(getattr(f, side)) for f in walk.folds
        ]
        folds.add_trace(go.Bar(x=labels, y=ys, name=name))
    folds.update_layout(yaxis_title=result.objective.metric, height=380, margin={"t": 30}, barmode="group")
    equity = go.Figure()
    for name, curve in (("out of sample (stitched)", walk.oos), ("buy and hold", walk.hold)):
        equity.add_trace(go.Scatter(x=iso_times(curve.time), y=curve.equity, name=name, mode="lines"))
    equity.update_layout(yaxis_title="equity", height=420, margin={"t": 30})
    return folds, equity


def write_report(result: Optimization, path: Path, spec: str) -> Path:
    """Write report.html and return its path."""
    objective = result.objective
    title = f"{result.block.name}: optimisation of {result.strategy.name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(spec)} · {html.escape(str(result.method))} · '
        f"{html.escape(str(objective))} · {sum(result.passed):,} of {len(result.outcomes):,} members "
        "meet the requirement</p>",
    ]
    rows = []
    if result.best is not None:
        rows.append(("Best member", member_text(result.best.params)))
        rows.append((objective.metric, fmt_num(objective.value(result.best), 4)))
    fit = result.overfit
    if fit is not None:
        rows += [
            ("Deflated Sharpe ratio", fmt_num(fit.dsr, 3)),
            ("Per-bar Sharpe (best / expected by chance)", f"{fit.sharpe:.4f} / {fit.expected_max:.4f}"),
            ("Probability of backtest overfitting", fmt_num(fit.pbo, 3)),
        ]
    sections += ["<h2>Best member</h2>", html_table(("", "Value"), rows, "best", numeric=False, css="kv")]
    fig = heatmap(result)
    if fig is not None:
        sections += [
            f"<h2>{html.escape(objective.metric)} over the two params of most effect</h2>",
            figure_html(fig, "heatmap"),
        ]
    if result.space.domains:
        sections += ["<h2>Members</h2>", figure_html(parallel(result), "parallel")]
    order = sorted(range(len(result.outcomes)), key=lambda i: objective.key(result.outcomes[i]))[:TOP_ROWS]
    names = result.space.names
    top = [
        [
            *(format_number(v) for _, v in result.outcomes[i].params),
            fmt_num(objective.value(result.outcomes[i]), 4),
            fmt_pct(result.outcomes[i].metric("total_return")),
            fmt_pct(result.outcomes[i].metric("max_drawdown")),
            fmt_num(result.outcomes[i].metric("entries"), 0),
            "yes" if result.passed[i] else "no",
        ]
        for i in order
    ]
    header = (*names, objective.metric, "Return", "Max DD", "Trades", "Passes")
    sections += [f"<h2>Top {len(top)} members</h2>", html_table(header, top, "top")]
    figures = walk_figures(result)
    if figures is not None and result.walk is not None:
        oos = result.walk.oos_stats
        sections += [
            f"<h2>Walk-forward ({html.escape(result.walk.scheme)})</h2>",
            figure_html(figures[0], "folds"),
            f'<p class="note">out of sample: return {fmt_pct(oos.total_return)}, '
            f"Sharpe {fmt_num(oos.sharpe)}, max drawdown {fmt_pct(oos.max_drawdown)}; "
            "param stability (spread over the domain): "
            + html.escape(", ".join(f"{s.name} {s.spread:.2f}" for s in result.walk.stability))
            + "</p>",
            "<h2>Out-of-sample equity</h2>",
            figure_html(figures[1], "oos-equity"),
        ]
    path.write_text(html_page(title, sections), encoding="utf-8")
    return path
