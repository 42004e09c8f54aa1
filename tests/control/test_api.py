"""The REST API of a running paper session over HTTP: every read, every command, the stream, auth, fuzzing."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import httpx
from control_session import SPEC, PaperSession
from fake_binance import FakeBinance

# Every read under /api/ (the stream aside: it does not end).
READS = [
    "/api/status", "/api/deployments", "/api/sleeves", "/api/positions", "/api/orders", "/api/trades",
    "/api/pnl", "/api/balance", "/api/equity", "/api/events", "/api/runs",
]  # fmt: skip
COMMANDS = ["/api/pause", "/api/resume", "/api/flatten", "/api/halt", "/api/reset_halt", "/api/reload"]
CONFIRMED = ["/api/flatten", "/api/halt"]  # the commands that need {"confirm": true}


def _until_a_fill(paper: PaperSession, bars: int = 48) -> list[dict[str, Any]]:
    """Close bars one by one until the session holds a trade; its trades (API)."""
    for _ in range(bars):
        paper.bars(1)
        trades: list[dict[str, Any]] = paper.get("/api/trades")
        if trades:
            return trades
    raise AssertionError(f"no fill in {bars} bars")


def _csv_trades(paper: PaperSession) -> list[dict[str, str]]:
    """The session's out/trades.csv rows."""
    path = paper.folder / "out" / "trades.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_reads_agree_with_the_session_outputs(paper: PaperSession) -> None:
    status = paper.get("/api/status")
    key = status["deployment"]
    assert (status["name"], status["mode"], status["state"], status["attached"]) == (
        "duo",
        "paper",
        "running",
        True,
    )
    assert (status["equity"], status["cash"], status["paused"], status["halted"]) == (
        10_000.0,
        10_000.0,
        [],
        False,
    )
    [deployment] = paper.get("/api/deployments")
    assert (deployment["key"], deployment["name"], deployment["mode"], deployment["attached"]) == (
        key, "duo", "paper", True,
    )  # fmt: skip
    sleeves = paper.get("/api/sleeves")
    shown = [(s["name"], s["symbol"], s["timeframe"], s["position"], s["paused"], s["held"]) for s in sleeves]
    assert shown == [("btc", "BTC/USDT", "1h", 0.0, False, []), ("eth", "ETH/USDT", "1h", 0.0, False, [])]
    assert paper.get("/api/positions") == [] and paper.get("/api/trades") == []
    assert paper.get("/api/balance") == [
        {"asset": "USDT", "free": 10_000.0, "locked": 0.0, "total": 10_000.0}
    ]
    pnl = paper.get("/api/pnl")
    assert (pnl["capital"], pnl["quote"], pnl["total"], pnl["realized"]) == (10_000.0, "USDT", 0.0, 0.0)
    assert paper.get("/api/runs") == []
    assert paper.http.get("/api/runs/1").status_code == 404
    assert paper.http.get("/api/runs/1").json() == {"error": "no saved run 1; strat runs lists them"}

    # A signal leaves a pending paper order (filled at the next bar's open), then the fill is a trade.
    pending: list[dict[str, Any]] = []
    for _ in range(48):
        paper.bars(1)
        pending = paper.get("/api/orders")
        if pending:
            break
    assert (
        [(o["id"], o["side"], o["intent"], o["status"], o["qty"], o["filled"]) for o in pending]
        == [(f"paper:{o['sleeve']}", "buy", "entry", "pending", None, 0.0) for o in pending]
        != []
    )
    paper.bars(1)
    assert {o["sleeve"] for o in pending} <= {t["sleeve"] for t in paper.get("/api/trades")}
    # The API's trades are the rows of the session's own trades.csv (exact floats: both are the same values).
    paper.wait(lambda: len(_csv_trades(paper)) == len(paper.get("/api/trades", limit=1000)), "trades.csv")
    trades = paper.get("/api/trades", limit=1000)
    rows = _csv_trades(paper)
    ours = sorted(
        (t["sleeve"], t["symbol"], t["side"], t["entry_time"], t["entry_price"], t["qty"], t["fees"],
         t["exit_time"] or "", t["exit_reason"] if t["closed"] else "")
        for t in trades
    )  # fmt: skip
    theirs = sorted(
        (r["sleeve"], r["symbol"], r["side"], r["entry_time"], float(r["entry_price"]), float(r["qty"]),
         float(r["fees"]), r["exit_time"], r["exit_reason"] if r["exit_time"] else "")
        for r in rows
    )  # fmt: skip
    assert ours == theirs and ours
    # Every open trade is a position, with the trade's entry.
    open_trades = sorted(
        (t["sleeve"], t["side"], t["qty"], t["entry_price"]) for t in trades if not t["closed"]
    )
    positions = paper.get("/api/positions")
    assert sorted((p["sleeve"], p["side"], p["qty"], p["avg_entry"]) for p in positions) == open_trades
    sleeves = {s["name"]: s for s in paper.get("/api/sleeves")}
    for p in positions:
        assert sleeves[p["sleeve"]]["position"] == p["qty"] and p["value"] == p["qty"] * p["last_close"]
    assert paper.get("/api/status")["positions"] == len(positions)
    # The fills are events; since_id and limit page them; the newest id returns nothing newer.
    events = paper.get("/api/events", limit=1000)
    fills = [e for e in events if e["kind"] == "fill"]
    assert fills and {e["sleeve"] for e in fills} == {t["sleeve"] for t in trades}
    assert all(e["deployment"] == key and e["who"] == "engine" for e in fills)
    assert paper.get("/api/events", since_id=events[-1]["id"]) == []
    assert paper.get("/api/events", limit=1) == events[-1:]
    assert paper.get("/api/events", since_id=events[0]["id"], limit=1000) == events[1:]
    # Limits, points and the explicit deployment.
    assert len(paper.get("/api/trades", limit=1)) == 1
    curve = paper.get("/api/equity")
    assert len(curve) >= 2 and len(paper.get("/api/equity", points=2)) == 2
    assert paper.get("/api/equity", points=2)[-1] == curve[-1]
    assert paper.get("/api/sleeves", deployment=key) == paper.get("/api/sleeves")
    missing = paper.http.get("/api/sleeves", params={"deployment": "nope"})
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "no deployment 'nope'; strat status lists them"},
    )
    assert isinstance(paper.get("/api/orders", finished="true"), list)
    # The account: cash plus each held asset.
    balance = {b["asset"]: b["total"] for b in paper.get("/api/balance")}
    assert balance["USDT"] == paper.get("/api/status")["cash"]
    for p in positions:
        assert balance[p["symbol"].split("/")[0]] == p["qty"]


