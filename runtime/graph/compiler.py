"""The graph compiler: a checked strategy (template + overrides) → a DAG of operator nodes on clocks.

Identical sub-expressions become one node (hash-consing on the node's content), params are substituted
by their values and constant sub-expressions folded, every node runs on a clock (a market and timeframe),
and a node reading a slower clock reads it through an `align` node: the last bar of the slower clock
whose period has closed (LANGUAGE.md §3). Nodes that read trade state (`position_size`, ...) are marked:
they can only be evaluated inside the simulation loop.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from dsl import builtins as b
from dsl.checker import warmup
from dsl.ir import Expr, StrategyIR, Value, evaluate
from dsl.units import TIMEFRAMES
from runtime.errors import StratError
from runtime.ops.registry import OPERATORS

# Price sources derived from the four prices, as weighted sums (computed as graph nodes, so the batch and
# streaming drivers share their arithmetic).
_DERIVED = {
    "hl2": ("high", "low"),
    "hlc3": ("high", "low", "close"),
    "ohlc4": ("open", "high", "low", "close"),
}
# Clock index of nodes that belong to no clock (constants).
ANY_CLOCK = -1


class CompileError(StratError):
    """A strategy the checker accepted but the runtime cannot build (a bug, or an unsupported form)."""


@dataclass(frozen=True)
class Clock:
    """A bar stream: a market and a timeframe."""

    symbol: str  # "BINANCE:BTC/USDT"
    timeframe: str  # "1h"

    @property
    def ms(self) -> int:
        """Bar length in ms."""
        return TIMEFRAMES[self.timeframe]


@dataclass(frozen=True)
class Node:
    """One node of the graph; `inputs` are node ids, always smaller than the node's own id."""

    id: int  # position in Graph.nodes (topological order)
    kind: str  # source, const, state, op, out, binary, unary, if, align
    name: str  # source field, operator name, binary/unary operator, state name
    inputs: tuple[int, ...]  # input node ids
    clock: int  # index into Graph.clocks, or ANY_CLOCK for constants
    params: tuple[float, ...] = ()  # fixed parameters of an operator, in the operator's order
    value: Value = None  # a constant's value
    index: int = 0  # output index picked by an `out` node
    outputs: int = 1  # number of outputs of an `op` node
    state: bool = False  # depends on trade state (evaluated inside the simulation loop)


@dataclass
class Graph:
    """A compiled strategy instance: nodes in topological order, the clocks they run on, named outputs."""

    clocks: list[Clock]  # clocks[0] is the base clock
    nodes: list[Node] = field(default_factory=list)  # all nodes, inputs before users
    columns: list[tuple[str, int]] = field(default_factory=list)  # binding columns ("bb.upper") → base node
    rules: dict[str, int] = field(default_factory=dict)  # "entry_long", "exit_short", ... → bool node id
    series_settings: dict[str, int] = field(default_factory=dict)  # stop_loss etc. when they are series
    alerts: list[int] = field(default_factory=list)  # bool node of each `alert`, in StrategyIR.alerts order
    warmup: int = 0  # base bars before the first decision
    _keys: dict[tuple[object, ...], int] = field(default_factory=dict)  # content key → node id
    # `node_hashes` of the first nodes, as computed so far (a cache: not part of the graph's value)
    _hashes: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def base(self) -> Clock:
        """The strategy's base clock."""
        return self.clocks[0]

    def add(self, kind: str, name: str, inputs: tuple[int, ...], clock: int, **kw: object) -> int:
        """Add a node unless an identical one exists; return its id."""
        key = (kind, name, inputs, clock, kw.get("params", ()), repr(kw.get("value")), kw.get("index", 0))
        found = self._keys.get(key)
        if found is not None:
            return found
        state = any(self.nodes[i].state for i in inputs) or kind == "state"
        node = Node(len(self.nodes), kind, name, inputs, clock, state=state, **kw)  # type: ignore[arg-type]
        self.nodes.append(node)
        self._keys[key] = node.id
        return node.id

    def node_hashes(self) -> list[str]:
        """A content hash per node: what it computes from which bars, whatever its id.

        Two graphs' nodes with one hash compute the same values from the same bars (their operator,
        parameters, clock and inputs, recursively, are the same): a reloaded spec's unchanged nodes.
        """
        # Nodes are only ever appended: the hashes of the first ones stay valid, the new ones are added.
        hashes = self._hashes
        for node in self.nodes[len(hashes) :]:
            clock = (
                "any"
                if node.clock == ANY_CLOCK
                else f"{self.clocks[node.clock].symbol} {self.clocks[node.clock].timeframe}"
            )
            content = (
                node.kind, node.name, node.params, repr(node.value), node.index, clock,
                tuple(hashes[i] for i in node.inputs),
            )  # fmt: skip
            hashes.append(hashlib.sha256(repr(content).encode()).hexdigest()[:32])
        return list(hashes)

    def clock_of(self, clock: Clock) -> int:
        """Index of a clock, registering it on first use."""
        if clock not in self.clocks:
            self.clocks.append(clock)
        return self.clocks.index(clock)

    def outputs_of(self, node_id: int) -> tuple[str, ...]:
        """Field names of a struct-valued node (an operator with several outputs, or a candle struct)."""
        node = self.nodes[node_id]
        if node.kind == "op":
            return OPERATORS[node.name].outputs
        return ()

    @property
    def needs_state(self) -> bool:
        """Whether any decision or alert reads trade state (the batch driver cannot evaluate those nodes)."""
        decided = [*self.rules.values(), *self.series_settings.values(), *self.alerts]
        return any(self.nodes[i].state for i in decided)


