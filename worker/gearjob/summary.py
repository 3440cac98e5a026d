"""What a worker logs about the jobs that went well: a summary line per function and minute.

A line per successful job costs a busy worker more than many jobs do (formatting, the write, and
under systemd a journal entry), and nobody reads thousands of them. So by default the worker
counts its jobs here and logs, once per :data:`INTERVAL` and when it exits, one INFO line per
function that ran in that time::

    summary: job resize in the last 60 s: 1204 ok, 2 failed, 1 timed out; 0.012 s mean, 1.305 s max

Failures, timeouts and slow jobs are still logged one by one, with function and handle (the
worker does that); ``log_each_job = true`` in worker.toml (``--log-each-job``) brings back the
line per successful job. The counters for monitoring are in :mod:`gearjob.stats`.

Pure bookkeeping: the caller passes the clock readings, so tests need no sleeping.
"""

from __future__ import annotations

__all__ = ["FAILED", "INTERVAL", "OK", "TIMED_OUT", "Summary"]

#: seconds between two summaries
INTERVAL = 60.0
#: outcomes of a job (indexes into a function's counters)
OK, FAILED, TIMED_OUT = 0, 1, 2


class _Counts:
    """One function's jobs in the current period."""

    __slots__ = ("counts", "longest", "total")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # OK, FAILED, TIMED_OUT
        self.total = 0.0  # seconds, all outcomes
        self.longest = 0.0


class Summary:
    """Counts jobs per function; :meth:`add` returns the lines to log when a period ended."""

    def __init__(self, start: float, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._start = start
        self._due = start + interval
        self._functions: dict[str, _Counts] = {}

    def add(self, name: str, outcome: int, duration: float, now: float) -> list[str]:
        """Count a job that ended at ``now`` after ``duration`` seconds; the summary lines
        when the period is over (usually none)."""
        counts = self._functions.get(name)
        if counts is None:
            counts = self._functions[name] = _Counts()
        counts.counts[outcome] += 1
        counts.total += duration
        counts.longest = max(counts.longest, duration)
        if now < self._due:
            return []
        return self.lines(now)

    def due(self, now: float) -> list[str]:
        """The summary lines if the period is over (an idle worker calls this now and then)."""
        if now < self._due:
            return []
        return self.lines(now)

    def lines(self, now: float) -> list[str]:
        """One line per function that ran since the last summary; starts a new period."""
        seconds = max(0.0, now - self._start)
        out = [_line(name, counts, seconds) for name, counts in sorted(self._functions.items())]
        self._functions = {}
        self._start = now
        self._due = now + self.interval
        return out


def _line(name: str, counts: _Counts, seconds: float) -> str:
    ok, failed, timed_out = counts.counts
    jobs = ok + failed + timed_out
    parts = [f"{ok} ok"]
    if failed:
        parts.append(f"{failed} failed")
    if timed_out:
        parts.append(f"{timed_out} timed out")
    return (
        f"summary: job {name} in the last {seconds:.0f} s: {', '.join(parts)}; "
        f"{counts.total / jobs:.3f} s mean, {counts.longest:.3f} s max"
    )
