"""What the job servers hold right now, for ``gearjob status`` and a Prometheus exporter.

:func:`collect` asks every server for its admin ``status`` at once (one thread each, a
short timeout each, so a dead or silent server never holds up the others) and, with a
queue configuration, counts the rows of the persistent queue table. :func:`render` writes
the Prometheus text format (version 0.0.4); :func:`serve` answers ``GET /metrics`` with
a fresh collection on every scrape.

Metrics (every one a gauge)::

    gearjob_server_up{server}                        1 if the server answered, else 0
    gearjob_server_scrape_duration_seconds{server}   how long asking it took
    gearjob_jobs_queued{server,function}             jobs waiting for a worker
    gearjob_jobs_running{server,function}            jobs a worker is running
    gearjob_jobs_waiting{server,function}            queued jobs no connected worker can run
    gearjob_workers{server,function}                 workers that can run the function
    gearjob_persistent_queue_up{server,type}         1 if the queue table could be read
    gearjob_persistent_queue_rows{server,type,function}  rows in the queue table
    gearjob_persistent_queue_scheduled{server,type,function}  of them, scheduled jobs not due
    gearjob_scrape_duration_seconds                  how long the whole collection took

"waiting" counts the queued jobs of a function that has no worker on that server: they
stay queued until a worker for the function connects. The persistent queue metrics are
there only when a queue configuration of a persistent type is in use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .errors import GearjobError

if TYPE_CHECKING:
    from .config import ServerAddress
    from .protocol import FunctionStatus
    from .queue import QueueConfig

__all__ = [
    "CONTENT_TYPE",
    "FunctionState",
    "QueueState",
    "ServerState",
    "Snapshot",
    "collect",
    "make_server",
    "render",
    "serve",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("gearjob.metrics")


@dataclass(frozen=True)
class FunctionState:
    function: str
    queued: int
    running: int
    workers: int

    @property
    def waiting(self) -> int:
        """Queued jobs that no connected worker can take (the function has no worker)."""
        return self.queued if self.workers == 0 else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "queued": self.queued,
            "running": self.running,
            "workers": self.workers,
            "waiting": self.waiting,
        }


@dataclass(frozen=True)
class ServerState:
    server: str
    ok: bool
    duration: float
    functions: tuple[FunctionState, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class QueueState:
    """Rows per function in the persistent queue table of the gearmand at ``server``."""

    type: str
    server: str
    location: str
    ok: bool
    duration: float
    rows: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    #: rows per function of scheduled jobs whose time has not come (when_to_run > now)
    scheduled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    servers: list[ServerState]
    queue: QueueState | None
    duration: float


def _ask_server(address: ServerAddress, timeout: float) -> ServerState:
    from .protocol import server_status

    start = time.monotonic()
    try:
        statuses: list[FunctionStatus] = server_status(address, timeout=timeout)
    except (GearjobError, OSError) as exc:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and str(address) not in text:
            text = f"{address}: no answer within {timeout:g} s"
        return ServerState(str(address), False, time.monotonic() - start, error=text)
    functions = tuple(
        FunctionState(s.function, s.queued, s.running, s.workers)
        for s in sorted(statuses, key=lambda s: s.function)
    )
    return ServerState(str(address), True, time.monotonic() - start, functions)


def _ask_queue(config: QueueConfig, timeout: float) -> QueueState:
    from .queue import open_store

    start = time.monotonic()
    database = config.database
    assert database is not None
    server, location = str(config.server), database.describe()
    try:
        rows, scheduled = open_store(database, timeout).counts_scheduled(time.time())
    except GearjobError as exc:
        return QueueState(
            config.type, server, location, False, time.monotonic() - start, error=str(exc)
        )
    rows = dict(sorted(rows.items()))
    took = time.monotonic() - start
    return QueueState(config.type, server, location, True, took, rows, scheduled=scheduled)


def collect(
    servers: Sequence[ServerAddress], queue: QueueConfig | None, *, timeout: float
) -> Snapshot:
    """Ask every server (and the queue table when ``queue`` is persistent) in parallel."""
    start = time.monotonic()
    persistent = queue if queue is not None and queue.persistent else None
    with ThreadPoolExecutor(max_workers=min(16, len(servers) + 1)) as pool:
        server_jobs = [pool.submit(_ask_server, address, timeout) for address in servers]
        queue_job = pool.submit(_ask_queue, persistent, timeout) if persistent else None
        states = [job.result() for job in server_jobs]
        queue_state = queue_job.result() if queue_job is not None else None
    return Snapshot(states, queue_state, time.monotonic() - start)


# --------------------------------------------------------------------------- text format


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(round(value, 6))


class _Family:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.samples: list[str] = []

    def add(self, value: float, **labels: str) -> None:
        text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
        self.samples.append(
            f"{self.name}{{{text}}} {_number(value)}" if text else f"{self.name} {_number(value)}"
        )

    def lines(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", *self.samples]


def render(snapshot: Snapshot) -> str:
    """The snapshot in the Prometheus text exposition format, version 0.0.4."""
    up = _Family("gearjob_server_up", "1 if the job server answered the admin status command.")
    took = _Family(
        "gearjob_server_scrape_duration_seconds", "Seconds the job server took to answer."
    )
    queued = _Family("gearjob_jobs_queued", "Jobs queued on the server, not yet running.")
    running = _Family("gearjob_jobs_running", "Jobs a worker is running now.")
    waiting = _Family(
        "gearjob_jobs_waiting", "Queued jobs of a function that no connected worker can run."
    )
    workers = _Family("gearjob_workers", "Connected workers that can run the function.")
    for server in snapshot.servers:
        up.add(1 if server.ok else 0, server=server.server)
        took.add(server.duration, server=server.server)
        for f in server.functions:
            labels = {"server": server.server, "function": f.function}
            queued.add(f.queued, **labels)
            running.add(f.running, **labels)
            waiting.add(f.waiting, **labels)
            workers.add(f.workers, **labels)
    families = [up, took, queued, running, waiting, workers]
    q = snapshot.queue
    if q is not None:
        queue_up = _Family(
            "gearjob_persistent_queue_up", "1 if the persistent queue table could be read."
        )
        rows = _Family(
            "gearjob_persistent_queue_rows",
            "Rows in the persistent queue table (queued and running background jobs).",
        )
        later = _Family(
            "gearjob_persistent_queue_scheduled",
            "Rows of scheduled jobs whose time has not come (when_to_run in the future).",
        )
        queue_up.add(1 if q.ok else 0, server=q.server, type=q.type)
        for function, count in q.rows.items():
            rows.add(count, server=q.server, type=q.type, function=function)
            later.add(q.scheduled.get(function, 0), server=q.server, type=q.type, function=function)
        families += [queue_up, rows, later]
    total = _Family("gearjob_scrape_duration_seconds", "Seconds the whole collection took.")
    total.add(snapshot.duration)
    families.append(total)
    return "\n".join(line for family in families for line in family.lines()) + "\n"


# --------------------------------------------------------------------------- HTTP

INDEX = b"""<html><head><title>gearjob exporter</title></head><body>
<h1>gearjob exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>
"""


#: a connection that sends no complete request within this many seconds is closed
CONNECTION_TIMEOUT = 10.0
#: connections served at once (one thread each); more are closed at once
MAX_CONNECTIONS = 32


class _Handler(BaseHTTPRequestHandler):
    server_version = "gearjob-exporter"
    timeout = CONNECTION_TIMEOUT
    scrape: Callable[[], str]  # set on the subclass serve() builds

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = self.scrape().encode("utf-8")
            except Exception as exc:  # a bug must not kill the exporter
                log.exception("scrape failed: %s", exc)
                self._send(500, b"scrape failed; see the exporter's log\n", "text/plain")
                return
            self._send(200, body, CONTENT_TYPE)
        elif path == "/":
            self._send(200, INDEX, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found; metrics are at /metrics\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS of them: idle or slow clients
    cannot make the exporter start a thread each."""

    daemon_threads = True
    refused = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import threading

        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "%d connection(s) refused: %d are open already (the most served at once)",
                    self.refused,
                    MAX_CONNECTIONS,
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(host: str, port: int, scrape: Callable[[], str]) -> ThreadingHTTPServer:
    """An HTTP server answering /metrics with ``scrape()`` (not yet serving)."""
    import socket

    handler = type("Handler", (_Handler,), {"scrape": staticmethod(scrape)})
    server_class = type(
        "Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET}
    )
    server: ThreadingHTTPServer = server_class((host, port), handler)
    return server


def serve(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM or SIGINT, then close the socket."""
    import signal
    import threading

    def stop(signum: int, frame: Any) -> None:
        log.info("exporter stopping (signal %d)", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.server_close()
