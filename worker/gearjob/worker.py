"""The worker daemon: serves registered jobs from every configured Gearman server at once.

One process runs one job at a time (run more processes for parallelism). The main loop
multiplexes all server connections with :func:`select.poll`: on each it registers the job names
(CAN_DO), asks for work (GRAB_JOB_UNIQ), and when there is none says PRE_SLEEP and waits for
the server's NOOP. Only one GRAB is outstanding at a time, so a job is never assigned to this
process while it is busy with another; servers that woke it up are served round-robin.

The cycle is pipelined: PRE_SLEEP goes out with the GRAB when no job is expected (after a
NOOP, and after a job when the last such GRAB found the queue empty), so that an empty queue
costs no extra round trip (gearmand answers a PRE_SLEEP with an immediate NOOP when a job is
waiting). While that double answer is pending the socket only wakes the loop once 24 bytes
(NO_JOB + NOOP, or a job) are there. A job's result goes out in the same write as the next
GRAB.

Signals only set flags (or, for "exit now", raise :class:`WorkerKilled`); the loop acts:

* SIGTERM: finish the current job, send its result, exit 0.
* a second SIGTERM, or SIGINT: exit at once with 128 + signal number (143 or 130); the
  current job gets no result and the server hands it to another worker.
* SIGHUP: between jobs, re-read configuration and registry and re-register (RESET_ABILITIES
  + CAN_DO); an invalid new configuration is logged and the old one kept.

A server that goes away is reconnected with exponential backoff (0.25 s doubling up to 15 s)
without disturbing the others; the job names are registered again when it is back.

Results: WORK_COMPLETE with :func:`gearjob.payload.encode_result`. A job that raises (or times
out, or has a bad workload) gets WORK_FAIL; when the workload came from a gearjob client
(``"gearjob": 1``) WORK_EXCEPTION with the exception's type and message goes first. Other
clients never see WORK_EXCEPTION: the C ``gearman`` tool waits forever after one.

Job time limits use SIGALRM (``setitimer``) in the main thread: the job gets a
:class:`~gearjob.errors.JobTimeout` at its deadline and again every second until it ends, so
jobs must not use SIGALRM themselves.

Under systemd (``NOTIFY_SOCKET``) a thread keeps the unit's STATUS up to date ("running JOB
HANDLE", "idle, ...") at most every STATUS_INTERVAL seconds and pings the watchdog: one
message to PID 1 per job would cost a busy worker more than the job itself. With
``$GEARJOB_JOB_FILE`` set, the worker writes "running JOB HANDLE" to that file when a job
starts and "idle" when it ends (one ``pwrite`` each, nobody woken), so that whoever sees the
process die (the unit's ExecStopPost) can name the job it was running.

Logging: failures and timeouts at ERROR and slow jobs (``slow_job`` seconds) at WARNING, one
line each with function and handle; successful jobs only in the summary of
:mod:`gearjob.summary` (a line per function a minute, at INFO), unless ``log_each_job``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import random
import select
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NamedTuple

from gearjob import jobguard, payload, stats, summary
from gearjob.catalog import Catalog
from gearjob.command import CommandFailed
from gearjob.config import ServerAddress, Settings
from gearjob.context import lock as _job_lock
from gearjob.context import slot as _job_slot
from gearjob.context import wait_sends as _wait_sends
from gearjob.errors import GearjobError, JobTimeout, PayloadError, ProtocolError, ServerUnavailable
from gearjob.protocol import HEADER_SIZE, MAGIC_REQ, Cmd, Connection, OversizePacket, pack
from gearjob.runners import BadArguments, Job, Runner
from gearjob.sdnotify import Notifier

try:
    # signal.getsignal() passes the handler through an enum look-up that raises and catches
    # ValueError for a Python handler: about 23,000 instructions, before every job with a time
    # limit (_ensure_alarm_handler). CPython's _signal.getsignal is the same call without it.
    from _signal import getsignal as _getsignal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    _getsignal = signal.getsignal

log = logging.getLogger("gearjob.worker")

BACKOFF_START = 0.25
BACKOFF_MAX = 15.0
#: after a job's deadline, JobTimeout is raised again every this many seconds until it ends
TIMEOUT_REPEAT = 1.0
#: an idle worker asks its servers for a job again after this many quiet seconds (scheduled
#: jobs become due without gearmand waking anyone)
REGRAB_IDLE = 1.0
#: a job still running this long after its deadline stops the systemd watchdog pings
WATCHDOG_GRACE = 30.0
#: the systemd STATUS is brought up to date at most this often (seconds)
STATUS_INTERVAL = 0.5
#: a server that sends part of a packet, then nothing for this many times connect_timeout
#: (30 s by default), is treated as gone: the worker drops the connection and reconnects
PACKET_TIMEOUT_FACTOR = 6
#: size of every record in $GEARJOB_JOB_FILE (padded with spaces, so one write replaces it)
JOB_RECORD_SIZE = 512
#: the job file's record between jobs
_IDLE_RECORD = b"idle\n".ljust(JOB_RECORD_SIZE)

#: the answer to GRAB_JOB_UNIQ + PRE_SLEEP when no job is waiting: NO_JOB, then NOOP
PRESLEEP_ANSWER = 2 * HEADER_SIZE
_GRAB = pack(Cmd.GRAB_JOB_UNIQ)
_GRAB_SLEEP = _GRAB + pack(Cmd.PRE_SLEEP)
_PRE_SLEEP = pack(Cmd.PRE_SLEEP)
_ASSIGN = Cmd.JOB_ASSIGN_UNIQ
_NO_JOB = Cmd.NO_JOB
_NOOP = Cmd.NOOP
_HEADER = struct.Struct(">4sII").pack
_SIGALRM = signal.SIGALRM
_COMPLETE_HEADER = (MAGIC_REQ, int(Cmd.WORK_COMPLETE))
_monotonic = time.monotonic
_ceil = math.ceil
_UNWATCHED = object()  # marks an fd the loop does not (or no longer) wait on
_sending = _job_lock.locked  # a job's thread is sending (gearjob.context)

#: ReloadFunc returns the new settings and catalog, or raises GearjobError
ReloadFunc = Callable[[], "tuple[Settings, Catalog]"]

__all__ = ["BadArguments", "ReloadFunc", "UnknownJob", "Worker", "WorkerKilled"]


class WorkerKilled(BaseException):
    """Raised by the signal handler to leave at once (a second SIGTERM, or SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class UnknownJob(GearjobError):
    """The server assigned a job this worker has no function for."""


@dataclass(eq=False)
class _Link:
    """One server: its connection and where it is in the grab / sleep cycle."""

    address: ServerAddress
    conn: Connection | None = None
    state: str = "down"  # down | idle | grabbing | sleeping
    retry_at: float = 0.0
    delay: float = BACKOFF_START
    failures: int = 0
    down_since: float | None = None  # when a connection that worked was lost
    probe: _Probe | None = None  # a non-blocking TCP connect in progress
    fd: int = -1  # registered with the selector (the connection forgets it when it closes)
    expected_not_found: int = 0  # ERROR JOB_NOT_FOUND answers to our WORK_FAIL after EXCEPTION
    presleep: bool = False  # PRE_SLEEP was sent right after the outstanding GRAB
    after_job: bool = False  # the outstanding GRAB went out with a job's result
    idle_after_job: bool = True  # the last GRAB sent with a result found no job

    @property
    def up(self) -> bool:
        return self.conn is not None


class _Probe:
    """A non-blocking TCP connect to a server, so that a host that does not answer (powered
    off, filtered) never blocks the loop. When it succeeds, the real connection is made."""

    def __init__(self, link: _Link, addresses: list[Any], deadline: float) -> None:
        self.link = link
        self.addresses = addresses  # getaddrinfo() results still to try
        self.deadline = deadline
        self.sock: socket.socket | None = None


class _Current(NamedTuple):
    """The job being run (for status, watchdog and logs)."""

    name: str
    handle: str
    started: float
    deadline: float | None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class Worker:
    def __init__(
        self,
        settings: Settings,
        registry: Catalog,
        *,
        reload: ReloadFunc | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.registry = registry
        self._reload_func = reload
        self.notifier = notifier if notifier is not None else Notifier()
        self.links = [_Link(a) for a in settings.servers]
        self.jobs_done = 0
        self.jobs_failed: dict[str, int] = {}  # per function ($GEARJOB_METRICS_FILE)
        # what the loop waits on: fd -> its link, a connect probe, or None (the signal wake-up)
        self._poll = select.poll()
        self._watched: dict[int, _Link | _Probe | None] = {}
        self._grab_queue: deque[_Link] = deque()
        self._grabbing: _Link | None = None
        # links with part of a packet: (when more of it last came, Connection.partial_mark)
        self._mid_packet: dict[_Link, tuple[float, int]] = {}
        # the connection whose GRAB has been out through quiet seconds, and since when (a
        # connection, not a link: after a reconnect the count starts again)
        self._unanswered: tuple[Connection | None, float] | None = None
        self._armed: _Link | None = None  # the link whose socket wakes at PRESLEEP_ANSWER
        self._stop = False
        self._stop_reason = ""
        self._reload_requested = False
        self._ready_sent = False
        # every server connected, no connect in progress, READY sent: the loop then skips
        # the connection bookkeeping (cleared whenever a link goes down or links change)
        self._settled = False
        self._current: _Current | None = None
        self._in_job = False
        self._timed_out = False
        self._heartbeat = time.monotonic()
        self._refresh_at = registry.next_refresh()  # when a command group's list is due
        self._pid = os.getpid()  # a job's forked child is not the worker (jobguard.call)
        self._job_link: _Link | None = None  # the server of the job being run
        self._client_id = (
            settings.client_id or f"gearjob-{socket.gethostname()}-{os.getpid()}"
        ).encode()
        self._wake_r, self._wake_w = socket.socketpair()
        self._job_file = os.environ.get("GEARJOB_JOB_FILE") or None
        self._job_fd: int | None = None
        self._log_info = log.isEnabledFor(logging.INFO)  # (set again by run())
        self._log_debug = log.isEnabledFor(logging.DEBUG)
        self._summary = summary.Summary(time.monotonic())
        # raw function name -> (name, time limit, runner): _job's look-ups in one (emptied
        # whenever the registry or the settings change; only registered functions)
        self._functions: dict[bytes, tuple[str, float, Runner]] = {}
        self._use_settings(settings)
        self._watchdog_stop = threading.Event()
        # one bound method, installed and compared before every job with a time limit
        self._alarm_handler = self._on_alarm

    # ----------------------------------------------------------------- signals

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT or self._stop:
            raise WorkerKilled(signum)
        self._stop = True
        self._stop_reason = _signal_name(signum)

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        current = self._current
        if self._in_job and current is not None:
            self._timed_out = True
            limit = self._timeout_for(current.name)
            if current.deadline and _monotonic() >= current.deadline + jobguard.hard_grace(limit):
                self._stop_stuck_job(current, limit)
            raise JobTimeout(
                f"job {current.name} timed out after {limit:g} s",
                job_name=current.name,
                handle=current.handle,
                timeout=limit,
            )

    def _stop_stuck_job(self, current: _Current, limit: float) -> None:
        link = self._job_link
        conn = link.conn if link is not None else None

        def send_fail() -> None:
            _job_slot[0] = None  # the job's threads can send no more
            # not in the middle of a send of theirs (gearjob.context); skipped if one hangs
            if conn is not None and _job_lock.acquire(timeout=2.0):
                try:
                    conn.send_bytes(pack(Cmd.WORK_FAIL, current.handle.encode()), timeout=2.0)
                finally:
                    _job_lock.release()

        jobguard.stop_stuck_job(
            current.name, current.handle, limit, send_fail, lambda: self._record(_IDLE_RECORD)
        )

    def _ensure_alarm_handler(self, name: str) -> None:
        """Put the time limit's SIGALRM handler back if an earlier job replaced it."""
        if _getsignal(_SIGALRM) is not self._alarm_handler:
            log.warning(
                "before job %s: an earlier job replaced the SIGALRM handler that enforces "
                "time limits; restored it (jobs must not use SIGALRM)",
                name,
            )
            signal.signal(signal.SIGALRM, self._alarm_handler)

    def _install_signals(self) -> dict[int, Any]:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        previous: dict[int, Any] = {}
        for signum, handler in (
            (signal.SIGTERM, self._on_stop_signal),
            (signal.SIGINT, self._on_stop_signal),
            (signal.SIGHUP, self._on_hup),
            (signal.SIGALRM, self._alarm_handler),
        ):
            previous[signum] = signal.signal(signum, handler)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self._watch(self._wake_r.fileno(), None, select.POLLIN)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.set_wakeup_fd(-1)
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    # -------------------------------------------------------------------- run

    def _open_job_file(self) -> None:
        if self._job_file is None:
            return
        try:
            self._job_fd = os.open(self._job_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        except OSError as exc:
            log.warning(
                "cannot write the job file %s (GEARJOB_JOB_FILE): %s; a crash will not name "
                "the job it interrupted",
                self._job_file,
                exc,
            )
            return
        self._record(_IDLE_RECORD)

    def _record(self, data: bytes) -> None:
        """Replace the job file's record (one write: the record has a fixed size)."""
        fd = self._job_fd
        if fd is None:
            return
        if len(data) != JOB_RECORD_SIZE:
            data = (data[: JOB_RECORD_SIZE - 1] + b"\n").ljust(JOB_RECORD_SIZE)
        try:
            os.pwrite(fd, data, 0)
        except OSError as exc:
            log.warning("cannot write the job file %s: %s; writing it no more", self._job_file, exc)
            self._close_job_file()

    def _close_job_file(self) -> None:
        if self._job_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._job_fd)
            self._job_fd = None

    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        previous = self._install_signals()
        self._open_job_file()
        self._log_info = log.isEnabledFor(logging.INFO)
        self._log_debug = log.isEnabledFor(logging.DEBUG)
        names = ", ".join(self.registry.names()) or "none"
        log.info(
            "worker starting: %d job(s) [%s], server(s) %s",
            len(self.registry),
            names,
            ", ".join(str(link.address) for link in self.links),
        )
        if not len(self.registry):
            log.warning("no jobs are registered: this worker will never get any work")
        notifier_thread = self._start_notifier_thread()
        stats_writer = stats.start(lambda: (self.jobs_done, self.jobs_failed.copy()))
        try:
            self._loop()
            self._log_summary(self._summary.lines(_monotonic()))
            log.info("worker exiting: %s (%d job(s) done)", self._stop_reason, self.jobs_done)
            return 0
        except WorkerKilled as killed:
            self._log_summary(self._summary.lines(_monotonic()))
            current = self._current
            if current is not None:
                log.warning(
                    "exiting at once on %s: job %s %s is left unfinished; the server "
                    "gives it to another worker",
                    _signal_name(killed.signum),
                    current.name,
                    current.handle,
                )
            else:
                log.warning("exiting at once on %s", _signal_name(killed.signum))
            return 128 + killed.signum
        finally:
            self.notifier.stopping("stopping")
            self._watchdog_stop.set()
            if notifier_thread is not None:
                notifier_thread.join(timeout=1)
            if stats_writer is not None:
                stats_writer.stop()
            self._restore_signals(previous)
            self.close()
            if self._current is None:
                self._record(_IDLE_RECORD)
            self._close_job_file()

    def close(self) -> None:
        for link in self.links:
            self._drop(link, reason=None)
        self._unwatch(self._wake_r.fileno())
        self._wake_r.close()
        self._wake_w.close()
        self.notifier.close()

    def _loop(self) -> None:
        poll = self._poll.poll
        watched = self._watched
        # the loop turns at least this often (the watchdog thread checks its heartbeat)
        interval = self.notifier.watchdog_interval
        longest = REGRAB_IDLE if interval is None else min(REGRAB_IDLE, interval)
        longest_ms = _ceil(longest * 1000)
        while True:
            self._heartbeat = _monotonic()
            if self._stop:
                return
            if self.jobs_done >= self._max_jobs:
                self._stop_reason = (
                    f"{self.jobs_done} job(s) done (max_jobs {self.settings.max_jobs})"
                )
                return
            if self._reload_requested and self._grabbing is None:
                self._reload()
            elif self._refresh_at is not None and self._grabbing is None:
                self._refresh()  # when a command group's function list is due
            if not self._settled:
                self._connect_due()
            if self._grab_queue and self._grabbing is None:
                self._grab_next()
            if self._mid_packet:
                self._drop_stalled()
            ready = [link for link in self.links if link.conn and link.conn.has_buffered()]
            if not ready:
                self._arm()
                if self._settled and self._refresh_at is None and not self._mid_packet:
                    events = poll(longest_ms)
                else:
                    events = poll(self._wait_ms(longest))
                if not events:
                    # a quiet second: scheduled jobs may be due (and part of a packet held
                    # back by the wake-up threshold is read, for _drop_stalled)
                    self._regrab_sleeping()
                    self._log_summary(self._summary.due(_monotonic()))
                for fd, _ in events:
                    data = watched.get(fd, _UNWATCHED)
                    if data is None:
                        self._drain_wakeups()
                    elif data.__class__ is _Link:
                        ready.append(data)
                    elif isinstance(data, _Probe):
                        self._probe_done(data)
            for link in ready:
                self._read(link)

    def _wait_ms(self, longest: float) -> int:
        """How long the loop may wait (milliseconds) while a connect, a reconnect, a
        function list or the rest of a packet is due."""
        timeout = longest if self._settled else min(longest, self._select_timeout())
        if self._refresh_at is not None:
            timeout = max(0.0, min(timeout, self._refresh_at - _monotonic()))
        if self._mid_packet:
            timeout = min(timeout, self._packet_timeout())
        return _ceil(timeout * 1000)

    def _regrab_sleeping(self) -> None:
        """Ask the sleeping servers for a job again. gearmand does not wake sleeping workers
        when a scheduled job (SUBMIT_JOB_EPOCH) becomes due, it only hands it to a GRAB."""
        if self._stop or self._reload_requested:
            return
        grabbing = self._grabbing
        if grabbing is not None:
            if not grabbing.presleep:
                return
            # the NO_JOB of the last GRAB may be here, held back by the wake-up threshold
            self._read(grabbing)
            if self._grabbing is not None:
                self._check_unanswered(self._grabbing)
                return
        self._unanswered = None
        for link in self.links:
            if link.state == "sleeping":
                link.state = "idle"
                self._want_grab(link)

    def _check_unanswered(self, link: _Link) -> None:
        """Drop ``link`` when its GRAB has had no answer through quiet seconds for
        _packet_timeout() seconds. gearmand answers a GRAB at once; a server that stays
        silent (wedged, or its packets dropped by a firewall) would otherwise keep this
        worker from the jobs of every other server, since one GRAB is out at a time."""
        if link in self._mid_packet:
            self._unanswered = None  # part of the answer came: _drop_stalled's case
            return
        now = _monotonic()
        seen = self._unanswered
        if seen is None or seen[0] is not link.conn:
            self._unanswered = (link.conn, now)
        elif now - seen[1] >= self._packet_timeout():
            self._unanswered = None
            self._drop(
                link,
                f"connection lost: no answer to GRAB_JOB for {now - seen[1]:.0f} s "
                "(the server is wedged, or the network drops its packets)",
            )
            self._grab_next()

    def _watch(self, fd: int, data: _Link | _Probe | None, events: int) -> None:
        self._poll.register(fd, events)
        self._watched[fd] = data

    def _unwatch(self, fd: int) -> None:
        """Stop waiting on ``fd`` (before it is closed: poll would report a closed fd)."""
        if self._watched.pop(fd, _UNWATCHED) is not _UNWATCHED:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poll.unregister(fd)

    def _arm(self) -> None:
        """SO_RCVLOWAT before waiting: the link whose GRAB + PRE_SLEEP is unanswered wakes
        the loop only once NO_JOB + NOOP (or a job) arrived; every other socket at a byte.
        Not while something waits for the GRAB's answer (another server's turn to grab, a
        reload): it must not wait for this server's NOOP."""
        grabbing = self._grabbing
        armed = self._armed
        if (
            grabbing is not None
            and grabbing.presleep
            and not self._grab_queue
            and not self._reload_requested
            and (self._refresh_at is None or _monotonic() < self._refresh_at)
        ):
            if armed is not grabbing and armed is not None and armed.conn is not None:
                armed.conn.wake_when(1)
            if grabbing.conn is not None:
                grabbing.conn.wake_when(PRESLEEP_ANSWER)
                self._armed = grabbing
        elif armed is not None:
            if armed.conn is not None:
                armed.conn.wake_when(1)
            self._armed = None

    def _select_timeout(self) -> float:
        """Seconds until a connect probe times out or a retry is due (at most 5)."""
        timeout = 5.0
        now = time.monotonic()
        for link in self.links:
            if link.probe is not None:
                timeout = min(timeout, max(0.0, link.probe.deadline - now))
            elif not link.up:
                timeout = min(timeout, max(0.0, link.retry_at - now))
        return timeout

    def _packet_timeout(self) -> float:
        return PACKET_TIMEOUT_FACTOR * self.settings.connect_timeout

    def _drop_stalled(self) -> None:
        """Drop the links whose server stopped in the middle of a packet (nothing more came
        for _packet_timeout() seconds, and nothing is waiting to be read)."""
        limit = self._packet_timeout()
        now = _monotonic()
        for link, (since, _) in list(self._mid_packet.items()):
            if now - since < limit or link.conn is None:
                continue
            self._read(link)  # what came while a job ran (updates _mid_packet)
            if self._mid_packet.get(link, (None,))[0] != since:
                continue
            self._drop(
                link,
                "connection lost: the server sent part of a packet and then nothing "
                f"for {limit:g} s",
            )

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # ------------------------------------------------------------ connections

    def _connect_due(self) -> None:
        now = time.monotonic()
        for link in self.links:
            probe = link.probe
            if probe is not None:
                if now >= probe.deadline:
                    self._end_probe(probe)
                    timeout = self.settings.connect_timeout
                    self._schedule_retry(
                        link,
                        f"cannot connect: {link.address}: connect timed out after {timeout:g} s",
                    )
            elif link.conn is None and link.retry_at <= now:
                self._start_probe(link)
        if not self._ready_sent and any(link.up for link in self.links):
            self._ready_sent = True
            self.notifier.ready(self._idle_status())
            log.info("worker ready: %s", self._idle_status())
        self._settled = self._ready_sent and all(
            link.up and link.probe is None for link in self.links
        )

    def _start_probe(self, link: _Link) -> None:
        address = link.address
        try:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._schedule_retry(link, f"cannot connect: {address}: cannot resolve: {exc}")
            return
        probe = _Probe(link, infos, time.monotonic() + self.settings.connect_timeout)
        link.probe = probe
        self._probe_next(probe, "no address")

    def _probe_next(self, probe: _Probe, why: str) -> None:
        """Start a connect to the next address, or give up with `why`."""
        while probe.addresses:
            family, kind, proto, _, sockaddr = probe.addresses.pop(0)
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
            sock.setblocking(False)
            err = sock.connect_ex(sockaddr)
            if err in (0, errno.EINPROGRESS, errno.EAGAIN):
                probe.sock = sock
                self._watch(sock.fileno(), probe, select.POLLOUT)
                return
            sock.close()
            why = os.strerror(err)
        link = probe.link
        self._end_probe(probe)
        self._schedule_retry(link, f"cannot connect: {link.address}: {why[:1].lower()}{why[1:]}")

    def _probe_done(self, probe: _Probe) -> None:
        sock = probe.sock
        if sock is None:
            return
        self._unwatch(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.close()
        probe.sock = None
        if err:
            self._probe_next(probe, os.strerror(err))
        else:
            self._end_probe(probe)
            self._connect(probe.link)  # reachable: now the real (blocking) connect is quick

    def _end_probe(self, probe: _Probe) -> None:
        if probe.sock is not None:
            self._unwatch(probe.sock.fileno())
            probe.sock.close()
            probe.sock = None
        probe.link.probe = None

    def _connect(self, link: _Link) -> None:
        conn = Connection(
            link.address,
            connect_timeout=self.settings.connect_timeout,
            max_packet_size=self.settings.max_packet_size,
            skip_oversize=(Cmd.JOB_ASSIGN_UNIQ,),  # fail that job, keep the connection
        )
        try:
            conn.connect()
            conn.send_bytes(pack(Cmd.SET_CLIENT_ID, self._client_id) + self._can_do_packets())
        except (ServerUnavailable, ProtocolError, OSError) as exc:
            conn.close()
            self._schedule_retry(link, f"cannot connect: {exc}")
            return
        if link.down_since is not None:
            log.info(
                "reconnected to %s after %.1f s; registered %d job(s)",
                link.address,
                time.monotonic() - link.down_since,
                len(self.registry),
            )
        else:
            log.info("connected to %s; registered %d job(s)", link.address, len(self.registry))
        link.conn = conn
        link.state = "idle"
        link.failures = 0
        link.down_since = None
        link.delay = BACKOFF_START
        link.expected_not_found = 0
        link.fd = conn.fileno()
        self._watch(link.fd, link, select.POLLIN)
        self._want_grab(link)
        self._status()

    def _schedule_retry(self, link: _Link, why: str) -> None:
        link.failures += 1
        delay = link.delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
        link.retry_at = time.monotonic() + delay
        link.delay = min(link.delay * 2, BACKOFF_MAX)
        level = logging.WARNING if link.failures == 1 else logging.DEBUG
        why = why.replace(f"{link.address}: ", "", 1)  # errors name the server already
        log.log(level, "%s: %s; retrying in %.1f s", link.address, why, delay)

    def _drop(self, link: _Link, reason: str | None) -> None:
        """Forget a connection; with a reason, schedule a reconnect."""
        if link.probe is not None:
            self._end_probe(link.probe)
        if link.fd >= 0:
            self._unwatch(link.fd)
            link.fd = -1
        if link.conn is not None:
            link.conn.close()
        link.conn = None
        link.state = "down"
        self._mid_packet.pop(link, None)
        self._settled = False
        if self._grabbing is link:
            self._grabbing = None
        if self._armed is link:
            self._armed = None
        if link in self._grab_queue:
            self._grab_queue.remove(link)
        if reason is not None:
            link.delay = BACKOFF_START
            link.failures = 0
            link.down_since = time.monotonic()
            self._schedule_retry(link, reason)
            self._status()

    def _send(self, link: _Link, data: bytes) -> bool:
        conn = link.conn
        if conn is None:
            return False
        try:
            conn.send_bytes(data)
        except (ServerUnavailable, ProtocolError, OSError) as exc:
            self._drop(link, f"connection lost: {exc}")
            return False
        return True

    def _can_do_packets(self) -> bytes:
        return b"".join(pack(Cmd.CAN_DO, name.encode()) for name in self.registry.names())

    # ------------------------------------------------------------- grab cycle

    def _want_grab(self, link: _Link) -> None:
        if link is not self._grabbing and link not in self._grab_queue:
            self._grab_queue.append(link)

    def _grab_next(self) -> None:
        while self._grabbing is None and self._grab_queue and not self._stop:
            link = self._grab_queue.popleft()
            # after a NOOP: a job is expected, but another worker may take it first
            if link.conn is not None and self._send(link, _GRAB_SLEEP):
                self._grabbing_on(link, presleep=True, after_job=False)

    def _grabbing_on(self, link: _Link, *, presleep: bool, after_job: bool) -> None:
        """A GRAB just went to ``link`` (with a PRE_SLEEP behind it when ``presleep``, with
        a job's result when ``after_job``): its answer is the next thing to wait for."""
        link.state = "grabbing"
        link.presleep = presleep
        link.after_job = after_job
        self._grabbing = link

    def _read(self, link: _Link) -> None:
        conn = link.conn
        if conn is None:
            return
        try:
            packets = conn.read_available_raw()
        except OversizePacket as exc:
            self._oversize_job(link, exc)
            self._note_partial(link, conn)
            return
        except (ServerUnavailable, ProtocolError, OSError) as exc:
            self._drop(link, f"connection lost: {exc}")
            return
        for cmd, args in packets:
            if link.conn is not conn:
                return  # dropped while handling an earlier packet
            if cmd is _ASSIGN:  # the hot path, inline
                if self._grabbing is link:
                    self._grabbing = None
                    if link.after_job:
                        link.idle_after_job = False  # jobs are queued: next time GRAB only
                self._job(link, args[0], args[1], args[3], args[2])
            else:
                self._handle(link, cmd, args)
        if self._mid_packet or conn.partial_mark() is not None:
            self._note_partial(link, conn)

    def _note_partial(self, link: _Link, conn: Connection) -> None:
        """Remember when a link last got data while part of a packet is missing."""
        mark = conn.partial_mark() if link.conn is conn else None
        if mark is not None:
            seen = self._mid_packet.get(link)
            if seen is None or seen[1] != mark:
                self._mid_packet[link] = (_monotonic(), mark)
        elif self._mid_packet:
            self._mid_packet.pop(link, None)

    def _handle(self, link: _Link, cmd: Cmd, args: tuple[bytes, ...]) -> None:
        """Every packet but JOB_ASSIGN_UNIQ (which :meth:`_read` handles itself)."""
        if cmd is _NO_JOB:
            if self._grabbing is link:
                self._grabbing = None
                if link.after_job:
                    link.idle_after_job = True  # next time PRE_SLEEP goes with the GRAB
            if link.presleep or self._send(link, _PRE_SLEEP):
                link.state = "sleeping"
                link.presleep = False
        elif cmd is _NOOP:
            if link.state == "sleeping":
                link.state = "idle"
                if (
                    self._grabbing is None
                    and not self._grab_queue
                    and not self._stop
                    and not self._reload_requested
                    and self.jobs_done < self._max_jobs
                ):
                    # the hot path: grab from this server now (as _grab_next would)
                    if self._send(link, _GRAB_SLEEP):
                        self._grabbing_on(link, presleep=True, after_job=False)
                    return
                self._want_grab(link)
                if not self._reload_requested and not self._max_reached():
                    self._grab_next()  # now, not after the other packets of this read
        elif cmd is Cmd.ERROR:
            code = args[0].decode("utf-8", "replace")
            text = args[1].decode("utf-8", "replace")
            if code == "JOB_NOT_FOUND" and link.expected_not_found:
                link.expected_not_found -= 1  # gearmand 1.1: WORK_EXCEPTION already ended it
                return
            log.warning("%s answered ERROR %s: %s", link.address, code, text)
            if self._grabbing is link:
                self._grabbing = None
                link.state = "idle"
                self._want_grab(link)
        else:
            log.warning("%s sent an unexpected %s packet; ignored", link.address, cmd.name)

    def _oversize_job(self, link: _Link, exc: OversizePacket) -> None:
        """A job whose packet is larger than max_packet_size: its workload is skipped
        (never buffered) and the job fails without running; the connection stays."""
        if exc.cmd is not Cmd.JOB_ASSIGN_UNIQ or len(exc.args_) != 3:  # pragma: no cover
            self._drop(link, f"connection lost: {exc}")
            return
        if self._grabbing is link:
            self._grabbing = None
        raw_handle, raw_function, _unique = exc.args_
        name = raw_function.decode("utf-8", "replace")
        error = PayloadError(
            f"job {name} was not run: its packet is {exc.size} bytes, more than this "
            f"worker's max_packet_size of {exc.limit} bytes; raise max_packet_size in the "
            "worker's configuration, or pass a reference to large data (a path or URL) "
            "instead of the data"
        )
        json_results = payload.sniff_json_results(exc.head)
        self._job(link, raw_handle, raw_function, b"", rejected=error, json_results=json_results)

    # ------------------------------------------------------------------- jobs

    def _function(self, raw_function: bytes) -> tuple[str, float, Runner | None]:
        """The name, time limit and runner (None: not registered) of a function."""
        name = raw_function.decode("utf-8", "replace")
        runner = self.registry.get(name)
        limit = self._timeout_for(name)
        if runner is not None:
            self._functions[raw_function] = (name, limit, runner)
        return name, limit, runner

    def _timeout_for(self, name: str) -> float:
        limit = self.settings.job_timeouts.get(name)
        if limit is None:
            runner = self.registry.get(name)
            limit = self.settings.job_timeout if runner is None else runner.timeout
            limit = self.settings.job_timeout if limit is None else limit
        return float(limit or 0.0)

    def _job(
        self,
        link: _Link,
        raw_handle: bytes,
        raw_function: bytes,
        workload: bytes,
        unique: bytes = b"",
        *,
        rejected: GearjobError | None = None,
        json_results: bool = False,
    ) -> None:
        """Run one job and send its result; ``rejected``: fail it with that error instead
        of running it (``json_results`` then tells whether a gearjob client sent it)."""
        handle = raw_handle.decode("utf-8", "replace")
        name, limit, runner = self._functions.get(raw_function) or self._function(raw_function)
        started = _monotonic()
        self._current = _Current(name, handle, started, started + limit if limit else None)
        self._job_link = link
        if self._job_fd is not None:
            self._record(b"running " + raw_function + b" " + raw_handle)
        if self._log_debug:
            log.debug("job %s %s started (%d bytes)", name, handle, len(workload))
        job = Job(name, handle, unique, workload, limit)
        try:
            if rejected is not None:
                raise rejected
            if runner is None:
                raise self._unknown(name)
            _job_slot[0] = (link.conn, raw_handle, raw_function, unique)  # current_job()
            data = runner.run(job, self._timed_call)
            # pack(WORK_COMPLETE, handle, data) without its checks: the handle came framed
            reply = _HEADER(*_COMPLETE_HEADER, len(raw_handle) + 1 + len(data))
            reply += raw_handle + b"\0" + data
            outcome: BaseException | None = None
        except WorkerKilled:
            raise
        except BaseException as exc:  # a job may raise anything; the worker goes on
            reply = pack(Cmd.WORK_FAIL, raw_handle)
            if json_results or job.json_results or payload.sniff_json_results(workload):
                # Only gearjob clients get WORK_EXCEPTION: the C `gearman` tool hangs on it.
                # gearmand 1.1 ends the job on WORK_EXCEPTION and answers the WORK_FAIL that
                # follows (sent for servers that do not) with ERROR JOB_NOT_FOUND.
                data = payload.encode_exception(exc)
                reply = pack(Cmd.WORK_EXCEPTION, raw_handle, data) + reply
                link.expected_not_found += 1
            outcome = exc
        # (not in a finally: on WorkerKilled, run() still names the unfinished job)
        self._current = None
        _job_slot[0] = None  # the job's threads can send no more; wait for a send under way
        if _sending():
            _wait_sends()
        self.jobs_done += 1
        ended = _monotonic()
        duration = ended - started
        if outcome is None:
            kind = summary.OK
            if duration >= self._slow_job:
                log.warning(
                    "job %s %s was slow: done in %.3f s (slow_job is %g s)",
                    name,
                    handle,
                    duration,
                    self._slow_job,
                )
            elif self._log_each_job and self._log_info:
                log.info("job %s %s done in %.3f s", name, handle, duration)
        else:
            kind = summary.TIMED_OUT if isinstance(outcome, JobTimeout) else summary.FAILED
            self.jobs_failed[name] = self.jobs_failed.get(name, 0) + 1
            self._log_failure(name, handle, duration, outcome)
        if self._log_info:
            lines = self._summary.add(name, kind, duration, ended)
            if lines:
                self._log_summary(lines)
        if (
            not self._grab_queue
            and not self._stop
            and not self._reload_requested
            and self.jobs_done < self._max_jobs
        ):
            # the common case: one write for the result and the next GRAB (and PRE_SLEEP
            # when the queue was empty last time)
            presleep = link.idle_after_job
            if self._send(link, reply + (_GRAB_SLEEP if presleep else _GRAB)):
                self._grabbing_on(link, presleep=presleep, after_job=True)
            else:
                self._lost_result(name, handle, link)
        elif self._send(link, reply):
            link.state = "idle"
            self._want_grab(link)
        else:
            self._lost_result(name, handle, link)
        if self._job_fd is not None:
            self._record(_IDLE_RECORD)

    def _max_reached(self) -> bool:
        return self.jobs_done >= self._max_jobs

    def _lost_result(self, name: str, handle: str, link: _Link) -> None:
        log.warning(
            "job %s %s: its result could not be sent, %s went away (a client waiting "
            "on that server lost its connection too)",
            name,
            handle,
            link.address,
        )

    def _unknown(self, name: str) -> UnknownJob:
        return UnknownJob(
            f"job {name} is not registered on this worker (it has "
            f"{', '.join(self.registry.names()) or 'no jobs'}); it was probably removed "
            "by a configuration reload: register it again or stop submitting it"
        )

    def _timed_call(self, call: Callable[[], Any], limit: float, job: Job) -> Any:
        """Run a Python job's ``call()`` under its time limit (SIGALRM, see _on_alarm)."""
        self._timed_out = False
        self._in_job = True
        try:
            if limit:
                self._ensure_alarm_handler(job.name)
                signal.setitimer(signal.ITIMER_REAL, limit, TIMEOUT_REPEAT)
            try:
                value = jobguard.call(call, [], {}, self._pid)
            finally:
                if limit:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            if self._timed_out:  # the job swallowed JobTimeout and returned anyway
                raise JobTimeout(f"job timed out after {limit:g} s", timeout=limit)
        finally:
            self._in_job = False
        return value

    def _log_summary(self, lines: list[str]) -> None:
        for line in lines:
            log.info("%s", line)

    def _log_failure(self, name: str, handle: str, duration: float, exc: BaseException) -> None:
        if isinstance(exc, JobTimeout):
            log.error("job %s %s failed: %s", name, handle, exc)
        elif isinstance(exc, (PayloadError, UnknownJob, BadArguments, CommandFailed)):
            log.error("job %s %s failed in %.3f s: %s", name, handle, duration, exc)
        else:
            log.error(
                "job %s %s failed in %.3f s: %s: %s",
                name,
                handle,
                duration,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    # ----------------------------------------------------------------- reload

    def _use_settings(self, settings: Settings) -> None:
        """Take ``settings``, with the values read from them on every job."""
        self.settings = settings
        self._max_jobs = settings.max_jobs or math.inf
        self._log_each_job = settings.log_each_job
        self._slow_job = settings.slow_job or math.inf  # 0: never logged as slow
        self._functions.clear()  # their time limits may have changed

    def _reload(self) -> None:
        self._reload_requested = False
        self.notifier.reloading("reloading configuration")
        if self._reload_func is None:
            log.warning("SIGHUP: this worker has no configuration to reload")
            self.notifier.ready(self._idle_status())
            return
        log.info("SIGHUP: reloading the configuration and the job registry")
        try:
            settings, registry = self._reload_func()
        except Exception as exc:
            log.error(
                "reload failed, keeping the previous configuration and its %d job(s): %s",
                len(self.registry),
                exc,
            )
            self.notifier.ready(self._idle_status())
            return
        old, new = set(self.registry.names()), set(registry.names())
        self._use_settings(settings)
        self.registry = registry
        self._refresh_at = registry.next_refresh()
        log.info(
            "reloaded: %d job(s); added: %s; removed: %s",
            len(new),
            ", ".join(sorted(new - old)) or "none",
            ", ".join(sorted(old - new)) or "none",
        )
        self._reconcile_servers(settings.servers)
        self._announce(sorted(new - old), sorted(old - new))
        self.notifier.ready(self._idle_status())

    def _refresh(self) -> None:
        """Between jobs, when a command group's list is due: re-run its list command."""
        if _monotonic() < self._refresh_at:  # type: ignore[operator]
            return
        added, removed = self.registry.refresh_due()
        self._functions.clear()
        self._refresh_at = self.registry.next_refresh()
        if added or removed:
            log.info(
                "function list changed: added: %s; removed: %s",
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
            )
            self._announce(added, removed)

    def _announce(self, added: list[str], removed: list[str]) -> None:
        """CANT_DO the removed functions and CAN_DO the added ones on every server; then
        grab again (a sleeping worker is not woken for a function it just added)."""
        packets = b"".join(pack(Cmd.CANT_DO, name.encode()) for name in removed)
        packets += b"".join(pack(Cmd.CAN_DO, name.encode()) for name in added)
        if not packets:
            return
        for link in self.links:
            if link.up and link.state != "grabbing" and self._send(link, packets):
                link.state = "idle"
                self._want_grab(link)

    def _reconcile_servers(self, servers: list[ServerAddress]) -> None:
        keep = [link for link in self.links if link.address in servers]
        for link in self.links:
            if link not in keep:
                log.info("server %s is no longer configured: disconnecting", link.address)
                self._drop(link, reason=None)
        known = {link.address for link in keep}
        added = [_Link(address) for address in servers if address not in known]
        for link in added:
            log.info("server %s added by the new configuration", link.address)
        self.links = keep + added
        self._settled = False

    # ----------------------------------------------------------- status, sd

    def _idle_status(self) -> str:
        up = sum(1 for link in self.links if link.up)
        state = "idle" if up else "waiting for servers"
        return f"{state}, {up}/{len(self.links)} servers, {self.jobs_done} jobs done"

    def _status(self, text: str | None = None) -> None:
        if self.notifier.enabled:
            self.notifier.status(text or self._idle_status())

    def _start_notifier_thread(self) -> threading.Thread | None:
        if not self.notifier.enabled:
            return None
        thread = threading.Thread(target=self._notifier_loop, name="sd-notify", daemon=True)
        thread.start()
        return thread

    def _notifier_loop(self) -> None:
        """Keep systemd's STATUS up to date and ping its watchdog, from a thread.

        STATUS follows the job being run (or the idle state) at most every STATUS_INTERVAL
        seconds, so a worker busy with short jobs does not send PID 1 a message per job. The
        watchdog is pinged while the main loop turns, or while a job runs within its limit: a
        job stuck WATCHDOG_GRACE seconds past its deadline (say, in C code that SIGALRM
        cannot interrupt) stops the pings, so systemd kills and restarts the worker.
        """
        interval = self.notifier.watchdog_interval
        tick = STATUS_INTERVAL if interval is None else min(STATUS_INTERVAL, interval)
        next_ping = 0.0 if interval is None else time.monotonic() + interval
        shown: tuple[str, str] | None = None  # the job (name, handle) the STATUS shows
        done = self.jobs_done
        stuck_logged = False
        while not self._watchdog_stop.wait(tick):
            current = self._current
            if current is not None:
                job = (current.name, current.handle)
                if job != shown:
                    shown = job
                    self.notifier.status(f"running {current.name} {current.handle}")
            elif shown is not None or done != self.jobs_done:
                shown = None
                done = self.jobs_done
                self.notifier.status(self._idle_status())
            if interval is None:
                continue
            now = time.monotonic()
            if now < next_ping:
                continue
            next_ping = now + interval
            if current is not None:
                if current.deadline is None or now < current.deadline + WATCHDOG_GRACE:
                    self.notifier.watchdog()
                elif not stuck_logged:
                    stuck_logged = True
                    log.error(
                        "job %s %s is stuck %.0f s past its time limit; no longer pinging "
                        "the systemd watchdog so that the worker is restarted",
                        current.name,
                        current.handle,
                        now - current.deadline,
                    )
            elif now - self._heartbeat < 2 * interval + 5:
                stuck_logged = False
                self.notifier.watchdog()
