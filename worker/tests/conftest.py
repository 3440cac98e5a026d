"""Shared fixtures: a real gearmand per test, and a small in-test worker.

``gearmand`` starts ``/usr/sbin/gearmand`` in the foreground on a free loopback port and
kills it at teardown; ``gearmand_factory()`` starts more of them. ``raw_worker(server,
handlers)`` serves jobs from a thread with raw protocol packets (CAN_DO / GRAB_JOB_UNIQ /
WORK_COMPLETE), so client tests do not depend on the worker daemon.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gearjob import payload
from gearjob.config import ServerAddress
from gearjob.errors import GearjobError
from gearjob.protocol import Cmd, Connection, Packet, server_status

GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_version(port: int, timeout: float = 0.5) -> bool:
    """True when a gearmand on 127.0.0.1:port answers the admin ``version`` command."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"version\n")
            data = b""
            while b"\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"OK")
    except OSError:
        return False


class GearmanServer:
    """A gearmand process on 127.0.0.1:port; ``start()`` restarts it on the same port."""

    def __init__(self, workdir: Path, port: int, extra_args: list[str]) -> None:
        self.workdir = workdir
        self.port = port
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = workdir / "gearmand.log"

    @property
    def address(self) -> ServerAddress:
        return ServerAddress("127.0.0.1", self.port)

    def __str__(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # --job-retries=3 unless the test sets it (gearmand refuses an option given twice)
        retries = [] if any(a.startswith("--job-retries") for a in self.extra_args) else ["3"]
        return [
            GEARMAND,
            "-t",
            "1",
            "--listen=127.0.0.1",
            f"--port={self.port}",
            *(f"--job-retries={n}" for n in retries),
            "-l",
            str(self.log_file),
            "-P",
            str(self.workdir / "gearmand.pid"),
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"gearmand on port {self.port} is already running")
        with (self.workdir / "gearmand.out").open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gearmand exited with {self.proc.returncode} on port {self.port}:\n"
                    + self.logs()
                )
            if answers_version(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"gearmand did not answer on port {self.port}:\n{self.logs()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), SIGKILL after 5 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def logs(self) -> str:
        parts = []
        for name in ("gearmand.log", "gearmand.out"):
            path = self.workdir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)


