"""The HTML report: self-contained, opens offline in headless Chromium without errors, charts drawn."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest_report import HOUR, T0, Candles, load_candles, s1_result, small_result

from runtime.backtest.metrics import compute_metrics
from runtime.backtest.report import MAX_POINTS, decimate, write_report

# Debian's Chromium, driven by playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
# Flags for a sandbox-less, offline, quiet headless browser.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _small_candles() -> dict[str, Candles]:
    """Four hourly candles per symbol of the small result (open times)."""
    time = T0 + HOUR * np.arange(4, dtype=np.int64)
    btc = Candles(time, np.array([99.0, 100, 105, 110]), np.array([101.0, 106, 108, 112]),
                  np.array([98.0, 99, 97, 109]), np.array([100.0, 105, 107, 111]))  # fmt: skip
    return {"BTC/USDT": btc}


def _open(path: Path, screenshot: Path) -> tuple[int, int, list[str], list[str], list[str]]:
    """Load a report in headless Chromium and save a screenshot.

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
    # Equity and drawdown, one price chart per symbol (BTC with candles, ETH markers only), monthly heatmap.
    assert (charts, rows) == (4, 2)
    assert (errors, failed, remote) == ([], [], [])


def test_s1_report_renders_in_chromium(tmp_path: Path, shared_data: Path) -> None:
    candles = load_candles(shared_data / "BTCUSDT-1h.csv")
    result = s1_result(candles)
    summary = compute_metrics(result, HOUR)
    report = write_report(result, summary, {"BTC/USDT": candles}, tmp_path / "report.html", title="s1")
    # The embedded library is about 4.8 MB; the thinned charts and 1,180-row table stay well under 3 MB.
    assert report.stat().st_size < 8_000_000
    charts, rows, errors, failed, remote = _open(report, tmp_path / "s1.png")
    assert (charts, rows) == (3, 1180)
    assert (errors, failed, remote) == ([], [], [])
