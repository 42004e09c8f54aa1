"""The two drivers of a compiled graph.

Batch evaluates whole arrays (backtests); streaming takes one closed bar at a time (live trading and
replay). They share every elementwise rule below and the operators' twin kernels,
so they produce the same values (within 1e-9 relative) and the same booleans.

Elementwise rules: booleans are 1.0/0.0; a comparison with na is false; `and`/`or`/`not`/`if` treat na
as false; arithmetic propagates na; division by zero is na.
"""

from __future__ import annotations

import math
import operator as pyop
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.graph.compiler import ANY_CLOCK, Clock, CompileError, Graph
from runtime.graph.timeline import points
from runtime.ops.registry import OPERATORS

# A float64 array.
Array = npt.NDArray[np.float64]
# Scalar comparison operators.
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": pyop.lt,
    "<=": pyop.le,
    ">": pyop.gt,
    ">=": pyop.ge,
    "==": pyop.eq,
    "!=": pyop.ne,
}
# Fields of a bar as the streaming driver takes it, in candle column order.
BAR_FIELDS = ("open", "high", "low", "close", "volume")
# Node kinds whose values `SharedValues` keeps: the costly ones (indicators and alignments).
_SHAREABLE = ("op", "align")
# Array comparison operators.
_COMPARE_NP: dict[str, Callable[[Any, Any], Any]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def truth(x: float) -> bool:
    """Whether a scalar condition holds: non-zero and not na."""
    return x == x and x != 0.0


def truth_np(x: Any) -> Any:
    """Where an array condition holds."""
    return (x == x) & (x != 0.0)


def _scalar_binary(op: str) -> Callable[[float, float], float]:
    """The scalar function of a binary operator."""
    if op in _COMPARE:
        compare = _COMPARE[op]
        return lambda a, z: 1.0 if compare(a, z) else 0.0
    if op == "and":
        return lambda a, z: 1.0 if truth(a) and truth(z) else 0.0
    if op == "or":
        return lambda a, z: 1.0 if truth(a) or truth(z) else 0.0
    if op == "/":
        return lambda a, z: a / z if z != 0.0 else math.nan
    return {"+": pyop.add, "-": pyop.sub, "*": pyop.mul}[op]


def _array_binary(op: str, a: Any, z: Any) -> Array:
    """The array result of a binary operator (scalars broadcast)."""
    with np.errstate(all="ignore"):
        if op in _COMPARE_NP:
            return np.asarray(_COMPARE_NP[op](a, z), dtype=np.float64)
        if op == "and":
            return np.asarray(truth_np(a) & truth_np(z), dtype=np.float64)
        if op == "or":
            return np.asarray(truth_np(a) | truth_np(z), dtype=np.float64)
        if op == "/":
            return np.where(np.asarray(z) != 0.0, np.divide(a, z), np.nan)
        return np.asarray({"+": np.add, "-": np.subtract, "*": np.multiply}[op](a, z), dtype=np.float64)


class Feeds:
    """The candles of every clock of a graph, as arrays, with their bar close times."""

    def __init__(self, graph: Graph, candles: Mapping[Clock, Any]) -> None:
        """Take one candle set (with time/open/high/low/close/volume arrays) per clock of the graph."""
        missing = [c for c in graph.clocks if c not in candles]
        if missing:
            raise CompileError(f"no candles for {', '.join(f'{c.symbol} {c.timeframe}' for c in missing)}")
        self.candles = [candles[c] for c in graph.clocks]  # per clock index
        # Close time of each bar: its open time plus the clock's bar length.
        self.closes = [
            np.asarray(c.time, dtype=np.int64) + clock.ms
            for c, clock in zip(self.candles, graph.clocks, strict=True)
        ]
        self.bar_ms = [clock.ms for clock in graph.clocks]  # bar length of each clock
        # The BAR_FIELDS columns of each clock as float64 arrays (the candles' own arrays when they are).
        self.columns = [
            [np.asarray(getattr(c, f), dtype=np.float64) for f in BAR_FIELDS] for c in self.candles
        ]

    def length(self, clock: int) -> int:
        """Number of bars of a clock."""
        return len(self.closes[clock])

    def ohlcv(self, clock: int, i: int) -> tuple[float, float, float, float, float]:
        """Bar i of a clock: open, high, low, close, volume (the order of BAR_FIELDS)."""
        o, h, low, c, v = self.columns[clock]
        return float(o[i]), float(h[i]), float(low[i]), float(c[i]), float(v[i])

    def bar(self, clock: int, i: int) -> dict[str, float]:
        """Bar i of a clock as the streaming driver takes it: {"open": ..., ..., "volume": ...}."""
        return {f: float(col[i]) for f, col in zip(BAR_FIELDS, self.columns[clock], strict=True)}


class SharedValues:
    """Node values shared by many graphs evaluated over one set of feeds (a sweep's members), by content.

    A node is known by its content hash (`Graph.node_hashes`): two members' `sma(close, 20)` on one clock
    are one entry, computed once. Only nodes two graphs announced are kept (`expect`: a node of one member
    alone, such as its own crossing, is not worth the memory; one announced again after it was computed
    is computed a second time, then kept), and the least recently used go when the kept arrays pass
    `budget` bytes (256 MB: 560 series of 58,419 bars, 32 of a million). The feeds must be the same for
    every graph (the caller keeps one `SharedValues` per data set).
    """

    def __init__(self, budget: int = 256 * 2**20) -> None:
        """An empty store holding at most about `budget` bytes of arrays."""
        self.budget = budget  # most bytes of arrays kept
        self.used = 0  # bytes of arrays kept now
        self.values: OrderedDict[str, Any] = OrderedDict()  # hash -> value, least recently used first
        self.asked: Counter[str] = Counter()  # hash -> graphs that announced they need it (`expect`)
        self.computed = 0  # nodes computed through this store (those found kept are not)

    def expect(self, hashes: Sequence[str]) -> None:
        """Announce a graph's nodes (before it runs), so that nodes several graphs share are kept."""
        self.asked.update(set(hashes))

    def get(self, key: str) -> Any:
        """A kept value (marked as just used), or None."""
        value = self.values.get(key)
        if value is not None:
            self.values.move_to_end(key)
        return value

    def offer(self, key: str, value: Any) -> None:
        """Keep a computed value if another graph announced it too, evicting the oldest beyond the budget."""
        self.computed += 1
        if self.asked[key] < 2 or key in self.values:
            return
        size = _nbytes(value)
        if size > self.budget:
            return
        self.values[key] = value
        self.used += size
        while self.used > self.budget:
            _, old = self.values.popitem(last=False)
            self.used -= _nbytes(old)


def _nbytes(value: Any) -> int:
    """Bytes of a node's batch value: an array, or the arrays of a several-output operator."""
    return int(value.nbytes) if isinstance(value, np.ndarray) else sum(int(a.nbytes) for a in value)


def run_batch(
    graph: Graph, feeds: Feeds, keep: Sequence[int] | None = None, shared: SharedValues | None = None
) -> dict[int, Any]:
    """Evaluate the nodes the `keep` nodes need over whole arrays; return the `keep` nodes' values.

    Only the ancestors of `keep` (default: every node) are evaluated, and arrays no later node needs are
    released as soon as possible, so memory stays near the widest layer of the graph. With `shared`,
    operator and alignment nodes found there are taken as they are (their inputs are not evaluated) and
    the ones computed are offered to it. A value taken from `shared` must not be written to.
    """
    nodes = graph.nodes
    wanted = set(range(len(nodes))) if keep is None else set(keep)
    hashes = graph.node_hashes() if shared is not None else []
    found: dict[int, Any] = {}
    if shared is not None:
        found = {
            node.id: value
            for node in nodes
            if node.kind in _SHAREABLE and (value := shared.get(hashes[node.id])) is not None
        }
    needed = set(wanted)
    for node in reversed(nodes):
        if node.id in needed and node.id not in found:
            needed.update(node.inputs)
    last_use = {i: i for i in needed}
    for node in nodes:
        if node.id in needed and node.id not in found:
            for i in node.inputs:
                last_use[i] = node.id
    values: dict[int, Any] = {}
    for node in nodes:
        if node.id not in needed:
            continue
        if node.id in found:
            values[node.id] = found[node.id]
            continue
        values[node.id] = _batch_node(graph, feeds, node.id, [values[i] for i in node.inputs])
        if shared is not None and node.kind in _SHAREABLE:
            shared.offer(hashes[node.id], values[node.id])
        # Release inputs whose last consumer this node was.
        for i in node.inputs:
            if last_use[i] == node.id and i not in wanted:
                values.pop(i, None)
    return {i: values[i] for i in wanted if i in values}


def _batch_node(graph: Graph, feeds: Feeds, node_id: int, args: list[Any]) -> Any:
    """The batch value of one node given its inputs' values."""
    node = graph.nodes[node_id]
    kind = node.kind
    if kind == "const":
        return float(node.value)  # type: ignore[arg-type]
    n = feeds.length(node.clock) if node.clock != ANY_CLOCK else 0
    if kind == "source":
        return np.asarray(getattr(feeds.candles[node.clock], node.name), dtype=np.float64)
    if kind == "op":
        op = OPERATORS[node.name]
        arrays = [a if isinstance(a, np.ndarray) else np.full(n, a) for a in args]
        out = op.batch(*arrays, *_params(op.params, node.params))
        return out if node.outputs > 1 else out[0]
    if kind == "out":
        return args[0][node.index]
    if kind == "binary":
        return _array_binary(node.name, args[0], args[1])
    if kind == "unary":
        x = args[0]
        with np.errstate(all="ignore"):
            return np.asarray(1.0 - truth_np(x), dtype=np.float64) if node.name == "not" else -x
    if kind == "if":
        cond, a, z = args
        return np.where(truth_np(cond), a, z).astype(np.float64)
    if kind == "align":
        src = graph.nodes[node.inputs[0]].clock
        idx = np.searchsorted(feeds.closes[src], feeds.closes[node.clock], side="right") - 1
        values = args[0] if isinstance(args[0], np.ndarray) else np.full(feeds.length(src), args[0])
        return np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)
    if kind == "state":
        raise CompileError(f"'{node.name}' is trade state: this graph must run inside the simulation loop")
    raise CompileError(f"unknown node kind {kind}")