@dataclass
class _Bars:
    """A candle struct in a compiled expression: its clock (fields become source nodes on demand)."""

    clock: int  # clock index


def compile_strategy(
    strategy: StrategyIR,
    overrides: Mapping[str, float] | None = None,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> Graph:
    """Build the graph of a strategy template with param overrides (and sleeve symbol/timeframe)."""
    values = {p.name: p.default for p in strategy.params} | dict(overrides or {})
    base = Clock(symbol or strategy.symbol, timeframe or strategy.timeframe)
    graph = Graph(clocks=[base])
    builder = _Builder(graph, values)
    for name, expr in strategy.bindings:
        graph.columns.extend(builder.columns(name, expr))
    # Rules of the same kind and side are alternatives: OR them into one decision node.
    for rule in strategy.rules:
        key = f"{rule.kind}_{rule.side}"
        node = builder.on_base(builder.build(rule.cond))
        graph.rules[key] = node if key not in graph.rules else builder.binary("or", graph.rules[key], node)
    for name, expr in strategy.settings:
        if expr.qual == 2:
            graph.series_settings[name] = builder.on_base(builder.build(expr))
    # Alerts are built last, so the decisions' node ids do not depend on them; they never change warm-up.
    graph.alerts = [builder.on_base(builder.build(alert.cond)) for alert in strategy.alerts]
    roots = [r.cond for r in strategy.rules] + [e for _, e in strategy.settings if e.qual == 2]
    graph.warmup = max((warmup(r, values, base.ms) for r in roots), default=0)
    return graph


class _Builder:
    """Turns IR expressions into graph nodes for one strategy instance."""

    def __init__(self, graph: Graph, values: Mapping[str, float]) -> None:
        """Build into `graph` with params set to `values`."""
        self.graph = graph  # the graph being built
        self.values = values  # param values after overrides
        self.memo: dict[str, int | _Bars] = {}  # IR digest → node id (or candle struct)

    # ---------------------------------------------------------------- helpers

    def const(self, value: Value) -> int:
        """A constant node (bools as 1.0/0.0, na as NaN)."""
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        number = float("nan") if value is None else value
        return self.graph.add("const", "", (), ANY_CLOCK, value=number)

    def source(self, name: str, clock: int) -> int:
        """A price or volume field of a clock's bars (hl2/hlc3/ohlc4 derived from the prices)."""
        if name in _DERIVED:
            parts = [self.source(p, clock) for p in _DERIVED[name]]
            total = parts[0]
            for part in parts[1:]:
                total = self.binary("+", total, part)
            return self.binary("/", total, self.const(float(len(parts))))
        return self.graph.add("source", name, (), clock)

    def clock_for(self, inputs: list[int]) -> int:
        """The clock a node over `inputs` runs on: their shared clock, else the base clock."""
        clocks = {self.graph.nodes[i].clock for i in inputs} - {ANY_CLOCK}
        if not clocks:
            return ANY_CLOCK
        return clocks.pop() if len(clocks) == 1 else 0

    def on(self, node: int, clock: int) -> int:
        """`node` seen from `clock`: itself, or aligned from its slower clock."""
        own = self.graph.nodes[node].clock
        if own in (clock, ANY_CLOCK):
            return node
        return self.graph.add("align", "", (node,), clock)

    def on_base(self, node: int) -> int:
        """`node` seen from the base clock."""
        return self.on(node, 0)

    def node(self, kind: str, name: str, inputs: list[int], **kw: object) -> int:
        """A node over `inputs` on their common clock (aligning them onto the base clock when they differ)."""
        clock = self.clock_for(inputs)
        if clock == ANY_CLOCK:
            clock = 0  # a computation over constants only still runs once per base bar
        aligned = tuple(self.on(i, clock) for i in inputs)
        return self.graph.add(kind, name, aligned, clock, **kw)

    def binary(self, op: str, left: int, right: int) -> int:
        """A binary node, folded when both sides are constants."""
        a, z = self.graph.nodes[left], self.graph.nodes[right]
        if a.kind == "const" and z.kind == "const":
            folded = evaluate(
                Expr.make(
                    "binary",
                    op,
                    (Expr.make("const", a.value), Expr.make("const", z.value)),
                ),
                {},
            )
            return self.const(folded)
        return self.node("binary", op, [left, right])

    # ---------------------------------------------------------------- expressions

    def columns(self, name: str, expr: Expr) -> list[tuple[str, int]]:
        """A binding's output columns on the base clock: one, or one per field of a struct."""
        built = self.build_any(expr)
        if isinstance(built, _Bars):
            fields = [f for f, _ in b.SOURCES.items()]
            return [(f"{name}.{f}", self.on_base(self.source(f, built.clock))) for f in fields]
        node = self.graph.nodes[built]
        if node.kind == "op" and node.outputs > 1:
            return [
                (f"{name}.{f}", self.on_base(self.graph.add("out", f, (built,), node.clock, index=i)))
                for i, f in enumerate(self.graph.outputs_of(built))
            ]
        return [(name, self.on_base(built))]

    def build(self, expr: Expr) -> int:
        """A node for a value expression (a struct here is an error the checker already excludes)."""
        built = self.build_any(expr)
        if isinstance(built, _Bars):
            raise CompileError("a candle struct is not a value")
        return built

    def build_any(self, expr: Expr) -> int | _Bars:
        """A node (or candle struct) for any expression, memoized by IR digest."""
        found = self.memo.get(expr.digest)
        if found is None:
            found = self._build(expr)
            self.memo[expr.digest] = found
        return found

    def _build(self, expr: Expr) -> int | _Bars:
        """Dispatch on the IR node's op."""
        op = expr.op
        if op == "const":
            return self.const(expr.value)
        if op == "param":
            return self.const(self.values[str(expr.value)])
        if op == "bars":
            return _Bars(self._clock(expr))
        if op == "source":
            return self.source(str(expr.value), self._clock(expr))
        if op == "state":
            return self.graph.add("state", str(expr.value), (), 0)
        if op == "call":
            return self._call(expr)
        if op == "field":
            parent = self.build(expr.args[0])
            index = self.graph.outputs_of(parent).index(str(expr.value))
            return self.graph.add(
                "out", str(expr.value), (parent,), self.graph.nodes[parent].clock, index=index
            )
        if op == "offset":
            n = self._fixed(expr.args[1], "offset")
            return self._op("offset", [self.build(expr.args[0])], (n,))
        if op == "cross":
            left, right = self.build(expr.args[0]), self.build(expr.args[1])
            return self._op(f"crosses_{expr.value}", [left, right], ())
        if op == "binary":
            return self.binary(str(expr.value), self.build(expr.args[0]), self.build(expr.args[1]))
        if op == "unary":
            inner = self.build(expr.args[0])
            if self.graph.nodes[inner].kind == "const":
                return self.const(
                    evaluate(
                        Expr.make("unary", expr.value, (Expr.make("const", self.graph.nodes[inner].value),)),
                        {},
                    )
                )
            return self.node("unary", str(expr.value), [inner])
        if op == "if":
            return self.node("if", "", [self.build(a) for a in expr.args])
        raise CompileError(f"cannot compile IR node '{op}'")

    def _clock(self, expr: Expr) -> int:
        """The clock of a source or candle struct: its market (own by default) and timeframe."""
        base = self.graph.base
        return self.graph.clock_of(Clock(expr.symbol or base.symbol, expr.clock or base.timeframe))

    def _fixed(self, expr: Expr, what: str) -> float:
        """A fixed value (param or const) as a number."""
        value = evaluate(expr, self.values)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise CompileError(f"{what} must be a fixed, finite number; got {value}")
        return float(value)

    def _op(self, name: str, inputs: list[int], params: tuple[float, ...]) -> int:
        """An operator node (constant series inputs become constant nodes on the inputs' clock)."""
        return self.node("op", name, inputs, params=params, outputs=len(OPERATORS[name].outputs))

    def _call(self, expr: Expr) -> int:
        """A built-in series function: series inputs by name, fixed params evaluated, implicit bars.

        The checker gives every argument of the signature (defaults filled in), in the signature's order.
        """
        name = str(expr.value)
        sig = b.SERIES_FUNCTIONS[name]
        by_name = {arg.name: value for arg, value in zip(sig.args, expr.args, strict=True)}
        if sig.implicit:
            inputs = [self.source(field_name, 0) for field_name in sig.implicit]
        else:
            inputs = [self.build(by_name[arg.name]) for arg in sig.series_args]
        params = tuple(self._fixed(by_name[arg.name], f"{arg.name} of {name}()") for arg in sig.fixed_args)
        return self._op(name, inputs, params)
