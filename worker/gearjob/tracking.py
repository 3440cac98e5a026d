"""Following jobs a client waits for: one foreground job (:func:`await_result`), the events a
running job sends (progress, data, warnings) and the foreground batch (:class:`Batch`, used by
:meth:`Client.run_batch`).

A job sends WORK_STATUS (progress), WORK_DATA (a piece of output) and WORK_WARNING to the
client waiting for it, before its result. :class:`Events` holds a caller's callbacks for
them; a job without callbacks costs nothing more than before (the packets are skipped).
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import GearjobError, JobFailed, JobTimeout, ProtocolError, ServerUnavailable
from .payload import decode_exception, decode_result
from .protocol import Cmd

if TYPE_CHECKING:
    from .client import Client, _Server

#: packets that end a job
FINAL = frozenset((Cmd.WORK_COMPLETE, Cmd.WORK_EXCEPTION, Cmd.WORK_FAIL))
#: packets a running job sends before its result
EVENTS = frozenset((Cmd.WORK_STATUS, Cmd.WORK_DATA, Cmd.WORK_WARNING))
#: packets a client skips while it waits (events without a callback among them)
SKIPPED = EVENTS | {Cmd.OPTION_RES, Cmd.NOOP}
_COMPLETE = Cmd.WORK_COMPLETE
_CREATED = Cmd.JOB_CREATED

OnData = Callable[[bytes], Any]
OnProgress = Callable[[int, int], Any]
OnWarning = Callable[[str], Any]


def handle_text(handle: bytes) -> str:
    return handle.rstrip(b"\0").decode("utf-8", "replace")


def timeout_text(timeout: float | None) -> str:
    return f"{timeout:g} s" if timeout is not None else "the time limit"


def failure(job_name: str, handle: str | None, cmd: Cmd, args: tuple[bytes, ...]) -> JobFailed:
    if cmd == Cmd.WORK_EXCEPTION:
        exc_type, message = decode_exception(args[1])
        return JobFailed(job_name, handle, exc_type, message)
    return JobFailed(
        job_name,
        handle,
        None,
        "the worker reported a failure without details (WORK_FAIL); see the worker's log",
    )


class JobResult(NamedTuple):
    """The outcome of one job of a batch: ``value`` when ``ok``, else ``error``."""

    job_name: str
    ok: bool
    value: Any
    error: GearjobError | None
    handle: str | None


def _number(raw: bytes) -> int:
    return int(raw) if raw.isdigit() else 0


@dataclass(frozen=True)
class Events:
    """A caller's callbacks for what a running job sends: ``on_data(chunk)`` (bytes, as
    sent), ``on_progress(numerator, denominator)``, ``on_warning(message)`` (text). An
    exception raised by a callback abandons the wait and propagates to the caller."""

    on_data: OnData | None = None
    on_progress: OnProgress | None = None
    on_warning: OnWarning | None = None

    @staticmethod
    def of(
        on_data: OnData | None, on_progress: OnProgress | None, on_warning: OnWarning | None
    ) -> Events | None:
        """The callbacks, None when there are none (the waits then skip every event)."""
        if on_data is None and on_progress is None and on_warning is None:
            return None
        for name, value in (
            ("on_data", on_data),
            ("on_progress", on_progress),
            ("on_warning", on_warning),
        ):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, not {value!r}")
        return Events(on_data, on_progress, on_warning)

    def dispatch(self, cmd: Cmd, args: tuple[bytes, ...]) -> None:
        """Call the callback for one WORK_STATUS / WORK_DATA / WORK_WARNING packet."""
        if cmd is Cmd.WORK_DATA:
            if self.on_data is not None:
                self.on_data(args[1])
        elif cmd is Cmd.WORK_STATUS:
            if self.on_progress is not None:
                self.on_progress(_number(args[1]), _number(args[2]))
        elif self.on_warning is not None:
            self.on_warning(args[1].decode("utf-8", "replace"))


def await_result(
    server: _Server,
    job_name: str,
    handle: bytes,
    deadline: float | None,
    limit: float | None,
    *,
    events: Events | None = None,
) -> Any:
    """Wait on ``server``'s connection for the result of the foreground job ``handle``,
    handing its events to ``events``; raise what the job or the connection came to."""
    conn = server.conn
    next_packet = conn.next_packet
    while True:
        try:
            cmd, args = next_packet(deadline, limit)
        except TimeoutError as exc:
            conn.close()  # gearmand then skips the job: nobody waits for it
            raise JobTimeout(
                f"job {job_name} ({handle_text(handle)}) did not finish within "
                f"{timeout_text(limit)}",
                job_name=job_name,
                handle=handle_text(handle),
                timeout=limit,
            ) from exc
        except ServerUnavailable as exc:
            server.failed(exc)
            raise ServerUnavailable(
                f"{exc} while waiting for job {job_name} ({handle_text(handle)})",
                server.name,
            ) from exc
        except ProtocolError as exc:  # e.g. a result larger than max_packet_size
            raise ProtocolError(
                f"{exc}; while waiting for job {job_name} ({handle_text(handle)})"
            ) from exc
        if cmd is _COMPLETE and args[0] == handle:
            return decode_result(args[1])
        if cmd in FINAL:
            if args[0].rstrip(b"\0") != handle:
                continue  # a job abandoned earlier on this connection
            if cmd is _COMPLETE:
                return decode_result(args[1])
            raise failure(job_name, handle_text(handle), cmd, args)
        if cmd in SKIPPED:
            if events is not None and cmd in EVENTS and args[0] == handle:
                try:
                    events.dispatch(cmd, args)
                except BaseException:
                    conn.close()  # the job is abandoned: gearmand then skips it
                    raise
            continue
        conn.close()
        raise ProtocolError(
            f"{server.name}: unexpected {cmd.name} packet while job {job_name} "
            f"({handle_text(handle)}) was running"
        )


class BatchEvents:
    """Callbacks of a batch: like :class:`Events`, with the job's index in the input first."""

    __slots__ = ("on_data", "on_progress", "on_warning")

    def __init__(
        self,
        on_data: Callable[[int, bytes], Any] | None,
        on_progress: Callable[[int, int, int], Any] | None,
        on_warning: Callable[[int, str], Any] | None,
    ) -> None:
        self.on_data = on_data
        self.on_progress = on_progress
        self.on_warning = on_warning

    def dispatch(self, index: int, cmd: Cmd, args: tuple[bytes, ...]) -> None:
        if cmd is Cmd.WORK_DATA:
            if self.on_data is not None:
                self.on_data(index, args[1])
        elif cmd is Cmd.WORK_STATUS:
            if self.on_progress is not None:
                self.on_progress(index, _number(args[1]), _number(args[2]))
        elif self.on_warning is not None:
            self.on_warning(index, args[1].decode("utf-8", "replace"))


