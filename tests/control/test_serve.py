"""`strat serve` over the store of a stopped session and of backtest runs; binds refused without a token."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_session import SPEC, PaperSession
from fake_binance import FakeBinance
from test_api import COMMANDS, CONFIRMED, _csv_trades, _until_a_fill
from test_paper import _env

from runtime.cli import main


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
def test_a_public_address_without_a_token_is_refused(
    tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRAT_API_TOKEN", raising=False)
    (tmp_path / "spec.strat").write_text(SPEC, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    host = address.rpartition(":")[0].strip("[]")
    why = (
        f"{host} is reachable from other machines and STRAT_API_TOKEN is not set: set a token, or listen on "
        "127.0.0.1"
    )
    assert main(["serve", "--api", address, "--db", db]) == 2
    assert capsys.readouterr().err == f"strat serve: --api {address}: {why}\n"
    monkeypatch.chdir(tmp_path)
    code = main([
        "run", "spec.strat", "--paper", "--api", address, "--exchange-url", "http://127.0.0.1:9", "--db", db,
        "--out", "out",
    ])  # fmt: skip
    assert (code, capsys.readouterr().err) == (2, f"strat run: --api {address}: {why}\n")
    # Refused before anything started: no store, no outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.strat"]


NOTIFY_REFUSALS = [
    ({"STRAT_TELEGRAM_TOKEN": "123:abc"}, "the Telegram bot needs both STRAT_TELEGRAM_TOKEN and "
     "STRAT_TELEGRAM_CHATS (the allowed chat ids); STRAT_TELEGRAM_CHATS is not set"),
    ({"STRAT_TELEGRAM_CHATS": "777"}, "the Telegram bot needs both STRAT_TELEGRAM_TOKEN and "
     "STRAT_TELEGRAM_CHATS (the allowed chat ids); STRAT_TELEGRAM_TOKEN is not set"),
    ({"STRAT_TELEGRAM_TOKEN": "123:abc", "STRAT_TELEGRAM_CHATS": "777, @someone"},
     "STRAT_TELEGRAM_CHATS: '@someone' is not a chat id (an integer; a group's is negative)"),
    ({"STRAT_LARK_WEBHOOK": "open-apis/bot/v2/hook/5e1f"}, "STRAT_LARK_WEBHOOK is not an http(s) "
     "address (the custom bot's webhook address, https://.../open-apis/bot/v2/hook/...)"),
    ({"STRAT_LARK_WEBHOOK": "https:///open-apis/bot/v2/hook/5e1f"}, "STRAT_LARK_WEBHOOK is not an "
     "http(s) address (the custom bot's webhook address, https://.../open-apis/bot/v2/hook/...)"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "why"), NOTIFY_REFUSALS)
def test_bot_and_notification_settings_that_cannot_work_are_refused(
    tmp_path: Path,
    env: dict[str, str],
    why: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Half the bot's settings, a chat id or a webhook that is not one: one line, exit 2, nothing started.

    Each would otherwise lose messages in silence (the bot off, a chat left out, every delivery failing).
    """
    for name in ("STRAT_TELEGRAM_TOKEN", "STRAT_TELEGRAM_CHATS", "STRAT_LARK_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "spec.strat").write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main([
        "run", "spec.strat", "--paper", "--api", "127.0.0.1:0", "--exchange-url", "http://127.0.0.1:9",
        "--db", f"sqlite:///{tmp_path / 'store.db'}", "--out", "out",
    ])  # fmt: skip
    assert (code, capsys.readouterr().err) == (2, f"strat run: {why}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.strat"]


class Served:
    """A `strat serve` process over a store, on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, db: str) -> None:
        """Start it and wait for its address."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "serve", "--api", "127.0.0.1:0", "--db", db],
            cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.errors: list[str] = []  # its stderr lines (the log goes there)
        found = threading.Event()

        def read() -> None:
            """Collect stderr; note when the address is logged."""
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.errors.append(line)
                if "API and dashboard on" in line:
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        assert found.wait(60), "".join(self.errors)
        url = next(re.search(r"(http://[\d.]+:\d+)/", x) for x in self.errors if "API and dashboard" in x)
        assert url is not None
        self.http = httpx.Client(base_url=url.group(1), timeout=10)  # its client

    def get(self, path: str, **params: Any) -> Any:
        """GET a path's JSON, asserting 200."""
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()


