"""Hot reload of a paper session: edit the spec while it trades, with real watchdog and real saves.

A `strat run --paper` process trades the fake exchange's candles while the test saves its spec: a broken
save keeps the running version (diagnostics as an event), a valid one is live from the next bar and then
decides like a backtest of the new version from that bar, an edit that would orphan a position is
refused (E070), and a burst of saves ends in the final content.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_binance import FakeBinance
from paper_session import PaperSession
from test_paper import HOUR, T0, strat
from test_watch import atomic_save

from runtime.backtest.metrics import iso_time

SPEC = """\
strat 1
strategy flip:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast_ma = sma(close, 3)
    slow_ma = sma(close, {slow})
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%
"""


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange with the real candles, its clock half-way into the bar before T0."""
    server = FakeBinance(data_dir=shared_data, now_ms=T0 - HOUR // 2).start()
    yield server
    server.stop()


class Paper(PaperSession):
    """The paper session of one sleeve, with its reload events and the sleeve's state."""

    def reloads(self) -> list[str]:
        """The messages of the reload events so far (events.csv)."""
        path = self.folder / "out" / "events.csv"
        rows = list(csv.reader(path.open()))[1:] if path.exists() else []
        return [row[3] for row in rows if row[1] == "reload"]

    def sleeve(self) -> dict[str, Any]:
        """The sleeve's state from the API."""
        return self.get("/api/sleeves")[0]  # type: ignore[no-any-return]


def test_edits_while_trading(market: FakeBinance, tmp_path: Path, shared_data: Path) -> None:
    """Broken save kept out; a param edit live at the next bar, deciding like a backtest; E070, then applied.

    The E070 edit (a move to another market while holding a position) applies once the sleeve is flat.
    """
    spec = tmp_path / "spec.strat"
    paper = Paper(market, tmp_path, spec=SPEC.format(slow=8))
    try:
        paper.bars(10)
        # A half-written save: diagnostics as an event, the running version trades on.
        spec.write_text(SPEC.format(slow=8).replace("slow_ma = sma(close, 8)", "slow_ma = sma(close,"))
        paper.wait(lambda: len(paper.reloads()) == 1, "the failed reload")
        (failed,) = paper.reloads()
        assert failed.startswith("reload failed; the running version stays:\nspec.strat:6:")
        assert "error E0" in failed
        paper.bars(3)
        # Once flat, a param edit (slow 8 -> 12) in a burst of 100 saves: one reload, of the last content.
        while paper.sleeve()["position"] != 0:  # type: ignore[index]
            paper.bars(1)
        swap = paper.closed
        assert paper.last_bar() == iso_time(swap)
        for slow in [9, 10, 11, 12] * 25:  # 100 saves in a burst
            spec.write_text(SPEC.format(slow=slow))
        paper.wait(lambda: len(paper.reloads()) == 2, "the reload")
        applied = paper.reloads()[1]
        assert applied.startswith("reloaded spec.strat (version ")
        assert applied.endswith("\n  flip: rules entry_long, exit_long")
        assert paper.last_bar() == iso_time(swap)  # swapped between two bars
        paper.bars(60)
        # Moving the sleeve to another market while it holds a position: refused (E070)...
        while paper.sleeve()["position"] == 0:  # type: ignore[index]
            paper.bars(1)
        moved_text = SPEC.format(slow=12).replace("BTC/USDT", "ETH/USDT")
        atomic_save(spec, moved_text)
        paper.wait(lambda: len(paper.reloads()) == 3, "the refused reload")
        refused = paper.reloads()[2]
        assert refused.startswith("reload refused; the running version stays:\nE070: sleeve flip holds ")
        assert (
            "the edit moves it to BINANCE:ETH/USDT 1h, which would orphan it: flatten the sleeve first"
            in refused
        )
        assert paper.sleeve()["position"] != 0  # type: ignore[index]
        # ... and applied by the same save once the sleeve is flat.
        while paper.sleeve()["position"] != 0:  # type: ignore[index]
            paper.bars(1)
        moved_at = paper.closed
        atomic_save(spec, moved_text)
        paper.wait(lambda: len(paper.reloads()) == 4, "the move")
        assert paper.reloads()[3].endswith("\n  flip: moved (BINANCE:ETH/USDT 1h, weight 100%; starts flat)")
        paper.bars(5)
        assert paper.sleeve()["symbol"] == "ETH/USDT"
    finally:
        paper.stop()
    # From the swap on, the session decided like a backtest of the new version from that bar (same entry
    # and exit times and prices; the quantities differ with the capital each starts from).
    spec.write_text(SPEC.format(slow=12))
    backtest = strat(
        "run", "spec.strat", "--backtest", "--data", str(shared_data / "BTCUSDT-1h.csv"), "--from", str(swap),
        "--to", str(moved_at), "--out", "bt", "--no-report", "--no-save", cwd=tmp_path,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(swap / 1000))

    def btc_after_swap(path: Path) -> list[tuple[object, ...]]:
        """(entry time, entry price, exit time, exit price) of the BTC trades entered from the swap on.

        Prices to 1e-6 (an average entry price is a total over a quantity: the last digit varies with it).
        """
        rows = list(csv.DictReader(path.open()))
        return [
            (
                r["entry_time"],
                round(float(r["entry_price"]), 6),
                r["exit_time"],
                round(float(r["exit_price"]), 6),
            )
            for r in rows
            if r["entry_time"] >= start and r["symbol"] == "BTC/USDT"
        ]

    expected = btc_after_swap(tmp_path / "bt" / "trades.csv")
    assert len(expected) >= 2
    assert btc_after_swap(tmp_path / "out" / "trades.csv") == expected
    # The history of the sleeve before its move stays in trades.csv, under its old market.
    assert {r["symbol"] for r in csv.DictReader((tmp_path / "out" / "trades.csv").open())} >= {"BTC/USDT"}
