"""The dashboard in headless Chromium over a paper session: login, sleeves, a pause click, a live fill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control_session import PaperSession
from fake_binance import FakeBinance
from test_api import _until_a_fill

TOKEN = "dash:tok-dash-7"  # STRAT_API_TOKEN of the session: the token "tok-dash-7", named "dash"


def test_dashboard_login_pause_and_a_live_fill(
    market: FakeBinance, tmp_path: Path, browser_factory: Any
) -> None:
    paper = PaperSession(market, tmp_path, env={"STRAT_API_TOKEN": TOKEN})
    try:
        b = browser_factory(paper.url)
        page = b.page
        page.goto(paper.url + "/")
        # The token is asked for; a wrong one is refused, the right one opens the dashboard.
        page.wait_for_selector("#login-form", state="visible")
        page.fill("#token", "wrong")
        page.click("#login-form button")
        page.wait_for_selector("#login-error:text('this token is not accepted')")
        page.fill("#token", "tok-dash-7")
        page.click("#login-form button")
        page.wait_for_selector('#sleeves tr[data-sleeve="btc"]')
        assert page.locator("#sleeves tbody tr").evaluate_all("rows => rows.map(r => r.dataset.sleeve)") == [
            "btc", "eth",
        ]  # fmt: skip
        page.wait_for_selector("#live.on")  # the event stream is connected
        assert page.locator("#status dd").nth(0).text_content() == paper.get("/api/status")["deployment"]
        page.evaluate("() => { window.loadedOnce = true; }")  # gone if the page ever reloads

        # Pause btc with its button: the API shows it paused, by the dashboard's token.
        page.click('#sleeves tr[data-sleeve="btc"] button[data-action="pause"]')
        page.wait_for_selector('#sleeves tr[data-sleeve="btc"][data-paused="true"]')
        sleeves = {s["name"]: s for s in paper.get("/api/sleeves")}
        assert (sleeves["btc"]["paused"], sleeves["btc"]["held"], sleeves["eth"]["paused"]) == (
            True,
            ["paused"],
            False,
        )
        [pause] = [e for e in paper.get("/api/events") if e["kind"] == "pause"]
        assert (pause["sleeve"], pause["who"]) == ("btc", "api:dash")
        page.wait_for_selector(f'#events li[data-id="{pause["id"]}"]')
        # Flatten asks first; cancelled, nothing happens.
        page.click('#sleeves tr[data-sleeve="eth"] button[data-action="flatten"]')
        page.wait_for_selector("#confirm[open]")
        assert "Flatten sleeve eth?" in (page.text_content("#confirm-text") or "")
        page.click('#confirm button[value="cancel"]')
        page.wait_for_selector("#confirm", state="hidden")
        assert [e["kind"] for e in paper.get("/api/events") if e["kind"] == "flatten"] == []
        # Resume, then bars until a fill: it shows up in the trades and the events without a reload.
        page.click('#sleeves tr[data-sleeve="btc"] button[data-action="resume"]')
        page.wait_for_selector('#sleeves tr[data-sleeve="btc"][data-paused="false"]')
        trades = _until_a_fill(paper)
        fill = next(e for e in paper.get("/api/events", limit=1000) if e["kind"] == "fill")
        page.wait_for_selector(f'#events li[data-id="{fill["id"]}"][data-kind="fill"]')
        page.wait_for_function(
            "n => document.querySelectorAll('#trades tbody tr:not(:has(td.muted))').length === n",
            arg=len(trades),
        )
        assert page.locator("#trades tbody tr td").first.text_content() == trades[0]["sleeve"]
        assert page.evaluate("() => window.loadedOnce") is True
        assert page.locator("#equity polyline").count() == 1

        # The docs work offline: Swagger UI from the server's own files renders the API.
        page.goto(paper.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        page.wait_for_selector('.opblock-summary-path[data-path="/api/pause"]')
        # The one console error is the wrong token's 401 (Chromium logs every refused request).
        assert b.errors == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]
        assert b.remote == []
    finally:
        paper.stop()
