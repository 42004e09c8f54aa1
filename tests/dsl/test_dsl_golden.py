"""Golden tests of the typed IR: every LANGUAGE.md example, library file and demo spec.

The IR is rendered compactly (one line per param, binding, rule, setting, sleeve and risk rule, with every
expression as an s-expression of raw base-unit values, units, qualifiers and clocks, plus the content
digests) and compared with tests/dsl/golden/<name>.txt. `STRAT_UPDATE_GOLDEN=1` rewrites the files;
review the diff by eye (2.5% must read 0.025, durations ms, dates UTC ms).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dsl_helpers import ROOT

from dsl.checker import check_file, check_source
from dsl.ir import Expr, Program

# The folder of golden renderings.
GOLDEN = Path(__file__).parent / "golden"
# Every file whose IR is pinned: the language examples, the standard library and the demo specs.
FILES = sorted(
    [
        *(ROOT / "tests" / "dsl" / "examples").glob("*.strat"),
        *(ROOT / "library").glob("*.strat"),
        *(ROOT / "specs").glob("*.strat"),
    ]
)
# The qualifier names of the IR's integer qualifiers.
QUALS = ("const", "param", "series")


def sexpr(node: Expr | None) -> str:
    """An expression as `(op value args...):kind/qual@clock` with raw values in base units."""
    if node is None:
        return "-"
    tags = f":{node.kind}{'/int' if node.integer else ''}/{QUALS[node.qual]}"
    tags += f"@{node.clock}" if node.clock else ""
    tags += f"@{node.symbol}" if node.symbol and node.op in ("source", "bars") else ""
    if node.op == "const":
        return f"{node.value!r}{tags}"
    if node.op in ("param", "source", "state", "metric"):
        return f"{node.op}:{node.value}{tags}"
    head = node.op if node.value is None else f"{node.op} {node.value}"
    return f"({' '.join([head, *(sexpr(a) for a in node.args)])}){tags}"


def render(program: Program) -> str:
    """The whole program, one fact per line."""
    out = [f"program {program.file} version={program.version}"]
    for st in program.strategies:
        out.append(
            f"strategy {st.name} file={st.file} symbol={st.symbol} timeframe={st.timeframe} "
            f"timeframes={','.join(st.timeframes)} warmup={st.warmup} warmup_sweep={st.warmup_sweep} "
            f"trade_state={st.trade_state} digest={st.digest}"
        )
        for p in st.params:
            out.append(
                f"  param {p.name} kind={p.kind} integer={p.integer} default={p.default!r} "
                f"low={p.low!r} high={p.high!r} step={p.step!r} choices={p.choices!r}"
            )
        out += [f"  constraint {sexpr(c)}" for c in st.constraints]
        out += [f"  binding {name} = {sexpr(e)} #{e.digest}" for name, e in st.bindings]
        out += [f"  rule {r.kind} {r.side} when {sexpr(r.cond)} #{r.cond.digest}" for r in st.rules]
        out += [f"  alert {a.message!r} when {sexpr(a.cond)}" for a in st.alerts]
        out += [f"  setting {k} = {sexpr(v)}" for k, v in st.settings]
        out += [f"  execution {k} = {sexpr(v)}" for k, v in st.execution]
    for pf in program.portfolios:
        out.append(
            f"portfolio {pf.name} file={pf.file} capital={pf.capital!r} quote={pf.quote} "
            f"rebalance_ms={pf.rebalance_ms}"
        )
        for sl in pf.sleeves:
            out.append(
                f"  sleeve {sl.name} = {sl.strategy} symbol={sl.symbol} timeframe={sl.timeframe} "
                f"weight={sl.weight!r} overrides={list(sl.overrides)}"
            )
        out += [_risk(r) for r in pf.risk]
    for rp in program.risk_profiles:
        out.append(f"risk_profile {rp.name}")
        out += [_risk(r) for r in rp.rules]
    for op in program.optimizes:
        out.append(f"optimize {op.name} target={op.target} start_ms={op.start_ms} end_ms={op.end_ms}")
        for key in ("method", "objective", "require", "walk_forward"):
            out.append(f"  {key} = {sexpr(getattr(op, key))}")
    return "\n".join(out) + "\n"


def _risk(rule: object) -> str:
    """One risk rule of a portfolio or profile."""
    r = rule  # a RiskRuleIR
    return (
        f"  risk {r.scope} {r.action} when={sexpr(r.cond)} duration_ms={r.duration_ms} "  # type: ignore[attr-defined]
        f"metric={r.metric} limit={r.limit!r} text={r.text!r}"  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_ir_matches_golden(path: Path, at_root: Path) -> None:
    """The file checks clean and its IR equals the reviewed golden rendering."""
    result = check_file(path.relative_to(ROOT))
    assert [d.render(None) for d in result.diagnostics] == []
    assert result.program is not None
    text = render(result.program)
    golden = GOLDEN / f"{path.parent.name}__{path.stem}.txt"
    if os.environ.get("STRAT_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_ir_is_deterministic_and_digests_are_content_hashes(at_root: Path) -> None:
    """Checking twice gives equal IR; equal sub-expressions share a digest, different ones do not."""
    first = check_file("tests/dsl/examples/sma_rsi.strat").program
    second = check_file("tests/dsl/examples/sma_rsi.strat").program
    assert first is not None and second is not None
    assert first.model_dump_json() == second.model_dump_json()
    bindings = dict(first.strategies[0].bindings)
    # `slow_ma` is used inside `uptrend`: the nested node is the same content, hence the same digest.
    assert bindings["uptrend"].args[0].args[1].digest == bindings["slow_ma"].digest
    assert bindings["fast_ma"].digest != bindings["slow_ma"].digest


def test_a_changed_default_changes_only_the_touched_digests() -> None:
    """Editing one param's default changes the strategy digest, not the bindings that do not read it."""
    text = (ROOT / "library" / "ma_cross.strat").read_text(encoding="utf-8")
    a = check_source(text, str(ROOT / "library" / "ma_cross.strat")).program
    b = check_source(text.replace("param fast = 10", "param fast = 15"), str(ROOT / "library" / "x.strat"))
    assert a is not None and b.program is not None
    sa, sb = a.strategies[0], b.program.strategies[0]
    assert sa.digest != sb.digest
    # Params are nodes by name: the graph's shape is unchanged, so every binding digest is unchanged.
    assert dict(sa.bindings)["slow_ma"].digest == dict(sb.bindings)["slow_ma"].digest
    assert dict(sa.bindings)["fast_ma"].digest == dict(sb.bindings)["fast_ma"].digest