def _params(spec: tuple[tuple[str, float | int | None], ...], values: tuple[float, ...]) -> list[float | int]:
    """Operator parameters with whole numbers passed as int (lengths, offsets, digits)."""
    return [
        int(v) if float(v).is_integer() and isinstance(d, int | type(None)) else v
        for (_, d), v in zip(spec, values, strict=True)
    ]


class StreamDriver:
    """Evaluates a graph one closed bar at a time, in O(1) per node.

    Bars must arrive in the order of the merged time line (`runtime.graph.timeline`): by close time, a
    slower clock's bar before a faster clock's bar that closes at the same moment.
    """

    def __init__(self, graph: Graph) -> None:
        """Prepare per-clock evaluation steps and fresh kernel states."""
        self.graph = graph  # the compiled graph
        self.values: list[Any] = [math.nan] * len(graph.nodes)  # latest value of every node
        self.state: dict[str, float] = {}  # trade state for `state` nodes, set before each base bar
        self.bar: Mapping[str, float] = {}  # the bar being processed, read by source steps
        # One list of (node id, step function) per clock, in topological order.
        self.steps: list[list[tuple[int, Callable[[list[Any]], Any]]]] = [[] for _ in graph.clocks]
        self.kernels: dict[int, Any] = {}  # node id -> its operator's streaming kernel (the node's state)
        for node in graph.nodes:
            if node.kind == "const":
                self.values[node.id] = float(node.value)  # type: ignore[arg-type]
        self._build_steps()

    def _build_steps(self) -> None:
        """The per-clock step lists, each node's step bound to its kernel (`self.kernels`)."""
        self.steps = [[] for _ in self.graph.clocks]
        for node in self.graph.nodes:
            if node.kind != "const":
                self.steps[node.clock].append((node.id, self._step(node.id)))

    def _step(self, node_id: int) -> Callable[[list[Any]], Any]:
        """The step function of one node: reads its inputs' latest values, returns its new value."""
        node = self.graph.nodes[node_id]
        ins = node.inputs
        kind = node.kind
        if kind == "source":
            name = node.name
            return lambda v: self.bar[name]
        if kind == "op":
            op = OPERATORS[node.name]
            kernel = self.kernels.setdefault(node_id, op.stream(*_params(op.params, node.params)))
            update = kernel.update
            if node.outputs > 1:
                return lambda v: update(*[v[i] for i in ins])
            if len(ins) == 1:
                (a,) = ins
                return lambda v: update(v[a])[0]
            return lambda v: update(*[v[i] for i in ins])[0]
        if kind == "out":
            (src,) = ins
            index = node.index
            return lambda v: v[src][index]
        if kind == "binary":
            fn = _scalar_binary(node.name)
            a, z = ins
            return lambda v: fn(v[a], v[z])
        if kind == "unary":
            (a,) = ins
            if node.name == "not":
                return lambda v: 0.0 if truth(v[a]) else 1.0
            return lambda v: -v[a]
        if kind == "if":
            c, a, z = ins
            return lambda v: v[a] if truth(v[c]) else v[z]
        if kind == "align":
            (src,) = ins
            return lambda v: v[src]
        if kind == "state":
            name = node.name
            return lambda v: self.state.get(name, math.nan)
        raise CompileError(f"unknown node kind {kind}")

    def carry(self, old: StreamDriver) -> int:
        """Take over the state of every node `old` computes too (same content hash); return how many.

        For a reloaded spec: this driver has been warmed on the recent bars, and the nodes the edit did not
        change continue exactly where the running driver was, as if no reload happened. The kernels are
        shared, not copied: `old` must not be pushed any more.
        """
        theirs = {h: i for i, h in enumerate(old.graph.node_hashes())}
        carried = 0
        for node_id, h in enumerate(self.graph.node_hashes()):
            i = theirs.get(h)
            if i is None:
                continue
            if i in old.kernels:
                self.kernels[node_id] = old.kernels[i]
            self.values[node_id] = old.values[i]
            carried += 1
        self._build_steps()  # the steps now use the kernels taken over
        return carried

    def push(self, clock: int, bar: Mapping[str, float]) -> None:
        """Feed one closed bar (open/high/low/close/volume) of `clock` and update that clock's nodes."""
        self.bar = bar
        values = self.values
        for node_id, step in self.steps[clock]:
            values[node_id] = step(values)

    def value(self, node_id: int) -> float:
        """The latest value of a node."""
        return float(self.values[node_id])


def run_stream(graph: Graph, feeds: Feeds, keep: Sequence[int]) -> dict[int, Array]:
    """Evaluate the graph bar by bar through the streaming driver; the `keep` nodes' base-clock values.

    The bars of every clock arrive in the order of the merged time line (`timeline.points`).
    """
    driver = StreamDriver(graph)
    n = feeds.length(0)
    out = {i: np.full(n, np.nan) for i in keep}
    for point in points([c.time for c in feeds.candles], feeds.bar_ms):
        for clock, i in point.bars:
            driver.push(clock, feeds.bar(clock, i))
            if clock == 0:
                for node_id, arr in out.items():
                    arr[i] = driver.values[node_id]
    return out