def _stream_until(http: httpx.Client, params: dict[str, str], kind: str, act: Any) -> dict[str, Any]:
    """Open the event stream, run `act()` once it is connected, and return the first event of `kind`."""
    with http.stream("GET", "/api/stream", params=params) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        for line in lines:
            if line == ": connected":
                break
        act()
        for line in lines:
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line[len("data: ") :])
                if event["kind"] == kind:
                    return event
    raise AssertionError(f"the stream ended before a {kind} event")


def test_commands_auth_and_the_stream(market: FakeBinance, tmp_path: Path) -> None:
    paper = PaperSession(market, tmp_path, env={"STRAT_API_TOKEN": "alice:tok-alice-1,bob:tok-bob-2"})
    try:
        answers: list[httpx.Response] = []
        with httpx.Client(base_url=paper.url, timeout=10) as anonymous:
            # No token, a wrong one, another scheme: 401 on every route; the right token: 200.
            for path in [*READS, "/api/stream", "/api/runs/1", "/api/runs/1/report"]:
                for headers in (
                    {},
                    {"Authorization": "Bearer nope"},
                    {"Authorization": "Basic dG9rLWFsaWNlLTE="},
                ):
                    answer = anonymous.get(path, headers=headers)
                    assert (answer.status_code, answer.json()["error"]) == (
                        401, "a valid bearer token is required (Authorization: Bearer <token>)",
                    ), path  # fmt: skip
                    answers.append(answer)
            for path in COMMANDS:
                answer = anonymous.post(path, json={"confirm": True})
                assert answer.status_code == 401, path
                answers.append(answer)
            assert paper.get("/api/status")["sleeves"] == 2
            bob = anonymous.get("/api/status", headers={"Authorization": "Bearer tok-bob-2"})
            assert bob.status_code == 200
            answers.append(bob)
            # The docs and the dashboard page load without a token (they hold no data).
            assert anonymous.get("/").status_code == 200 and anonymous.get("/openapi.json").status_code == 200
            # The stream takes the token as ?token= too (an EventSource cannot send a header).
            assert anonymous.get("/api/stream", params={"token": "nope"}).status_code == 401
            pause = _stream_until(
                anonymous, {"token": "tok-alice-1"}, "pause", lambda: paper.post("/api/pause", sleeve="btc")
            )
        assert (pause["sleeve"], pause["who"], pause["message"]) == (
            "btc", "api:alice", "paused: no new entries, exits still managed",
        )  # fmt: skip

        # Pause: the sleeve shows paused, held by the command; the event names who asked.
        sleeves = {s["name"]: s for s in paper.get("/api/sleeves")}
        assert (sleeves["btc"]["paused"], sleeves["btc"]["held"]) == (True, ["paused"])
        assert (sleeves["eth"]["paused"], sleeves["eth"]["held"]) == (False, [])
        assert paper.get("/api/status")["paused"] == ["btc"]
        [event] = [e for e in paper.get("/api/events") if e["kind"] == "pause"]
        assert (event["sleeve"], event["who"]) == ("btc", "api:alice")
        again = paper.post("/api/pause", sleeve="btc")
        assert again == {"ok": False, "message": "paused nothing: already paused", "sleeves": []}
        assert paper.post("/api/resume", sleeve="btc") == {
            "ok": True,
            "message": "resumed btc",
            "sleeves": ["btc"],
        }
        assert paper.get("/api/status")["paused"] == []
        assert paper.post("/api/pause") == {
            "ok": True,
            "message": "paused btc, eth",
            "sleeves": ["btc", "eth"],
        }
        assert paper.post("/api/resume")["sleeves"] == ["btc", "eth"]

        # Flatten and halt need an explicit confirmation; an unknown sleeve is a 404 naming the sleeves.
        refused = paper.http.post("/api/flatten", json={"sleeve": "btc"})
        assert (refused.status_code, refused.json()) == (
            400, {"error": 'flatten closes positions at market: send {"confirm": true} to do it'},
        )  # fmt: skip
        assert paper.http.post("/api/halt", json={}).status_code == 400
        unknown = paper.http.post("/api/pause", json={"sleeve": "sol"})
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"error": "no sleeve 'sol' in duo; its sleeves: btc, eth"},
        )
        flat = paper.post("/api/flatten", sleeve="btc", confirm=True)
        assert flat == {"ok": True, "message": "flatten: nothing held; paused until resumed", "sleeves": []}
        assert {s["name"]: s["held"] for s in paper.get("/api/sleeves")} == {"btc": ["paused"], "eth": []}
        halted = paper.post("/api/halt", confirm=True)
        assert (halted["ok"], halted["message"]) == (True, "halted: nothing held; no entries until reset")
        assert paper.get("/api/status")["halted"] is True
        assert all(s["halted"] for s in paper.get("/api/sleeves"))
        assert paper.post("/api/reset_halt") == {"ok": True, "message": "halt reset", "sleeves": []}
        assert paper.post("/api/reset_halt") == {"ok": False, "message": "no halt in force", "sleeves": []}
        assert paper.get("/api/status")["halted"] is False
        assert paper.post("/api/reload") == {"ok": False, "message": "the spec is unchanged", "sleeves": []}
        kinds = [(e["kind"], e["who"]) for e in paper.get("/api/events", limit=1000) if e["who"] != "engine"]
        assert kinds == [
            ("pause", "api:alice"), ("resume", "api:alice"), ("pause", "api:alice"), ("resume", "api:alice"),
            ("flatten", "api:alice"), ("halt", "api:alice"), ("reset_halt", "api:alice"),
            ("reset_halt", "api:alice"),
        ]  # fmt: skip
        # A reload of a broken spec keeps the running version; its diagnostics are the last reload.
        (tmp_path / "spec.strat").write_text(SPEC + "\nthis is not strat\n", encoding="utf-8")
        failed = paper.post("/api/reload")
        assert failed["ok"] is False and failed["message"].startswith(
            "reload failed; the running version stays:"
        )
        last = paper.get("/api/status")["last_reload"]
        assert last["ok"] is False and last["message"] == failed["message"]
        # The session goes on: a bar after the commands is processed.
        paper.bars(1)
        assert paper.get("/api/status")["state"] == "running"
    finally:
        paper.stop()
    # No token appears in any answer nor in the session's log.
    log = (tmp_path / "out" / "strat.log").read_text(encoding="utf-8")
    for secret in ("tok-alice-1", "tok-bob-2"):
        assert secret not in log
        assert not any(secret in a.text or secret in str(a.headers) for a in answers)


