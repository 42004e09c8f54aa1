"""The one kind of error a user is shown as a plain line: `StratError`.

Every problem the user can act on (bad data, a market the exchange refuses, a store that cannot be
opened, a spec that cannot be run as asked) is raised as a subclass of `StratError` whose message says
everything: what, where (file and row, symbol and range, URL) and, where it helps, what to do. The CLI's
error boundary (`runtime.cli.main`) prints such an error as one line; anything else is a bug, reported
as a short internal-error line with the path of a log file holding the full trace. No traceback ever
reaches the user.
"""

from __future__ import annotations


class StratError(Exception):
    """A problem the user can act on; its message is complete and is printed as it is."""
