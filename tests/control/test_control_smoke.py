"""The control service over a running paper session: status over HTTP, a pause recorded with who asked."""

from __future__ import annotations

from control_session import PaperSession


def test_status_over_http(paper: PaperSession) -> None:
    """The API of a fresh paper session reports it running, both sleeves flat."""
    status = paper.get("/api/status")
    assert status["mode"] == "paper"
    assert status["state"] == "running" and status["attached"] is True
    assert status["sleeves"] == 2 and status["positions"] == 0
