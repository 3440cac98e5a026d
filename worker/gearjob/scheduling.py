"""Scheduled background jobs (SUBMIT_JOB_EPOCH) and cancelling queued jobs.

A scheduled job is a background job with a time: gearmand stores it (with ``when_to_run`` in
a persistent queue table) and hands it to a worker only from that second on. What gearmand
1.1 does not do, and how gearjob deals with it:

* there is no SUBMIT_JOB_EPOCH with a priority: a priority other than "normal" is refused;
* it does not wake sleeping workers when the time comes: gearjob workers ask again every
  second while idle (other workers get the job when something else wakes them);
* it compares the time with its own clock (whole seconds, UTC epoch): a clock set back
  delays the job, a clock set forward runs it early;
* the memory queue forgets scheduled jobs when gearmand stops, like every queued job;
* a time in the past would run the job at once: refused here, as is a time more than
  :data:`MAX_DELAY` ahead (a typo, most likely).

Cancelling uses the admin protocol's ``cancel job HANDLE``. gearmand answers OK even for a
running job, which it then lets finish; gearjob first asks GET_STATUS and refuses to cancel
a running or unknown job (:class:`JobRunning`, :class:`JobNotFound`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import TYPE_CHECKING

from .errors import GearjobError, ProtocolError, ServerUnavailable

if TYPE_CHECKING:
    from .client import Client, JobStatus, _Server

#: the furthest ahead a job may be scheduled (seconds): a year
MAX_DELAY = 366 * 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhd]))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
DURATION_HELP = "a number of seconds, or parts like 90s, 10m, 2h, 1d, 1h30m"


class JobNotFound(GearjobError):
    """No job server knows the job handle (it ended, was never queued, or the server
    restarted with a memory queue)."""


class JobRunning(GearjobError):
    """The job is running on a worker: gearmand cannot cancel it."""


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "2h", "1d" or "1h30m"; ValueError naming the text."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        if not _DURATION.fullmatch(value):
            raise ValueError(f"bad duration {text!r}: use {DURATION_HELP}") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"bad duration {text!r}: it must be more than 0 seconds")
    return seconds


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 date and time ("2026-12-24T18:00", "2026-12-24 18:00:30+01:00"); without
    an offset it is local time."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use an ISO 8601 date and time like 2026-12-24T18:00 (local "
            "time) or 2026-12-24T18:00+01:00"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def epoch_for(
    at: dt.datetime | None, delay: float | None, *, now: float | None = None
) -> int | None:
    """The UTC epoch second to run at (None: no schedule). ValueError for both ``at`` and
    ``delay``, a time in the past, a delay that is not above 0, or more than MAX_DELAY."""
    if at is None and delay is None:
        return None
    now = time.time() if now is None else now
    if at is not None and delay is not None:
        raise ValueError("give either at= (a datetime) or delay= (seconds), not both")
    if at is not None:
        if not isinstance(at, dt.datetime):
            raise ValueError(f"at must be a datetime, not {at!r}")
        aware = at if at.tzinfo is not None else at.astimezone()
        when = aware.timestamp()
        if when <= now:
            raise ValueError(
                f"at={aware.isoformat()} is in the past (now is "
                f"{dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec='seconds')}); "
                "give a later time, or submit the job without one to run it now"
            )
    else:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise ValueError(f"delay must be a number of seconds, not {delay!r}")
        if not math.isfinite(delay) or delay <= 0:
            raise ValueError(f"delay must be more than 0 seconds, not {delay!r}")
        when = now + delay
    if when - now > MAX_DELAY:
        raise ValueError(
            f"the job would run {(when - now) / 86400:.0f} days from now, more than "
            f"{MAX_DELAY // 86400}; check the time"
        )
    return math.ceil(when)  # gearmand counts whole seconds: never before the time asked


def cancel(client: Client, handle: str) -> JobStatus:
    """Cancel a queued background job; its JobStatus before. Raises JobNotFound,
    JobRunning, ServerUnavailable, ProtocolError (gearmand refused)."""
    server, status = _locate(client, handle)
    if status.running:
        progress = f", {status.numerator}/{status.denominator} done" if status.denominator else ""
        raise JobRunning(
            f"job {handle} is running on a worker on {server.name}{progress}: gearmand cannot "
            "cancel a running job; it ends when the worker finishes it"
        )
    address = server.address
    from .protocol import admin_command

    try:
        lines = admin_command(address, f"cancel job {handle}", timeout=client.connect_timeout)
    except ProtocolError as exc:
        if "UNKNOWN_JOB" in str(exc):
            raise JobNotFound(
                f"job {handle} ended before it could be cancelled ({server.name})"
            ) from None
        raise
    except OSError as exc:
        raise ServerUnavailable(
            f"{server.name}: cannot send cancel job: {exc}", server.name
        ) from exc
    answer = lines[0] if lines else ""
    if not answer.startswith("OK"):
        raise ProtocolError(f"{server.name} refused to cancel job {handle}: {answer!r}")
    return status


def _locate(client: Client, handle: str) -> tuple[_Server, JobStatus]:
    """The one server that knows ``handle`` and its status there."""
    found = client._locate_handle(handle)
    if not found:
        raise JobNotFound(
            f"no job server knows job {handle} (asked {', '.join(client_names(client))}): it "
            "has ended, was cancelled and dropped, or its server restarted with a memory queue"
        )
    if len(found) > 1:
        names = ", ".join(server.name for server, _ in found)
        raise GearjobError(
            f"job handle {handle} is known to several servers ({names}); gearmand's handles "
            "name its host, so these servers share a host name: cancel it with a client of "
            "only the server that queued it"
        )
    return found[0]


def client_names(client: Client) -> list[str]:
    return [str(address) for address in client.servers]
