"""What a careless or hostile job, or the producer of its workload, must not do to its worker.

The worker serves everyone: one job must not grow its memory or its log without limit, kill
it by raising an exception that is not an :class:`Exception`, leave a forked copy of it
behind, or escape its time limit. The helpers here keep :class:`gearjob.worker.Worker`'s job
path short:

* :func:`shorten` bounds any text from a workload before it is logged;
* :class:`ExtraFields` logs unknown envelope fields with a bounded memory and log;
* :func:`call` runs the job function and makes a forked child end with the job
  (``os._exit``) instead of returning into the worker's loop;
* :func:`hard_grace` and :func:`stop_stuck_job`: a job that swallows its timeout is
  failed and the worker exits (exit code 5), so that a fresh one takes over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gearjob.worker")

#: characters of a name or value from a workload that a log line shows
MAX_SHOWN = 120
#: unknown envelope fields: at most this many names are shown per job
MAX_FIELDS_SHOWN = 8
#: distinct sets of unknown envelope fields warned about (later ones are logged at DEBUG)
MAX_WARNED = 256
#: a job past its deadline is stopped hard after as long again as its limit, within these
HARD_GRACE_MIN = 2.0
HARD_GRACE_MAX = 30.0
#: the worker's exit code after it stopped a job hard (the CLI's "a job timed out")
EXIT_STUCK_JOB = 5


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class ExtraFields:
    """Logs the unknown fields of job envelopes.

    The first time a job comes with a set of unknown field names it is a warning, later
    times debug. At most MAX_WARNED sets are remembered: a producer that invents new
    names for every job would otherwise grow the worker's memory and log without end.
    Past that, every set is logged at debug level only. Names are shortened.
    """

    def __init__(self) -> None:
        self._warned: set[tuple[str, tuple[str, ...]]] = set()
        self._full = False

    def log(self, name: str, handle: str, extra: dict[str, Any]) -> None:
        fields = sorted(extra)
        shown = [shorten(field, 40) for field in fields[:MAX_FIELDS_SHOWN]]
        if len(fields) > MAX_FIELDS_SHOWN:
            shown.append(f"and {len(fields) - MAX_FIELDS_SHOWN} more")
        key = (name, tuple(shown))
        level = logging.DEBUG
        if key not in self._warned and not self._full:
            level = logging.WARNING
            self._warned.add(key)
            if len(self._warned) >= MAX_WARNED:
                self._full = True
                log.warning(
                    "%d different sets of unknown envelope fields seen: further ones are "
                    "logged at debug level only",
                    MAX_WARNED,
                )
        if log.isEnabledFor(level):
            log.log(
                level,
                "job %s %s: ignoring unknown envelope field(s) %s",
                name,
                handle,
                ", ".join(shown),
            )


def call(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], worker_pid: int) -> Any:
    """``func(*args, **kwargs)``; in a process the job forked, end that process here.

    A job that forks and lets its child return (or raise, even SystemExit) would otherwise
    leave the child in the worker's loop, a second worker on the same connection.
    """
    try:
        return func(*args, **kwargs)
    finally:
        if os.getpid() != worker_pid:
            _end_child(sys.exc_info()[1])


def _end_child(exc: BaseException | None) -> None:
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def hard_grace(limit: float) -> float:
    """Seconds past its deadline after which a job that ignores JobTimeout is stopped."""
    return min(HARD_GRACE_MAX, max(HARD_GRACE_MIN, limit))


def stop_stuck_job(
    name: str, handle: str, limit: float, send_fail: Callable[[], None], record: Callable[[], None]
) -> None:
    """End the worker: the job ignored its timeout for hard_grace(limit) seconds.

    Python cannot unwind a job that catches every exception, so the job is failed
    (``send_fail``: WORK_FAIL to its server) and the process exits with EXIT_STUCK_JOB;
    systemd starts a fresh worker. Never returns.
    """
    log.error(
        "job %s %s ignored its time limit of %g s for %g s more: failing it and exiting "
        "(exit code %d) so that a fresh worker takes over",
        name,
        handle,
        limit,
        hard_grace(limit),
        EXIT_STUCK_JOB,
    )
    with contextlib.suppress(Exception):
        send_fail()
    with contextlib.suppress(Exception):
        record()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_STUCK_JOB)
