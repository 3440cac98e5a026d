"""The job context: what a running Python job can learn and tell about itself.

>>> from gearjob import current_job                       # doctest: +SKIP
>>> def reindex(ids):
...     job = current_job()
...     for done, item in enumerate(ids, 1):
...         index(item)
...         job.progress(done, len(ids))                 # WORK_STATUS
...     job.send_data("partial output")                  # WORK_DATA
...     job.warn("3 items skipped")                       # WORK_WARNING

The worker daemon puts a tuple in :data:`slot` before it calls a job's function and clears
it afterwards: those two list stores (and a look at :data:`lock`) are all a job that never
asks pays. :func:`current_job` builds a :class:`JobContext` from the tuple on demand.

The packets go out on the connection the job came from. A job may call these methods from
threads it started: every send holds :data:`lock`, and the worker waits for a send in
progress (``lock.locked()``) before it writes the job's result, so packets never interleave.
A send after the job ended raises :class:`JobEnded`, it never reaches the server.
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import GearjobError, ServerUnavailable
from .protocol import Cmd, pack

__all__ = ["JobContext", "JobEnded", "NotInJob", "current_job"]

Token = tuple[Any, bytes, bytes, bytes]
#: ``slot[0]``: the running job, set by the worker: (connection, raw handle, raw function,
#: raw unique), or None (a list: storing into it costs a job less than a module attribute)
slot: list[Token | None] = [None]
#: held by every send of a job context; the worker waits for it before sending a result
lock = threading.Lock()

#: the most a WORK_STATUS numerator or denominator may be (gearmand reads them as uint32)
MAX_STATUS = 2**32 - 1


class NotInJob(GearjobError, RuntimeError):
    """current_job() was called outside a job run by the gearjob worker daemon."""


class JobEnded(GearjobError, RuntimeError):
    """A job context was used after its job had ended (e.g. from a thread the job left
    running): the packet was not sent."""


def wait_sends() -> None:
    """Wait until a send in progress from a job's thread is over (the worker calls this
    after clearing :data:`slot`, before it writes the job's result)."""
    with lock:
        pass


def current_job() -> JobContext:
    """The job this worker is running (from the job's function or any thread it started).

    Raises :class:`NotInJob` outside a job: in a client, in a test calling the function
    directly, or in a worker between jobs.
    """
    token = slot[0]
    if token is None:
        raise NotInJob(
            "gearjob.current_job() was called outside a job: it only works while the gearjob "
            "worker runs a Python job function (call the function through a worker, or "
            "pass a stand-in to code that reports progress when you call it directly)"
        )
    return JobContext(token)


class JobContext:
    """One running job: its function name, handle and unique key, and the packets it can
    send to the client that waits for it (foreground jobs; background jobs have none, and
    the server keeps only the last progress, for ``gearjob status --handle``)."""

    __slots__ = ("_token", "function", "handle", "unique")

    def __init__(self, token: Token) -> None:
        self._token = token
        self.handle = token[1].decode("utf-8", "replace")
        self.function = token[2].decode("utf-8", "replace")
        self.unique = token[3].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<JobContext {self.function} {self.handle} unique={self.unique!r}>"

    @property
    def running(self) -> bool:
        """False once the job has ended (sends then raise JobEnded)."""
        return slot[0] is self._token

    def progress(self, numerator: int, denominator: int) -> None:
        """Report progress (WORK_STATUS): ``numerator`` of ``denominator`` done.

        Both are whole numbers, 0 <= numerator and 0 < denominator <= 2**32 - 1 (what
        gearmand stores); a numerator above the denominator is allowed (clients show it
        as it is)."""
        for name, value in (("numerator", numerator), ("denominator", denominator)):
            if type(value) is not int or not 0 <= value <= MAX_STATUS:
                raise ValueError(
                    f"progress {name} must be a whole number from 0 to {MAX_STATUS}, not {value!r}"
                )
        if denominator == 0:
            raise ValueError("progress denominator must be above 0, not 0")
        self._send(Cmd.WORK_STATUS, str(numerator).encode(), str(denominator).encode())

    def send_data(self, chunk: bytes | str) -> None:
        """Send a piece of output now (WORK_DATA): a foreground client gets it before the
        result (see docs/job-context-and-scheduling.md for what each client makes of it)."""
        self._send(Cmd.WORK_DATA, _as_bytes(chunk, "send_data"))

    def warn(self, message: bytes | str) -> None:
        """Send a warning to the waiting client (WORK_WARNING); the job goes on."""
        self._send(Cmd.WORK_WARNING, _as_bytes(message, "warn"))

    def _send(self, cmd: Cmd, *args: bytes) -> None:
        token = self._token
        packet = pack(cmd, token[1], *args)
        with lock:
            if slot[0] is not token:
                raise JobEnded(
                    f"job {self.function} {self.handle} has ended: its {cmd.name} was not "
                    "sent (a thread the job started outlived it; join such threads before "
                    "the job returns)"
                )
            try:
                token[0].send_bytes(packet)
            except (OSError, TimeoutError, ServerUnavailable) as exc:
                raise ServerUnavailable(
                    f"job {self.function} {self.handle}: its {cmd.name} could not be sent, "
                    f"the job server went away: {exc}"
                ) from exc


def _as_bytes(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what}() takes bytes or str, not {type(value).__name__}")