class BatchJob:
    """One job of a batch: its place in the input, its packet, its handle once created."""

    __slots__ = ("attempts", "handle", "index", "job_name", "packet")

    def __init__(self, index: int, job_name: str, packet: bytes) -> None:
        self.index = index
        self.job_name = job_name
        self.packet = packet
        self.handle: bytes | None = None
        self.attempts = 0

    @property
    def handle_text(self) -> str | None:
        return None if self.handle is None else self.handle.decode("utf-8", "replace")


@dataclass(eq=False)
class _BatchConn:
    server: _Server
    awaiting: deque[BatchJob] = field(default_factory=deque)  # sent, no JOB_CREATED yet
    running: dict[bytes, list[BatchJob]] = field(default_factory=dict)  # by handle

    @property
    def busy(self) -> bool:
        return bool(self.awaiting or self.running)


class Batch:
    """One run of :meth:`Client.run_batch`: the jobs pipelined over every reachable server,
    each connection watched with a selector until every job has a result or the deadline
    passed. A lost connection resubmits the jobs it had not created yet (three attempts at
    most) and fails the ones it was running."""

    def __init__(
        self,
        client: Client,
        jobs: list[BatchJob],
        results: list[JobResult | None],
        on_result: Callable[[int, JobResult], None] | None,
        events: BatchEvents | None,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.results = results
        self.on_result = on_result
        self.events = events
        self.left = len(jobs)
        self.live: list[_BatchConn] = []
        self.registered: dict[_BatchConn, int] = {}
        self.changed: set[_BatchConn] = set()
        self.selector = selectors.DefaultSelector()

    def run(self, deadline: float | None, limit: float | None) -> None:
        errors: list[ServerUnavailable] = []
        client = self.client
        for server in client._order():
            try:
                client._connect(server, deadline)
            except ServerUnavailable as exc:
                errors.append(exc)
                continue
            server.conn.clear_hint()  # selectors must see every byte
            self.live.append(_BatchConn(server))
        if not self.live:
            self.selector.close()
            raise client._unavailable(errors)
        live = self.live
        for i, job in enumerate(self.jobs):
            self._assign(job, live[i % len(live)])
        for bc in live:
            fd = bc.server.conn.fileno()
            self.registered[bc] = fd
            self.selector.register(fd, selectors.EVENT_READ, bc)
            self.changed.add(bc)
        try:
            self._loop(deadline)
            self._time_out(limit)
        finally:
            self.selector.close()
            for bc in live:
                if bc.busy or bc.server.conn.pending_output:
                    bc.server.conn.close()  # abandons its jobs; the next call reconnects

    def _loop(self, deadline: float | None) -> None:
        live = self.live
        changed = self.changed
        selector = self.selector
        while self.left > 0 and live:
            for bc in list(changed):
                changed.discard(bc)
                if bc not in live:
                    continue
                try:
                    done = bc.server.conn.flush_nowait()
                except ServerUnavailable as exc:
                    self._lost(bc, exc)
                    continue
                events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
                selector.modify(self.registered[bc], events, bc)
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return
            for key, mask in selector.select(wait):
                bc = key.data
                if bc not in live:
                    continue
                conn = bc.server.conn
                try:
                    if mask & selectors.EVENT_WRITE and conn.flush_nowait():
                        changed.add(bc)
                    if mask & selectors.EVENT_READ:
                        self._read(bc)
                except (ServerUnavailable, ProtocolError) as exc:
                    self._lost(bc, exc)

    def _read(self, bc: _BatchConn) -> None:
        running = bc.running
        finish = self._finish
        for cmd, args in bc.server.conn.read_available_raw():
            if cmd is _COMPLETE and args[0] in running:
                value = decode_result(args[1])
                for job in running.pop(args[0]):
                    finish(job, JobResult(job.job_name, True, value, None, job.handle_text))
            elif cmd is _CREATED and bc.awaiting:
                job = bc.awaiting.popleft()
                job.handle = args[0]
                running.setdefault(args[0], []).append(job)
            else:
                self._packet(bc, cmd, args)

    def _time_out(self, limit: float | None) -> None:
        for job in self.jobs:
            if self.results[job.index] is None:
                self._fail(
                    job,
                    JobTimeout(
                        f"job {job.job_name} ({job.handle_text or 'not accepted yet'}) did "
                        f"not finish within {timeout_text(limit)}",
                        job_name=job.job_name,
                        handle=job.handle_text,
                        timeout=limit,
                    ),
                )

    def _finish(self, job: BatchJob, result: JobResult) -> None:
        if self.results[job.index] is not None:
            return
        self.results[job.index] = result
        self.left -= 1
        if self.on_result is not None:
            self.on_result(job.index, result)

    def _fail(self, job: BatchJob, error: GearjobError) -> None:
        self._finish(job, JobResult(job.job_name, False, None, error, job.handle_text))

    def _assign(self, job: BatchJob, bc: _BatchConn) -> None:
        job.attempts += 1
        bc.awaiting.append(job)
        bc.server.conn.enqueue(job.packet)

    def _lost(self, bc: _BatchConn, exc: GearjobError) -> None:
        """A connection broke: resubmit jobs not created yet, fail the running ones."""
        live = self.live
        live.remove(bc)
        fd = self.registered.pop(bc, None)
        if fd is not None:
            self.selector.unregister(fd)  # before the descriptor can be reused
        bc.server.failed(exc)
        name = bc.server.name
        for running in bc.running.values():
            for job in running:
                self._fail(
                    job,
                    ServerUnavailable(
                        f"{exc} while waiting for job {job.job_name} ({job.handle_text})", name
                    ),
                )
        bc.running.clear()
        retry = list(bc.awaiting)
        bc.awaiting.clear()
        for job in retry:
            if live and job.attempts < 3:
                target = live[job.index % len(live)]
                self._assign(job, target)
                self.changed.add(target)
            else:
                error = exc if isinstance(exc, ServerUnavailable) else None
                self._fail(job, error or ServerUnavailable(str(exc), name))

    def _packet(self, bc: _BatchConn, cmd: Cmd, args: tuple[bytes, ...]) -> None:
        """The less common packets of a batch (see _read for the common ones)."""
        if cmd in FINAL:
            handle = args[0].rstrip(b"\0")
            for job in bc.running.pop(handle, ()):
                if cmd is Cmd.WORK_COMPLETE:
                    value = decode_result(args[1])
                    self._finish(job, JobResult(job.job_name, True, value, None, job.handle_text))
                else:
                    self._fail(job, failure(job.job_name, job.handle_text, cmd, args))
        elif cmd in EVENTS:
            if self.events is not None:
                for job in bc.running.get(args[0], ()):
                    self.events.dispatch(job.index, cmd, args)
        elif cmd is Cmd.JOB_CREATED:
            raise ProtocolError(f"{bc.server.name}: JOB_CREATED for no submitted job")
        elif cmd is Cmd.ERROR:
            if not bc.awaiting:
                raise ProtocolError(
                    f"{bc.server.name}: error {handle_text(args[1])!r} for no request"
                )
            job = bc.awaiting.popleft()
            self._fail(
                job,
                ProtocolError(
                    f"{bc.server.name} refused job {job.job_name}: "
                    f"{handle_text(args[0])}: {handle_text(args[1])}"
                ),
            )
        elif cmd not in SKIPPED:
            raise ProtocolError(f"{bc.server.name}: unexpected {cmd.name} packet in a batch")
