"""`strat run SPEC --backtest --watch`: the authoring loop, with real watchdog and real saves.

A `strat` process watches a spec; the test saves it the ways editors do (an atomic rename, a truncate
and write, a half-written broken file, a burst of saves) and reads what the process prints and writes.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = """\
strat 1
strategy cross:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    data: "data"
    fast_ma = sma(close, {fast})
    slow_ma = sma(close, 30)
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%
"""


class Watching:
    """A `strat run --watch` process and its output lines, read on threads."""

    def __init__(self, folder: Path) -> None:
        """Start watching folder/spec.strat, writing to folder/out."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRAT_")}
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT prints every thread's stack (see `stop`)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--backtest", "--watch", "--out",
             "out"],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # One pipe for both streams, read on one thread, so the lines keep the order they were
        # printed in (two readers let a stderr line overtake the stdout line printed after it).
        self.lines: queue.Queue[str] = queue.Queue()  # stdout and stderr lines, as they come
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Queue every line the process prints."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, seconds: float = 60) -> list[str]:
        """The lines up to the first one holding `text` (AssertionError after `seconds`)."""
        seen = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in:\n" + "\n".join(seen)) from None
            seen.append(line)
            if text in line:
                return seen

    def stop(self) -> int:
        """Ctrl-C; the exit code.

        A process still running 30 s later is aborted with every thread's stack printed (faulthandler),
        which the failure shows.
        """
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(30)
            time.sleep(0.5)  # the reader takes the last lines
            printed = []
            while not self.lines.empty():
                printed.append(self.lines.get())
            raise AssertionError("Ctrl-C did not end the process:\n" + "\n".join(printed[-60:])) from None


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder with the spec (fast = 10) and the demo's BTC 1h candles."""
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "specs" / "data" / "BTCUSDT-1h.csv", tmp_path / "data")
    (tmp_path / "spec.strat").write_text(SPEC.format(fast=10))
    yield tmp_path


def atomic_save(path: Path, text: str) -> None:
    """Save as most editors do: a temporary file in the folder, renamed onto the spec."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def test_every_kind_of_save_reruns_and_a_broken_one_keeps_the_last_report(folder: Path) -> None:
    """Atomic rename, truncate-and-write, a broken save, then a burst: the final content is what ran."""
    spec = folder / "spec.strat"
    watching = Watching(folder)
    try:
        watching.until("watching spec.strat")
        first = (folder / "out" / "trades.csv").read_text()
        assert "window.reportVersion" in (folder / "out" / "report.version.js").read_text()
        assert "report.version.js" in (folder / "out" / "report.html").read_text()
        atomic_save(spec, SPEC.format(fast=5))
        lines = watching.until("watching spec.strat")
        assert "changes from the previous version:" in lines
        assert any(line.startswith("  trades: ") for line in lines)
        second = (folder / "out" / "trades.csv").read_text()
        assert second != first
        # A broken save (half-written): diagnostics, and the last good outputs stay.
        spec.write_text(SPEC.format(fast=5).replace("slow_ma = sma(close, 30)", "slow_ma = sma(close,"))
        lines = watching.until("watching spec.strat")
        assert any("error E0" in line for line in lines)
        assert "strat run: the spec has errors; the last good outputs stay" in lines
        assert (folder / "out" / "trades.csv").read_text() == second
        # A burst of saves ends in the last one.
        for fast in range(5, 25):
            spec.write_text(SPEC.format(fast=fast))
        watching.until("watching spec.strat")
        deadline = time.monotonic() + 30
        plain = subprocess.run(
            [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--backtest", "--out", "plain",
             "--no-report", "--no-save"],
            cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        assert plain.returncode == 0
        while (folder / "out" / "trades.csv").read_text() != (folder / "plain" / "trades.csv").read_text():
            assert time.monotonic() < deadline, "the final save's run did not land"
            watching.until("watching spec.strat", 30)
    finally:
        assert watching.stop() == 0


def test_ctrl_c_delivered_to_another_thread_ends_a_wait(tmp_path: Path) -> None:
    """A SIGINT the kernel hands to another thread (watchdog's, a timer's) still ends `wait()` at once.

    The main thread runs Python's signal handlers only when it wakes: an untimed wait slept until the next
    save, so such a Ctrl-C left `strat run --watch` running.
    """
    from runtime.watcher import SpecWatcher

    spec = tmp_path / "spec.strat"
    spec.write_text(SPEC.format(fast=10))
    watcher = SpecWatcher([spec])
    sleeper = threading.Thread(target=time.sleep, args=(5,), daemon=True)
    sleeper.start()
    interrupt = threading.Timer(0.2, signal.pthread_kill, args=(sleeper.ident, signal.SIGINT))
    rescue = threading.Timer(5, atomic_save, args=(spec, SPEC.format(fast=11)))  # wakes a wait that missed it
    interrupt.start()
    rescue.start()
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            watcher.wait()
        assert time.monotonic() - began < 2
    finally:
        rescue.cancel()
        watcher.close()