def _fuzzed(rng: random.Random) -> tuple[str, str, dict[str, str], dict[str, str], bytes | None]:
    """One random request: method, path, query, headers and body."""
    numbers = [
        "0",
        "-1",
        "1",
        "7",
        "2",
        "1000",
        "1001",
        "5000",
        "99999999999999999999999",
        "1e3",
        "0x10",
        "nan",
        "",
    ]
    words = [
        "btc",
        "x" * 400,
        "ünï",
        "%00",
        "true",
        "null",
        "'; drop table events; --",
        "..",
        "../../etc/passwd",
    ]
    path = rng.choice(
        [*READS, *COMMANDS, "/api/runs/1", "/api/runs/1/report", "/", "/docs", "/openapi.json",
         "/static/app.js", f"/api/runs/{rng.choice(numbers + words)}",
         f"/api/runs/{rng.choice(numbers)}/report",
         f"/api/{rng.choice(words)}", f"/{rng.choice(words)}", "/static/../app.py", "/static/",
         "/docs/assets/", "/api/" + "a" * 5000, "/api/status/extra", "/api//status", "/%ff%fe"]
    )  # fmt: skip
    method = rng.choice(["GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    keys = ["deployment", "limit", "points", "since_id", "finished", "token", "sleeve", "junk"]
    query = {rng.choice(keys): rng.choice(numbers + words) for _ in range(rng.randrange(3))}
    headers: dict[str, str] = {}
    kind = rng.randrange(8)
    body: bytes | None
    if kind == 0:
        body = None
    elif kind == 1:
        body = b"{" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))  # malformed JSON
        headers["Content-Type"] = "application/json"
    elif kind == 2:
        body = b"x" * rng.choice([65_537, 200_000])  # larger than the API accepts
        headers["Content-Type"] = "application/json"
    elif kind == 3:
        value = rng.choice([1, -1, 1e308, "btc", "", None, True, [], {}, ["btc"], {"a": 1}, "x" * 1000])
        body = json.dumps({rng.choice(["sleeve", "confirm", "extra"]): value}).encode()
        headers["Content-Type"] = "application/json"
    elif kind == 4:
        body = json.dumps(rng.choice([[], "btc", 3, None, True, [{"sleeve": "btc"}]])).encode()
        headers["Content-Type"] = "application/json"
    elif kind == 5:
        body = b"sleeve=btc&confirm=true"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif kind == 6:
        body = json.dumps({"sleeve": rng.choice(["nope", "eth"])}).encode()
        headers["Content-Type"] = rng.choice(
            ["application/json", "text/plain", "application/json; charset=latin-1"]
        )
    else:
        body = b'{"sleeve": "btc", "sleeve": 5}'
        headers["Content-Type"] = "application/json"
    if rng.random() < 0.2:
        headers["Authorization"] = rng.choice(
            ["Bearer", "Bearer a b", "Basic abc", "Bearer " + "z" * 3000, "x"]
        )
    return method, path, query, headers, body


def test_fuzzed_requests_never_get_a_5xx(paper: PaperSession) -> None:
    rng = random.Random(20261201)
    seen: dict[int, int] = {}
    with httpx.Client(base_url=paper.url, timeout=10) as client:
        for _ in range(400):
            method, path, query, headers, body = _fuzzed(rng)
            answer = client.request(method, path, params=query, headers=headers, content=body)
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (method, path, query, body, answer.text)
            if answer.status_code >= 400:
                # Every error is JSON with a sentence.
                assert set(answer.json()) == {"error"} and answer.json()["error"], (method, path, answer.text)
    # Each kind of refusal was met, and some requests were fine.
    assert {200, 404, 405, 413, 422} <= set(seen), seen
    # The session keeps running: it processes the next bar and answers as before.
    paper.bars(1)
    assert paper.get("/api/status")["state"] == "running"
