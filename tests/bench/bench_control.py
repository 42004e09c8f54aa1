"""Benchmark of the control front-ends over HTTP: a real `strat run --paper` session and its API.

Run: `python tests/bench/bench_control.py` (needs ../shared/data). Prints figures, never asserts a time.

A paper session of the control tests' two-sleeve spec runs against the fake Binance (tests/data) with its
API on a free port; over one keep-alive HTTP connection the script times: reads (/api/status,
/api/sleeves, /api/trades, /api/events), a command's round trip (POST /api/pause then /api/resume: under
the engine's lock, recorded as an event and checkpointed before the answer), and the live stream's
latency (from the POST of a pause until its event arrives on an open /api/stream). Baseline in the same
run: a static file of the dashboard from the same server (the HTTP and framework cost alone).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "control"))
from control_session import PaperSession  # noqa: E402
from fake_binance import FakeBinance  # noqa: E402
from test_paper import HOUR, T0  # noqa: E402

REPEAT = 200  # requests timed per read endpoint
COMMANDS = 50  # pause/resume round trips timed


def timed(call: object, n: int) -> list[float]:
    """Milliseconds of n calls of `call()`."""
    out = []
    for _ in range(n):
        began = time.perf_counter()
        call()  # type: ignore[operator]
        out.append((time.perf_counter() - began) * 1000)
    return out


def row(label: str, ms: list[float], baseline: float) -> None:
    """Print p50 and p95 of one measurement, and its p50 as a ratio to the baseline's."""
    ms = sorted(ms)
    p50, p95 = statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]
    print(f"{label:<34} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   {p50 / baseline:5.1f}x the static file")


def stream_latency(session: PaperSession, n: int) -> list[float]:
    """Milliseconds from a pause's POST until its event arrives on an open /api/stream, n times."""
    arrived: list[float] = []
    ready, stop = threading.Event(), threading.Event()

    def listen() -> None:
        """Read the stream, noting when each pause event arrives."""
        client = httpx.Client(base_url=session.url, timeout=None)
        with client, client.stream("GET", "/api/stream") as answer:
            ready.set()
            for line in answer.iter_lines():
                if line.startswith("data:") and '"kind":"pause"' in line:
                    arrived.append(time.perf_counter())
                if stop.is_set():
                    return

    threading.Thread(target=listen, daemon=True).start()
    ready.wait(10)
    time.sleep(0.3)
    out = []
    for _ in range(n):
        began = time.perf_counter()
        seen = len(arrived)
        session.post("/api/pause", sleeve="btc")
        while len(arrived) == seen:
            time.sleep(0.0005)
        out.append((arrived[-1] - began) * 1000)
        session.post("/api/resume", sleeve="btc")
    stop.set()
    return out


def main() -> None:
    """Start the session, time the front-ends, print the figures."""
    data = ROOT.parent / "shared" / "data"
    market = FakeBinance(data_dir=data, now_ms=T0 - HOUR // 2).start()
    with tempfile.TemporaryDirectory() as tmp:
        session = PaperSession(market, Path(tmp))
        try:
            session.bars(12)  # some trades and events to read
            static = timed(lambda: session.http.get("/static/app.css"), REPEAT)
            baseline = statistics.median(static)
            print(f"paper session {session.get('/api/status')['deployment']}, {REPEAT} requests each")
            row("GET /static/app.css (baseline)", static, baseline)
            for path in ("/api/status", "/api/sleeves", "/api/trades", "/api/events"):
                row(f"GET {path}", timed(lambda p=path: session.get(p), REPEAT), baseline)  # type: ignore[misc]

            def command() -> None:
                """One pause and one resume."""
                session.post("/api/pause", sleeve="btc")
                session.post("/api/resume", sleeve="btc")

            row("POST pause + resume (round trip)", timed(command, COMMANDS), baseline)
            row("pause POST -> event on /api/stream", stream_latency(session, COMMANDS), baseline)
        finally:
            session.stop()
            market.stop()


if __name__ == "__main__":
    main()
