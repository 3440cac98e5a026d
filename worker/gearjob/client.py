"""The gearjob client: submit jobs to Gearman job servers and get their results.

>>> with Client(["127.0.0.1:4730"]) as client:          # doctest: +SKIP
...     client.submit("my_module_hello_world", "Danny")
...     client.submit_background("my_module_reindex", 42, priority="low")

One :class:`Client` serves one thread at a time (using it from two threads at once raises
RuntimeError). It keeps one connection per server; a job goes to the first reachable server
in a rotating order, and a server that refuses or drops is tried again, with backoff, on
later calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import EllipsisType, TracebackType
from typing import Any, Literal

from .config import DEFAULT_MAX_PACKET, ServerAddress, TLSSettings, load_settings
from .errors import JobTimeout, PayloadError, ProtocolError, ServerUnavailable
from .payload import decode_result, encode_request
from .protocol import HEADER_SIZE, Cmd, Connection, pack, pack_unchecked
from .tracking import (
    FINAL,
    SKIPPED,
    Batch,
    BatchEvents,
    BatchJob,
    Events,
    JobResult,
    OnData,
    OnProgress,
    OnWarning,
    await_result,
    handle_text,
    timeout_text,
)

__all__ = [
    "Client",
    "JobResult",
    "JobStatus",
    "Priority",
    "close_default_client",
    "default_client",
    "job_status",
    "run_batch",
    "submit",
    "submit_background",
    "submit_batch",
]

Priority = Literal["low", "normal", "high"]

DEFAULT_TIMEOUT = 60.0
# gearmand's GEARMAN_MAX_UNIQUE_SIZE is 64, but gearmand 1.1 truncates a 64-byte key to 63
# bytes and shifts the workload by one byte; 63 is the largest key that works.
MAX_UNIQUE_SIZE = 63
UNIQUE_HASH_CHARS = 40  # default background key: the first 160 bits of a sha256, in hex
MAX_FUNCTION_SIZE = 512  # gearmand's GEARMAN_FUNCTION_MAX_SIZE
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
REMEMBERED_HANDLES = 10_000

_FOREGROUND = {"low": Cmd.SUBMIT_JOB_LOW, "normal": Cmd.SUBMIT_JOB, "high": Cmd.SUBMIT_JOB_HIGH}
_BACKGROUND = {
    "low": Cmd.SUBMIT_JOB_LOW_BG,
    "normal": Cmd.SUBMIT_JOB_BG,
    "high": Cmd.SUBMIT_JOB_HIGH_BG,
}
_FINAL = FINAL
_IGNORED = SKIPPED
_BATCH_KEYS = frozenset(("job_name", "args", "unique", "priority"))

# Bumped in a forked child so that clients drop the connections they share with the parent.
_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation  # noqa: PLW0603
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@dataclass(frozen=True)
class JobStatus:
    """What a job server knows about a job handle (GET_STATUS)."""

    handle: str
    known: bool
    running: bool
    numerator: int
    denominator: int

    @property
    def fraction(self) -> float | None:
        """Progress reported by the worker (numerator / denominator), None when unknown."""
        return self.numerator / self.denominator if self.denominator else None


class _Server:
    """A job server, its connection and its failure record."""

    __slots__ = ("address", "conn", "failures", "handle_size", "last_error", "name", "retry_at")

    def __init__(self, address: ServerAddress, connect_timeout: float, max_packet: int) -> None:
        self.address = address
        self.name = str(address)
        self.conn = Connection(address, connect_timeout=connect_timeout, max_packet_size=max_packet)
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.handle_size = 0  # length of the last job handle (for Connection.expect)

    def failed(self, error: BaseException) -> None:
        """Record a failure: later calls try this server last until the backoff expired."""
        self.conn.close()
        self.failures += 1
        self.last_error = str(error)
        self.retry_at = time.monotonic() + min(
            BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.failures - 1, 16)
        )

    def ok(self) -> None:
        self.failures = 0
        self.retry_at = 0.0


class Client:
    """A client of one or more Gearman job servers.

    ``servers`` None: the servers (and the other settings not given here) come from
    :func:`gearjob.config.load_settings` (``config``, ``$GEARJOB_CONFIG``,
    ``/etc/gearjob/client.toml``, ``$GEARJOB_SERVERS``). ``timeout`` is the default
    time limit per call in seconds (default 60; None waits forever).
    """

    def __init__(
        self,
        servers: Sequence[str | ServerAddress] | None = None,
        *,
        timeout: float | EllipsisType | None = ...,
        connect_timeout: float | EllipsisType = ...,
        tls: TLSSettings | None = None,
        client_id: str | None = None,
        config: str | os.PathLike[str] | None = None,
        max_packet_size: int | EllipsisType = ...,
    ) -> None:
        default_timeout: float | None = DEFAULT_TIMEOUT
        default_connect = 5.0
        default_packet = DEFAULT_MAX_PACKET
        if servers is None or config is not None:
            settings = load_settings(config, kind="client")
            if "timeout" in settings.keys_set:
                default_timeout = settings.timeout
            default_connect = settings.connect_timeout
            default_packet = settings.max_packet_size
            client_id = client_id if client_id is not None else settings.client_id
            tls = tls if tls is not None else settings.tls
            addresses = settings.servers if servers is None else self._parse(servers, tls)
        else:
            addresses = self._parse(servers, tls)
        if not addresses:
            raise ValueError("Client needs at least one job server address")
        self.timeout: float | None = default_timeout if timeout is ... else timeout
        self.connect_timeout = default_connect if connect_timeout is ... else connect_timeout
        self.max_packet_size = default_packet if max_packet_size is ... else max_packet_size
        self.client_id = client_id
        self._servers = [
            _Server(
                a if a.tls is not None or tls is None else ServerAddress(a.host, a.port, tls),
                self.connect_timeout,
                self.max_packet_size,
            )
            for a in addresses
        ]
        self._next = 0
        self._lock = threading.Lock()
        self._generation = _fork_generation
        self._names: dict[str, bytes] = {}
        self._handles: dict[str, _Server] = {}  # handle -> server, oldest first

    @staticmethod
    def _parse(
        servers: Sequence[str | ServerAddress], tls: TLSSettings | None
    ) -> list[ServerAddress]:
        if isinstance(servers, str):
            servers = [p for p in servers.split(",") if p.strip()]
        return [s if isinstance(s, ServerAddress) else ServerAddress.parse(s, tls) for s in servers]

    @property
    def servers(self) -> list[ServerAddress]:
        """The job servers this client uses."""
        return [s.address for s in self._servers]

    def __repr__(self) -> str:
        return f"<Client {', '.join(s.name for s in self._servers)}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (the client connects again when used)."""
        for server in self._servers:
            server.conn.close()

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _busy() -> RuntimeError:
        return RuntimeError(
            "this gearjob Client is being used by another thread at the same time; "
            "create one Client per thread (the module-level gearjob.submit() and friends "
            "keep one per thread for you)"
        )

    def _forked(self) -> None:
        self._generation = _fork_generation
        self.close()  # the connections belong to the parent process

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise self._busy()
        try:
            if self._generation != _fork_generation:
                self._forked()
            yield
        finally:
            self._lock.release()

    def _function(self, job_name: str) -> bytes:
        name = self._names.get(job_name)
        if name is not None:
            return name
        if not isinstance(job_name, str) or not job_name:
            raise ValueError(f"job name must be a non-empty string, not {job_name!r}")
        name = job_name.encode("utf-8")
        if b"\0" in name or len(name) > MAX_FUNCTION_SIZE or any(c.isspace() for c in job_name):
            raise ValueError(
                f"job name {job_name!r} is invalid: use at most {MAX_FUNCTION_SIZE} bytes "
                "without NUL or whitespace"
            )
        if len(self._names) < 10_000:
            self._names[job_name] = name
        return name

    @staticmethod
    def _unique(unique: str | None) -> bytes:
        if not unique:
            return b""
        if not isinstance(unique, str):
            raise ValueError(f"unique key must be a string, not {unique!r}")
        data = unique.encode("utf-8")
        if len(data) > MAX_UNIQUE_SIZE or b"\0" in data:
            raise ValueError(
                f"unique key {unique!r} is invalid: use at most {MAX_UNIQUE_SIZE} bytes (as "
                "UTF-8) without NUL; pass a hash of a longer key"
            )
        return data

    def _packet(
        self,
        job_name: str,
        args: Sequence[Any],
        unique: bytes,
        cmd: Cmd,
        workload: bytes | None = None,
        *,
        epoch: bytes = b"",
    ) -> bytes:
        """The submit packet for a job; PayloadError before anything is sent."""
        function = self._names.get(job_name) or self._function(job_name)
        if workload is None:
            workload = encode_request(job_name, args)
        if len(workload) + len(function) + len(unique) + 2 > self.max_packet_size:
            raise PayloadError(
                f"arguments of job {job_name} are {len(workload)} bytes as JSON, more than "
                f"max_packet_size {self.max_packet_size}; pass a reference (a path or URL) "
                "to large data instead"
            )
        if epoch:  # SUBMIT_JOB_EPOCH: the time goes between the key and the workload
            return pack_unchecked(cmd, function, unique, epoch, workload)
        return pack_unchecked(cmd, function, unique, workload)  # both checked already

    def _deadline(self, timeout: float | EllipsisType | None) -> tuple[float | None, float | None]:
        limit = self.timeout if timeout is ... else timeout
        if limit is None:
            return None, None
        if limit <= 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, not {limit}")
        return limit, time.monotonic() + limit

    def _order(self) -> list[_Server]:
        """Servers in the order to try for a new job: rotating, backed-off ones last."""
        servers = self._servers
        if len(servers) == 1:
            return servers
        start = self._next
        self._next = (start + 1) % len(servers)
        rotated = servers[start:] + servers[:start]
        now = time.monotonic()
        ready = [s for s in rotated if s.retry_at <= now]
        if len(ready) == len(rotated):
            return ready
        waiting = sorted((s for s in rotated if s.retry_at > now), key=lambda s: s.retry_at)
        return ready + waiting

    def _connect(self, server: _Server, deadline: float | None) -> Connection:
        """The server's connection, connecting (and greeting) when needed."""
        conn = server.conn
        if conn.connected:
            return conn
        connect_timeout = self.connect_timeout
        if deadline is not None:
            connect_timeout = max(0.001, min(connect_timeout, deadline - time.monotonic()))
        conn.connect_timeout = connect_timeout
        try:
            conn.connect()
            greeting = pack(Cmd.OPTION_REQ, b"exceptions")
            if self.client_id:
                greeting += pack(Cmd.SET_CLIENT_ID, self.client_id.encode("utf-8"))
            conn.send_bytes(greeting, connect_timeout)
            while True:  # OPTION_RES, or ERROR from a server without the option
                answer = conn.recv(connect_timeout)
                if answer.cmd in (Cmd.OPTION_RES, Cmd.ERROR):
                    break
        except TimeoutError as exc:
            error = ServerUnavailable(
                f"{server.name}: no answer to the greeting within {connect_timeout:g} s",
                server.name,
            )
            server.failed(error)
            raise error from exc
        except ServerUnavailable as exc:
            server.failed(exc)
            raise
        except ProtocolError as exc:  # not a job server at that address, it seems
            error = ServerUnavailable(str(exc), server.name)
            server.failed(error)
            raise error from exc
        finally:
            conn.connect_timeout = self.connect_timeout
        server.ok()
        return conn

    @staticmethod
    def _unavailable(errors: list[ServerUnavailable]) -> ServerUnavailable:
        if len(errors) == 1:
            return errors[0]
        return ServerUnavailable("no job server available: " + "; ".join(map(str, errors)))

    def _create(
        self,
        job_name: str,
        packet: bytes,
        deadline: float | None,
        limit: float | None,
        expect_result: bool = False,
    ) -> tuple[_Server, bytes, bytes | None]:
        """Send a submit packet to the first server that takes it; (server, handle, the
        result when it came with JOB_CREATED, else None)."""
        errors: list[ServerUnavailable] = []
        for server in self._order():
            conn = server.conn
            reused = conn.connected
            while True:
                if not conn.connected:
                    try:
                        self._connect(server, deadline)  # records a failure itself
                    except ServerUnavailable as exc:
                        errors.append(exc)
                        break
                try:
                    first: tuple[Cmd, tuple[bytes, ...]] | None = None
                    if expect_result and server.handle_size:
                        # a foreground job: sleep through JOB_CREATED until the result is
                        # (probably) here, and take both at once when it is
                        hint = 2 * HEADER_SIZE + server.handle_size
                        done = conn.foreground(packet, deadline, limit, hint)
                        if done is not None:
                            return server, done[0], done[1]
                    else:
                        with suppress(TimeoutError):
                            first = conn.exchange(packet, deadline, limit)
                    handle = self._await_created(server, job_name, deadline, limit, first)
                except ServerUnavailable as exc:
                    if reused:
                        # an idle connection went stale (server restarted): reconnect once
                        reused = False
                        conn.close()
                        continue
                    server.failed(exc)
                    errors.append(exc)
                    break
                server.handle_size = len(handle)
                return server, handle, None
        raise self._unavailable(errors)

    def _await_created(
        self,
        server: _Server,
        job_name: str,
        deadline: float | None,
        limit: float | None,
        first: tuple[Cmd, tuple[bytes, ...]] | None,
    ) -> bytes:
        """The handle from JOB_CREATED; ``first`` is the packet already received (None:
        none yet, e.g. its wait timed out)."""
        conn = server.conn
        packet = first
        while True:
            if packet is None:
                try:
                    packet = conn.next_packet(deadline, limit)
                except TimeoutError as exc:
                    conn.close()
                    raise JobTimeout(
                        f"job {job_name} was not accepted by {server.name} within "
                        f"{timeout_text(limit)}",
                        job_name=job_name,
                        timeout=limit,
                    ) from exc
            cmd, args = packet
            packet = None
            if cmd is Cmd.JOB_CREATED:
                return args[0]
            if cmd is Cmd.ERROR:
                raise ProtocolError(
                    f"{server.name} refused job {job_name}: "
                    f"{handle_text(args[0])}: {handle_text(args[1])}"
                )
            if cmd not in _IGNORED and cmd not in _FINAL:
                conn.close()
                raise ProtocolError(
                    f"{server.name}: unexpected {cmd.name} packet while submitting {job_name}"
                )
            # final packets here belong to jobs abandoned earlier: ignore them

    # -- public API -------------------------------------------------------------------------

    def submit(
        self,
        job_name: str,
        *args: Any,
        timeout: float | EllipsisType | None = ...,
        priority: Priority = "normal",
        unique: str | None = None,
        on_data: OnData | None = None,
        on_progress: OnProgress | None = None,
        on_warning: OnWarning | None = None,
    ) -> Any:
        """Run a job in the foreground and return its result.

        The result is what the job's function returned. What the job sends while it runs
        goes to the callbacks, in order: ``on_data(chunk)`` gets each WORK_DATA chunk (bytes),
        ``on_progress(numerator, denominator)`` each WORK_STATUS, ``on_warning(message)``
        each WORK_WARNING; without a callback they are dropped. (The C and PHP clients
        return the data chunks joined with the result: see docs/job-context-and-scheduling.md.)

        Raises JobFailed (the job raised; ``exc_type``/``message`` tell what), JobTimeout,
        ServerUnavailable (no server took the job, or it went away while the job ran),
        PayloadError (an argument JSON cannot carry; nothing was sent).
        """
        cmd = _FOREGROUND.get(priority)
        if cmd is None:
            raise ValueError(f"priority must be 'low', 'normal' or 'high', not {priority!r}")
        packet = self._packet(job_name, args, self._unique(unique) if unique else b"", cmd)
        limit, deadline = self._deadline(timeout)
        events = None
        if on_data is not None or on_progress is not None or on_warning is not None:
            events = Events.of(on_data, on_progress, on_warning)
        if not self._lock.acquire(False):
            raise self._busy()
        try:
            if self._generation != _fork_generation:
                self._forked()
            server, handle, result = self._create(job_name, packet, deadline, limit, True)
            if result is not None:
                return decode_result(result)
            return await_result(server, job_name, handle, deadline, limit, events=events)
        finally:
            self._lock.release()

    def submit_background(
        self,
        job_name: str,
        *args: Any,
        priority: Priority = "normal",
        unique: str | bool | None = True,
        at: datetime | None = None,
        delay: float | None = None,
    ) -> str:
        """Queue a job to run in the background; return its handle ("H:host:N").

        ``unique`` True (default): a key derived from the job name and arguments (and the
        time, for a scheduled job), so that an identical job still waiting is not queued
        twice; False/None: no deduplication; a string: that key.

        ``at`` (a datetime; naive means local time) or ``delay`` (seconds from now): run the
        job no earlier than then (SUBMIT_JOB_EPOCH, whole seconds). ValueError for a time in
        the past, a delay not above 0, or a priority other than "normal" (gearmand has no
        scheduled job with a priority). See docs/job-context-and-scheduling.md.
        """
        cmd = _BACKGROUND.get(priority)
        if cmd is None:
            raise ValueError(f"priority must be 'low', 'normal' or 'high', not {priority!r}")
        epoch = b""
        if at is not None or delay is not None:
            from .scheduling import epoch_for

            if priority != "normal":
                raise ValueError(
                    f"a scheduled job cannot have priority {priority!r}: gearmand has no "
                    "scheduled submit with a priority; drop at=/delay= or the priority"
                )
            epoch = str(epoch_for(at, delay)).encode()
            cmd = Cmd.SUBMIT_JOB_EPOCH
        if unique is True:
            from hashlib import sha256  # here: hashlib loads OpenSSL (~1 MB)

            function = self._function(job_name)
            workload = encode_request(job_name, args)
            digest = sha256(function + b"\0" + workload + epoch).hexdigest()
            key = digest[:UNIQUE_HASH_CHARS].encode()
            packet = self._packet(job_name, args, key, cmd, workload, epoch=epoch)
        else:
            unique_key = self._unique(unique or None)
            packet = self._packet(job_name, args, unique_key, cmd, epoch=epoch)
        limit, deadline = self._deadline(...)
        if not self._lock.acquire(False):
            raise self._busy()
        try:
            if self._generation != _fork_generation:
                self._forked()
            server, handle, _ = self._create(job_name, packet, deadline, limit)
        finally:
            self._lock.release()
        text = handle.decode("utf-8", "replace")
        handles = self._handles
        handles[text] = server
        if len(handles) > REMEMBERED_HANDLES:
            del handles[next(iter(handles))]
        return text

    def run_batch(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        timeout: float | EllipsisType | None = ...,
        priority: Priority = "normal",
        on_result: Callable[[int, JobResult], None] | None = None,
        on_data: Callable[[int, bytes], Any] | None = None,
        on_progress: Callable[[int, int, int], Any] | None = None,
        on_warning: Callable[[int, str], Any] | None = None,
    ) -> list[JobResult]:
        """Run many foreground jobs at once; return their results in input order.

        ``jobs``: mappings with ``job_name`` and ``args`` (a list), optionally ``unique`` and
        ``priority``. The jobs are pipelined over all reachable servers. ``timeout`` limits
        the whole batch. ``on_result(index, result)`` is called as each job finishes;
        ``on_data(index, chunk)``, ``on_progress(index, numerator, denominator)`` and
        ``on_warning(index, message)`` as a job sends them (see :meth:`submit`).
        A job that fails does not raise: its result has ``ok`` False and the ``error``.
        Raises PayloadError before anything is sent when an argument is not JSON, and
        ServerUnavailable when no server can be reached at all.
        """
        prepared = self._prepare_batch(jobs, priority)
        limit, deadline = self._deadline(timeout)
        results: list[JobResult | None] = [None] * len(prepared)
        if not prepared:
            return []
        events = None
        if on_data is not None or on_progress is not None or on_warning is not None:
            events = BatchEvents(on_data, on_progress, on_warning)
        with self._exclusive():
            Batch(self, prepared, results, on_result, events).run(deadline, limit)
        return [r for r in results if r is not None]

    def submit_batch(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        timeout: float | EllipsisType | None = ...,
        priority: Priority = "normal",
    ) -> bool:
        """Run many foreground jobs at once (see :meth:`run_batch`); True iff none failed."""
        return all(r.ok for r in self.run_batch(jobs, timeout=timeout, priority=priority))

    def job_status(self, handle: str) -> JobStatus:
        """Ask the job server(s) about a job handle (from :meth:`submit_background`).

        Unknown to every reachable server: ``known`` False. ServerUnavailable when no server
        can be asked.
        """
        if not isinstance(handle, str) or not handle or "\0" in handle:
            raise ValueError(f"job handle must be a non-empty string, not {handle!r}")
        raw = handle.encode("utf-8")
        limit, deadline = self._deadline(...)
        with self._exclusive():
            first = self._handles.get(handle)
            order = self._order()
            if first is not None:
                order = [first] + [s for s in order if s is not first]
            errors: list[ServerUnavailable] = []
            asked = False
            for server in order:
                try:
                    status = self._ask_status(server, raw, deadline, limit)
                except ServerUnavailable as exc:
                    errors.append(exc)
                    continue
                asked = True
                if status.known:
                    return status
            if not asked:
                raise self._unavailable(errors)
            return JobStatus(handle, False, False, 0, 0)

    def _ask_status(
        self, server: _Server, raw: bytes, deadline: float | None, limit: float | None
    ) -> JobStatus:
        for attempt in (1, 2):
            conn = self._connect(server, deadline)
            try:
                conn.send(Cmd.GET_STATUS, raw)
                while True:
                    packet = conn.recv(None if deadline is None else deadline - time.monotonic())
                    if packet.cmd == Cmd.STATUS_RES and packet.args[0] == raw:
                        break
                    if packet.cmd == Cmd.ERROR:
                        raise ProtocolError(
                            f"{server.name} refused GET_STATUS: {handle_text(packet.args[1])}"
                        )
            except TimeoutError as exc:
                conn.close()
                raise JobTimeout(
                    f"{server.name} did not answer GET_STATUS within {timeout_text(limit)}",
                    timeout=limit,
                ) from exc
            except ServerUnavailable as exc:
                if attempt == 2:
                    server.failed(exc)
                    raise
                continue
            _, known, running, num, den = packet.args
            return JobStatus(
                raw.decode("utf-8", "replace"),
                known == b"1",
                running == b"1",
                int(num) if num.isdigit() else 0,
                int(den) if den.isdigit() else 0,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _locate_handle(self, handle: str) -> list[tuple[_Server, JobStatus]]:
        """Every server that knows ``handle``, with the job's status there (asks them all:
        gearmand's handles name its host, which several servers may share)."""
        if not isinstance(handle, str) or not handle or any(c.isspace() for c in handle):
            raise ValueError(f"job handle must be like H:host:42 (no spaces), not {handle!r}")
        raw = handle.encode("utf-8")
        limit, deadline = self._deadline(...)
        found: list[tuple[_Server, JobStatus]] = []
        errors: list[ServerUnavailable] = []
        with self._exclusive():
            for server in self._servers:
                try:
                    status = self._ask_status(server, raw, deadline, limit)
                except ServerUnavailable as exc:
                    errors.append(exc)
                    continue
                if status.known:
                    found.append((server, status))
        if not found and errors:
            raise self._unavailable(errors)
        return found

    def cancel(self, handle: str) -> JobStatus:
        """Cancel a queued background job (admin ``cancel job``); return its status before.

        Raises JobNotFound (no server knows the handle), JobRunning (a worker runs it:
        gearmand cannot stop it), ServerUnavailable, ValueError (not a handle).
        """
        from .scheduling import cancel

        return cancel(self, handle)

    # -- batches ----------------------------------------------------------------------------

    def _prepare_batch(
        self, jobs: Iterable[Mapping[str, Any]], priority: Priority
    ) -> list[BatchJob]:
        prepared: list[BatchJob] = []
        for index, job in enumerate(jobs):
            if type(job) is not dict and not isinstance(job, Mapping):
                raise TypeError(
                    f"batch job {index} must be a mapping like "
                    f'{{"job_name": ..., "args": [...]}}, not {type(job).__name__}'
                )
            if not job.keys() <= _BATCH_KEYS:
                raise ValueError(
                    f"batch job {index} has unknown key(s) {sorted(set(job) - _BATCH_KEYS)}; "
                    f"known keys: {', '.join(sorted(_BATCH_KEYS))}"
                )
            if "job_name" not in job:
                raise ValueError(f"batch job {index} has no job_name")
            job_name = job["job_name"]
            args = job.get("args", [])
            if type(args) is not list and (
                isinstance(args, (str, bytes)) or not isinstance(args, Sequence)
            ):
                raise ValueError(
                    f"batch job {index} ({job_name}): args must be a list, not "
                    f"{type(args).__name__}"
                )
            prio = job.get("priority", priority)
            cmd = _FOREGROUND.get(prio)
            if cmd is None:
                raise ValueError(
                    f"batch job {index} ({job_name}): priority must be 'low', 'normal' or "
                    f"'high', not {prio!r}"
                )
            try:
                packet = self._packet(job_name, args, self._unique(job.get("unique")), cmd)
            except PayloadError as exc:
                raise PayloadError(f"batch job {index}: {exc}") from exc
            prepared.append(BatchJob(index, job_name, packet))
        return prepared


# -- module-level functions: one default Client per thread -------------------------------------

_local = threading.local()


def default_client() -> Client:
    """This thread's default Client, built from ``load_settings(kind="client")`` on first use
    ($GEARJOB_SERVERS, $GEARJOB_CONFIG or /etc/gearjob/client.toml)."""
    client: Client | None = getattr(_local, "client", None)
    if client is None:
        client = Client()
        _local.client = client
    return client


def close_default_client() -> None:
    """Close this thread's default Client; the next call builds a new one (and so re-reads
    the settings)."""
    client: Client | None = getattr(_local, "client", None)
    _local.client = None
    if client is not None:
        client.close()


def submit(
    job_name: str,
    *args: Any,
    timeout: float | EllipsisType | None = ...,
    priority: Priority = "normal",
    unique: str | None = None,
    on_data: OnData | None = None,
    on_progress: OnProgress | None = None,
    on_warning: OnWarning | None = None,
) -> Any:
    """:meth:`Client.submit` on this thread's default client."""
    return default_client().submit(
        job_name,
        *args,
        timeout=timeout,
        priority=priority,
        unique=unique,
        on_data=on_data,
        on_progress=on_progress,
        on_warning=on_warning,
    )


def submit_background(
    job_name: str,
    *args: Any,
    priority: Priority = "normal",
    unique: str | bool | None = True,
    at: datetime | None = None,
    delay: float | None = None,
) -> str:
    """:meth:`Client.submit_background` on this thread's default client."""
    return default_client().submit_background(
        job_name, *args, priority=priority, unique=unique, at=at, delay=delay
    )


def submit_batch(
    jobs: Iterable[Mapping[str, Any]],
    *,
    timeout: float | EllipsisType | None = ...,
    priority: Priority = "normal",
) -> bool:
    """:meth:`Client.submit_batch` on this thread's default client."""
    return default_client().submit_batch(jobs, timeout=timeout, priority=priority)


def run_batch(
    jobs: Iterable[Mapping[str, Any]],
    *,
    timeout: float | EllipsisType | None = ...,
    priority: Priority = "normal",
    on_result: Callable[[int, JobResult], None] | None = None,
    on_data: Callable[[int, bytes], Any] | None = None,
    on_progress: Callable[[int, int, int], Any] | None = None,
    on_warning: Callable[[int, str], Any] | None = None,
) -> list[JobResult]:
    """:meth:`Client.run_batch` on this thread's default client."""
    return default_client().run_batch(
        jobs,
        timeout=timeout,
        priority=priority,
        on_result=on_result,
        on_data=on_data,
        on_progress=on_progress,
        on_warning=on_warning,
    )


def job_status(handle: str) -> JobStatus:
    """:meth:`Client.job_status` on this thread's default client."""
    return default_client().job_status(handle)
