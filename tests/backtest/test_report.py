"""The HTML report: self-contained, opens offline in headless Chromium without errors, charts drawn."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest_report import HOUR, T0, Candles, load_candles, s1_result, small_result

from dsl.checker import check_file
from runtime.backtest.metrics import compute_metrics
from runtime.backtest.report import (
    MAX_POINTS,
    Line,
    RunSetup,
    benchmarks,
    decimate,
    plotted_lines,
    price_figure,
    sleeve_pnl,
    write_report,
)
from runtime.broker.result import Alert

ROOT = Path(__file__).resolve().parents[2]
# Debian's Chromium, driven by playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
# Flags for a sandbox-less, offline, quiet headless browser.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _small_candles(eth: bool = False) -> dict[str, Candles]:
    """Four hourly BTC candles of the small result (open times), and ETH's when `eth`."""
    time = T0 + HOUR * np.arange(4, dtype=np.int64)
    btc = Candles(time, np.array([99.0, 100, 105, 110]), np.array([101.0, 106, 108, 112]),
                  np.array([98.0, 99, 97, 109]), np.array([100.0, 105, 107, 111]))  # fmt: skip
    if not eth:
        return {"BTC/USDT": btc}
    eth_candles = Candles(time, np.array([50.0, 50, 49, 47]), np.array([51.0, 51, 50, 48]),
                          np.array([49.0, 48, 46, 44]), np.array([50.0, 49, 47, 45]))  # fmt: skip
    return {"BTC/USDT": btc, "ETH/USDT": eth_candles}