@pytest.fixture
def gearmand_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``gearmand_factory(*extra_args)`` starts another gearmand; all die at teardown."""
    servers: list[GearmanServer] = []

    def make(*extra_args: str) -> GearmanServer:
        last: Exception | None = None
        for _ in range(5):  # a free port may be taken between probing and binding
            workdir = tmp_path_factory.mktemp("gearmand")
            server = GearmanServer(workdir, free_port(), list(extra_args))
            servers.append(server)
            try:
                server.start()
            except RuntimeError as exc:
                last = exc
                server.kill()
                continue
            return server
        raise RuntimeError(f"could not start gearmand: {last}")

    try:
        yield make
    finally:
        for server in servers:
            server.kill()


@pytest.fixture
def unused_port() -> int:
    """A free TCP port on 127.0.0.1 (nothing listens there)."""
    return free_port()


@pytest.fixture
def gearmand(gearmand_factory: Callable[..., GearmanServer]) -> GearmanServer:
    """One gearmand on a free port, killed at teardown."""
    return gearmand_factory()


Handler = Callable[..., Any]


class RawWorker(threading.Thread):
    """Serve jobs with raw protocol packets from a thread.

    ``handlers`` maps a function name to a callable called with the job's args/kwargs. A
    raised exception becomes WORK_EXCEPTION + WORK_FAIL (as the worker daemon does), or only
    WORK_FAIL when ``exceptions`` is False. With ``chatty`` every job first sends WORK_DATA,
    WORK_STATUS and WORK_WARNING packets.
    """

    def __init__(
        self,
        address: ServerAddress,
        handlers: dict[str, Handler],
        *,
        chatty: bool = False,
        exceptions: bool = True,
    ) -> None:
        super().__init__(daemon=True, name=f"raw-worker-{address}")
        self.address = address
        self.handlers = handlers
        self.chatty = chatty
        self.exceptions = exceptions
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.jobs: list[tuple[str, str, bytes]] = []  # (function, unique, workload) served
        self.error: BaseException | None = None
        self.conn = Connection(address)

    def run(self) -> None:
        try:
            self.conn.connect()
            for name in self.handlers:
                self.conn.send(Cmd.CAN_DO, name.encode())
            self.ready.set()
            while not self.stopping.is_set():
                self.conn.send(Cmd.GRAB_JOB_UNIQ)
                packet = self._next()
                if packet is None:
                    return
                if packet.cmd == Cmd.NO_JOB:
                    self.conn.send(Cmd.PRE_SLEEP)
                    if self._next(wake=True) is None:
                        return
                elif packet.cmd == Cmd.JOB_ASSIGN_UNIQ:
                    self._serve(*packet.args)
        except GearjobError as exc:
            if not self.stopping.is_set():
                self.error = exc
        finally:
            self.ready.set()
            self.conn.close()

    def _next(self, wake: bool = False) -> Packet | None:
        """The next meaningful packet (ERROR for an already finished job is skipped)."""
        while not self.stopping.is_set():
            try:
                packet = self.conn.recv(0.1)
            except TimeoutError:
                continue
            if packet.cmd == Cmd.ERROR:
                continue
            if packet.cmd == Cmd.NOOP and not wake:
                continue
            return packet
        return None

    def _serve(self, handle: bytes, function: bytes, unique: bytes, workload: bytes) -> None:
        name = function.decode()
        self.jobs.append((name, unique.decode(), workload))
        if self.chatty:
            self.conn.send(Cmd.WORK_DATA, handle, b"some data")
            self.conn.send(Cmd.WORK_STATUS, handle, b"1", b"2")
            self.conn.send(Cmd.WORK_WARNING, handle, b"a warning")
        try:
            request = payload.decode_request(name, workload)
            value = self.handlers[name](*request.args, **request.kwargs)
            result = payload.encode_result(value, json_results=request.json_results)
        except Exception as exc:
            if self.exceptions:
                self.conn.send(Cmd.WORK_EXCEPTION, handle, payload.encode_exception(exc))
            self.conn.send(Cmd.WORK_FAIL, handle)
            return
        self.conn.send(Cmd.WORK_COMPLETE, handle, result)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@pytest.fixture
def raw_worker() -> Iterator[Callable[..., RawWorker]]:
    """``raw_worker(server_or_address, {"name": func}, chatty=False)`` -> a running worker."""
    workers: list[RawWorker] = []

    def make(
        server: GearmanServer | ServerAddress, handlers: dict[str, Handler], **kw: Any
    ) -> RawWorker:
        address = server.address if isinstance(server, GearmanServer) else server
        worker = RawWorker(address, handlers, **kw)
        workers.append(worker)
        worker.start()
        if not worker.ready.wait(10) or worker.error is not None:
            raise RuntimeError(f"raw worker could not start: {worker.error}")
        if handlers:
            wait_for_workers(address, next(iter(handlers)))
        return worker

    try:
        yield make
    finally:
        for worker in workers:
            worker.stop()


def wait_for_workers(address: ServerAddress, function: str, timeout: float = 5.0) -> None:
    """Wait until the server lists a worker for ``function`` (CAN_DO is asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in server_status(address):
            if status.function == function and status.workers > 0:
                return
        time.sleep(0.01)
    raise RuntimeError(f"no worker for {function} registered on {address}")


@pytest.fixture(autouse=True)
def _no_gearjob_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up the caller's $GEARJOB_SERVERS / $GEARJOB_CONFIG."""
    monkeypatch.delenv("GEARJOB_SERVERS", raising=False)
    monkeypatch.delenv("GEARJOB_CONFIG", raising=False)
