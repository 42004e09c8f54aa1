"""Readable text of checked programs: the `strat explain` summary and IR expressions."""

from __future__ import annotations

from dsl.ir import (
    Expr,
    PortfolioIR,
    Program,
)
from dsl.units import format_duration


def format_value(value: float, kind: str) -> str:
    """A value in base units shown as it would be written (0.025 percent → 2.5%)."""
    if kind == "percent":
        return f"{value * 100:g}%"
    if kind == "bps":
        return f"{value * 10_000:g}bps"
    if kind == "duration":
        return format_duration(int(value))
    if kind == "R":
        return f"{value:g}R"
    return f"{value:g}"


def explain(program: Program) -> str:
    """A per-strategy summary (params, settings, alerts, timeframes, warm-up in bars), then each portfolio.

    A portfolio lists its capital, rebalancing, risk rules and each sleeve with its strategy, market,
    clock, weight and the param values it overrides (written as in the spec).
    """
    out = []
    for st in program.strategies:
        out.append(f"strategy {st.name}  ({st.file})")
        out.append(f"  symbol     {st.symbol}")
        out.append(f"  timeframes {', '.join(st.timeframes)}  (base {st.timeframe})")
        sweep = f", {st.warmup_sweep} at the domain maxima" if st.warmup_sweep != st.warmup else ""
        out.append(f"  warm-up    {st.warmup} bars{sweep}")
        for p in st.params:
            domain = ""
            if p.low is not None:
                domain = f" in {format_value(p.low, p.kind)}..{format_value(p.high or 0, p.kind)}"
                domain += f" step {format_value(p.step, p.kind)}" if p.step is not None else ""
            elif p.choices:
                domain = " in {" + ", ".join(format_value(c, p.kind) for c in p.choices) + "}"
            out.append(f"  param      {p.name} = {format_value(p.default, p.kind)}{domain}")
        for key, value in (*st.settings, *(("execution." + k, v) for k, v in st.execution)):
            out.append(f"  setting    {key}: {render_expr(value)}")
        out += [f'  alert      "{a.message}" when {render_expr(a.cond)}' for a in st.alerts]
    for pf in program.portfolios:
        out += _explain_portfolio(program, pf)
    return "\n".join(out)


def _explain_portfolio(program: Program, pf: PortfolioIR) -> list[str]:
    """The lines of one portfolio in `explain`: account, sleeves with their overrides, risk rules."""
    out = [
        f"portfolio {pf.name}  ({pf.file})",
        f"  capital    {pf.capital:,g}{' ' + pf.quote if pf.quote else ''}",
    ]
    if pf.rebalance_ms is not None:
        out.append(f"  rebalance  every {format_duration(pf.rebalance_ms)}")
    for sl in pf.sleeves:
        kinds = {p.name: p.kind for p in program.strategy(sl.strategy).params}
        overrides = ", ".join(
            f"{name}={format_value(v, kinds.get(name, 'number'))}" for name, v in sl.overrides
        )
        out.append(
            f"  sleeve     {sl.name} = {sl.strategy} on {sl.symbol} {sl.timeframe}, weight "
            f"{format_value(sl.weight, 'percent')}; "
            + (f"overrides {overrides}" if overrides else "no overrides")
        )
    out += [f"  risk       {'per sleeve: ' if r.scope == 'sleeve' else ''}{r.text}" for r in pf.risk]
    return out


def render_expr(node: Expr) -> str:
    """A compact, readable rendering of an IR expression."""
    if node.op == "const":
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return (
                format_value(float(node.value), node.kind)
                if node.kind != "money"
                else f"{node.value:g} {node.symbol}"
            )
        return str(node.value).lower() if isinstance(node.value, bool) else str(node.value)
    if node.op in ("param", "source", "state", "metric"):
        prefix = f"{node.symbol or ''}@{node.clock}." if node.clock or node.symbol else ""
        return prefix + str(node.value)
    if node.op == "call":
        return f"{node.value}({', '.join(render_expr(a) for a in node.args)})"
    if node.op == "field":
        return f"{render_expr(node.args[0])}.{node.value}"
    if node.op == "offset":
        return f"{render_expr(node.args[0])}[{render_expr(node.args[1])}]"
    if node.op == "binary":
        return f"({render_expr(node.args[0])} {node.value} {render_expr(node.args[1])})"
    if node.op == "unary":
        return (
            f"{node.value} {render_expr(node.args[0])}"
            if node.value == "not"
            else f"-{render_expr(node.args[0])}"
        )
    if node.op == "cross":
        return f"({render_expr(node.args[0])} crosses {node.value} {render_expr(node.args[1])})"
    if node.op == "if":
        a, c, z = (render_expr(x) for x in node.args)
        return f"({c} if {a} else {z})"
    if node.op == "bars":
        return f"bars({node.symbol + ', ' if node.symbol else ''}{node.clock or 'base'})"
    return node.op