def _open(
    path: Path, screenshot: Path, zoom: list[list[float]] | None = None
) -> tuple[int, int, list[str], list[str], list[str]]:
    """Load a report in headless Chromium and save a screenshot (and with `zoom`, see the markers zoomed).

    Returns:
        Charts drawn, trade table rows, console errors, failed requests and non-local requests.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("Debian chromium is not installed")
    errors: list[str] = []
    failed: list[str] = []
    remote: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on(
                "request", lambda r: None if r.url.startswith(("file:", "data:")) else remote.append(r.url)
            )
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
            charts = page.locator(".js-plotly-plot").count()
            # Every chart drew its SVG.
            drawn = page.locator(".js-plotly-plot .main-svg").count()
            assert drawn >= charts
            rows = page.locator("#trades tbody tr").count()
            page.screenshot(path=str(screenshot))
            if zoom is not None:
                # Marker sizes of the first price chart with everything in view, then zoomed in.
                # (size of each trades trace, markers drawn opaque)
                sizes = "() => document.getElementById('price-chart-0')._fullData" \
                    ".filter(t => t.meta === 'trades').map(t => [t.marker.size," \
                    " [].concat(t.marker.opacity).filter(o => o === 1).length])"  # fmt: skip
                zoom.append(page.evaluate(sizes))
                page.evaluate(
                    "() => Plotly.relayout('price-chart-0', {'xaxis.range': ['2024-01-01', '2024-02-01']})"
                )
                zoom.append(page.evaluate(sizes))
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    return charts, rows, errors, failed, remote


def test_report_is_self_contained(tmp_path: Path) -> None:
    result = small_result(synthetic=True)
    path = write_report(
        result, compute_metrics(result, HOUR), _small_candles(), tmp_path / "r.html", title="demo"
    )
    text = path.read_text()
    # No external script, stylesheet or font: only inline content.
    assert re.findall(r"<script[^>]+src=", text) == []
    assert re.findall(r"<link[^>]+href=", text) == []
    assert "cdn." not in text.lower().split("</script>", 1)[1]
    assert 'id="synthetic">SYNTHETIC DATA' in text
    assert text.count('class="js-plotly-plot"') == 0  # plotly adds that class when drawing, in the browser
    assert text.count('<div id="price-chart-') == 2
    assert "<title>demo: backtest report</title>" in text
    assert "<h1>demo</h1>" in text


def test_report_without_synthetic_data_has_no_banner(tmp_path: Path) -> None:
    result = small_result()
    path = write_report(result, compute_metrics(result, HOUR), {}, tmp_path / "r.html")
    assert "SYNTHETIC" not in path.read_text()


def test_decimate_keeps_extremes_and_ends() -> None:
    values = np.sin(np.arange(100_000) / 50.0)
    values[12_345] = 9.0
    values[54_321] = -9.0
    keep = decimate([values])
    assert len(keep) <= MAX_POINTS + 2
    assert {0, 12_345, 54_321, 99_999} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    assert decimate([np.arange(10.0)]).tolist() == list(range(10))


def test_small_report_renders_in_chromium(tmp_path: Path) -> None:
    result = small_result(synthetic=True)
    report = write_report(
        result, compute_metrics(result, HOUR), _small_candles(), tmp_path / "report.html", title="demo"
    )
    charts, rows, errors, failed, remote = _open(report, tmp_path / "small.png")
    # Equity and drawdown, sleeves, a price chart per symbol (BTC with candles, ETH markers only), monthly.
    assert (charts, rows) == (5, 2)
    assert (errors, failed, remote) == ([], [], [])


def test_s1_report_renders_in_chromium(tmp_path: Path, shared_data: Path) -> None:
    candles = load_candles(shared_data / "BTCUSDT-1h.csv")
    result = s1_result(candles)
    summary = compute_metrics(result, HOUR)
    report = write_report(result, summary, {"BTC/USDT": candles}, tmp_path / "report.html", title="s1")
    # The embedded library is about 4.8 MB; the thinned charts and 1,180-row table stay well under 3 MB.
    assert report.stat().st_size < 8_000_000
    zoom: list[list[float]] = []
    charts, rows, errors, failed, remote = _open(report, tmp_path / "s1.png", zoom)
    assert (charts, rows) == (4, 1180)
    assert (errors, failed, remote) == ([], [], [])
    # 2,359 markers in view: every 4th drawn (at most 600), at the smallest size; zoomed to a month, every
    # marker is drawn (opacity 1 also outside the view) at full size.
    (entries, exits), (month_entries, month_exits) = zoom
    assert (entries[0], exits[0], month_entries[0], month_exits[0]) == (3, 3, 10, 10)
    assert 550 <= entries[1] + exits[1] <= 600
    assert (month_entries[1], month_exits[1]) == (1180, 1179)


def test_benchmarks_buy_and_hold_from_the_first_close() -> None:
    result = small_result()
    marks = dict(benchmarks(result, _small_candles(eth=True)))
    # Capital 100: BTC closes 100, 105, 107, 111; ETH 50, 49, 47, 45; weights 60% / 40%.
    np.testing.assert_allclose(marks["buy & hold BTC/USDT"], [100.0, 105.0, 107.0, 111.0])
    np.testing.assert_allclose(marks["buy & hold ETH/USDT"], [100.0, 98.0, 94.0, 90.0])
    np.testing.assert_allclose(marks["buy & hold, the sleeves' weights"], [100.0, 102.2, 101.8, 102.6])
    # Without every sleeve's prices there is no portfolio benchmark (a missing sleeve is not cash).
    assert [name for name, _ in benchmarks(result, _small_candles())] == ["buy & hold BTC/USDT"]


def test_sleeve_pnl_marks_open_trades_and_books_closed_ones() -> None:
    trend, revert = sleeve_pnl(small_result(), _small_candles(eth=True))
    # Long 1 BTC at 100 (fees 0.21, half while open), closed at 110 for 9.79 on the bar opening T0+3h.
    np.testing.assert_allclose(trend, [0.0, 4.895, 6.895, 9.79])
    # Short 2 ETH at 50 (entry fee 0.1), still open: marked at 47 then 45.
    np.testing.assert_allclose(revert, [0.0, 0.0, 5.9, 9.9])


def test_charts_start_at_the_run_start() -> None:
    candles = _small_candles()["BTC/USDT"]
    line = Line("fast", candles.time, np.array([1.0, 2.0, 3.0, 4.0]))
    fig = price_figure("BTC/USDT", candles, [], [line], span=(T0 + HOUR, T0 + 4 * HOUR))
    # The warm-up candle (open T0) and its line value are not drawn; the axis spans exactly the run.
    assert fig.data[0].x.tolist() == [float(T0 + HOUR * k) for k in (1, 2, 3)]
    assert fig.data[1].y.tolist() == [2.0, 3.0, 4.0]
    assert fig.layout.xaxis.range == ("2024-01-01 01:00:00.000", "2024-01-01 04:00:00.000")


def test_report_sections_parameters_and_alerts(tmp_path: Path) -> None:
    alert = Alert(T0 + 2 * HOUR, "trend", "ma_cross", "BTC/USDT", "cross <up>")
    result = dataclasses.replace(small_result(), alerts=(alert,))
    setup = RunSetup(
        "specs/p.strat", (("trend (ma_cross)", "param fast", "10 (set)"),), (("csv BTC/USDT 1h", "2 gaps"),)
    )
    text = write_report(
        result, compute_metrics(result, HOUR), {}, tmp_path / "r.html", title="p", setup=setup
    ).read_text()
    assert "<h2>Alerts (1)</h2>" in text
    assert (
        "<tr><td>2024-01-01T02:00:00Z</td><td>trend</td><td>ma_cross</td><td>BTC/USDT</td>"
        "<td>cross &lt;up&gt;</td></tr>"
    ) in text
    assert "<tr><td>trend (ma_cross)</td><td>param fast</td><td>10 (set)</td></tr>" in text
    assert "<tr><td>csv BTC/USDT 1h</td><td>2 gaps</td></tr>" in text
    assert "Backtest report of specs/p.strat" in text


def test_plotted_lines_are_the_price_level_bindings(shared_data: Path) -> None:
    from runtime.commands.source import Source, SourceKind
    from runtime.plan.plan import plan
    from runtime.plan.select import select

    source = Source(SourceKind.CSV, shared_data)
    for spec, expected in (
        ("ma_cross", ["fast_ma", "slow_ma"]),
        ("bollinger_reversion", ["bb.upper", "bb.mid", "bb.lower"]),
        ("macd", []),  # a price difference, not a price level
        ("rsi_reversion", []),  # an oscillator and a boolean
    ):
        program = check_file(str(ROOT / "library" / f"{spec}.strat")).program
        assert program is not None
        run_plan = plan(program, select(program, None, None), source.candles, None, None)
        lines = plotted_lines(run_plan)
        assert [line.name for found in lines.values() for line in found] == expected, spec