def test_serve_shows_a_stopped_session_and_backtest_runs(
    market: FakeBinance, shared_data: Path, tmp_path: Path, browser_factory: Any
) -> None:
    # A paper session that traded, then stopped.
    paper = PaperSession(market, tmp_path)
    try:
        _until_a_fill(paper)
        paper.wait(lambda: len(_csv_trades(paper)) == len(paper.get("/api/trades")), "trades.csv")
        seen = {path: paper.get(path) for path in ("/api/sleeves", "/api/trades", "/api/positions")}
        key = paper.get("/api/status")["deployment"]
        events = paper.get("/api/events", limit=1000)
    finally:
        paper.stop()
    # A backtest run saved in the same store, with its report.
    bt = tmp_path / "bt"
    code = main([
        "run", str(tmp_path / "spec.strat"), "--backtest", "--data", str(shared_data), "--from", "2024-03-01",
        "--to", "2024-03-03", "--db", paper.db, "--out", str(bt),
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((bt / "summary.json").read_text())

    served = Served(tmp_path, paper.db)
    try:
        # The runs: listed, one in detail, its report served as the file.
        [run] = served.get("/api/runs")
        assert (run["id"], run["spec"], run["mode"], run["report"]) == (1, "spec", "backtest", True)
        assert run["total_return"] == summary["total_return"]
        detail = served.get("/api/runs/1")
        assert detail["run"] == run and detail["trades"] == len(_csv_trades_of(bt))
        assert detail["summary"]["final_equity"] == summary["final_equity"]
        report = served.http.get("/api/runs/1/report")
        assert report.status_code == 200 and report.headers["content-type"] == "text/html; charset=utf-8"
        assert report.content == (bt / "report.html").read_bytes()
        assert served.http.get("/api/runs/2").status_code == 404
        assert served.http.get("/api/runs/2/report").json() == {
            "error": "no saved run 2; strat runs lists them"
        }
        # The stopped deployment, as it was persisted.
        [deployment] = served.get("/api/deployments")
        assert (deployment["key"], deployment["state"], deployment["attached"]) == (key, "stopped", False)
        status = served.get("/api/status")
        assert (status["deployment"], status["state"], status["attached"]) == (key, "stopped", False)
        # Sleeves and positions as the session last showed them; trades: the closed ones (the store keeps
        # an open trade as the sleeve's position).
        assert served.get("/api/sleeves") == seen["/api/sleeves"]
        assert served.get("/api/positions") == seen["/api/positions"] != []
        assert served.get("/api/trades") == [t for t in seen["/api/trades"] if t["closed"]]
        assert served.get("/api/events", limit=1000)[: len(events)] == events
        # Commands need the process running the engine: 409 with a sentence.
        refused = (
            f"deployment {key} does not run in this process: commands go to the process that runs it "
            "(strat run SPEC --paper|--live)"
        )
        for path in COMMANDS:
            answer = served.http.post(path, json={"confirm": True} if path in CONFIRMED else {})
            assert (answer.status_code, answer.json()) == (409, {"error": refused}), path
        # The dashboard lists the run; its report opens in one click (fetched with the token, as a blob).
        b = browser_factory(str(served.http.base_url).rstrip("/"))
        b.page.goto(f"{served.http.base_url}")
        b.page.wait_for_selector('#runs a[data-run="1"]')
        assert b.page.locator("#runs tbody tr td").nth(2).text_content() == "spec"
        with b.page.expect_popup() as opened:
            b.page.click('#runs a[data-run="1"]')
        report_page = opened.value
        report_page.wait_for_url("blob:**")
        report_page.wait_for_load_state()
        assert report_page.title() == "duo: backtest report"
        assert b.page.locator("#status dd").nth(1).text_content() == "stopped"
        assert b.errors == [] and b.remote == []
        # An open event stream does not hold the server up: on SIGTERM it ends cleanly and the process exits.
        with served.http.stream("GET", "/api/stream") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            assert next(lines) == ": connected"
            served.proc.send_signal(signal.SIGTERM)
            assert list(lines) == [""]
        assert served.proc.wait(timeout=60) == 0
        assert not any("timeout graceful shutdown" in line for line in served.errors)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
        served.http.close()


def _csv_trades_of(folder: Path) -> list[str]:
    """The data rows of a run's trades.csv."""
    return (folder / "trades.csv").read_text().splitlines()[1:]


def test_the_api_socket_answers_without_delayed_acks() -> None:
    """The bound socket names TCP, so that asyncio sets TCP_NODELAY on each connection it accepts.

    A socket made with protocol 0 served every small answer about 40 ms late (Nagle's algorithm waiting
    for the client's delayed ACK): 48 ms for a static file instead of 1.7 ms in bench_control.py.
    """
    from runtime.api import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert (sock.family, sock.type, sock.proto) == (
            socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
