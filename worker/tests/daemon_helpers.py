"""Helpers for the worker daemon and CLI tests: worker subprocesses (`python -m gearjob
worker`), raw submissions over gearjob.protocol (fixtures: daemon_fixtures.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gearjob.config import ServerAddress
from gearjob.errors import ServerUnavailable
from gearjob.protocol import Cmd, Connection, server_status

JOBS_DIR = Path(__file__).parent / "jobs"
PACKAGE_DIR = Path(__file__).parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until condition() is truthy; return its value or fail naming `what`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def workers_for(address: ServerAddress, function: str) -> int:
    """How many workers the server lists for `function` (0 when it cannot be asked)."""
    try:
        statuses = server_status(address, timeout=2)
    except (OSError, ServerUnavailable):
        return 0
    return sum(s.workers for s in statuses if s.function == function)


def queued(address: ServerAddress, function: str) -> int:
    return sum(s.queued for s in server_status(address, timeout=2) if s.function == function)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("GEARJOB_CONFIG", "GEARJOB_SERVERS", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(JOBS_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class WorkerProcess:
    """`python -m gearjob worker ...` with its stderr in a file the test can poll."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        command: str = "worker",
    ) -> None:
        self.args = [sys.executable, "-m", "gearjob", command, *args]
        self.log_path = log_path
        self.env = env if env is not None else subprocess_env()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=self.log_path.parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        regex = re.compile(pattern)

        def found() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                if len(regex.findall(self.log())) >= count:
                    return True
                raise AssertionError(
                    f"worker exited with {self.proc.returncode} before logging {pattern!r}:\n"
                    + self.log()
                )
            return len(regex.findall(self.log())) >= count

        try:
            wait_for(found, timeout, f"{pattern!r} in the worker log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.log()}") from None
        return self.log()

    def wait_ready(self, timeout: float = 10.0) -> None:
        self.wait_log(r"worker ready", timeout)

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout} s\n--- worker log ---\n{self.log()}"
            ) from None

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RawClient:
    """Submits workloads as they are (bytes) and reads the raw answer packets."""

    def __init__(self, address: ServerAddress, *, exceptions: bool = False) -> None:
        self.conn = Connection(address, connect_timeout=5)
        self.conn.connect()
        self.exceptions = exceptions
        if exceptions:
            self.conn.send(Cmd.OPTION_REQ, b"exceptions")
            packet = self.conn.recv(5)
            assert packet.cmd == Cmd.OPTION_RES, packet

    def submit(self, function: str, workload: bytes, *, unique: bytes = b"") -> str:
        self.conn.send(Cmd.SUBMIT_JOB, function.encode(), unique, workload)
        packet = self.conn.recv(5)
        assert packet.cmd == Cmd.JOB_CREATED, packet
        return packet.args[0].decode()

    def submit_background(self, function: str, workload: bytes) -> str:
        self.conn.send(Cmd.SUBMIT_JOB_BG, function.encode(), b"", workload)
        packet = self.conn.recv(5)
        assert packet.cmd == Cmd.JOB_CREATED, packet
        return packet.args[0].decode()

    def result(self, timeout: float = 15.0) -> tuple[str, bytes]:
        """The terminal packet: ("WORK_COMPLETE", data), ("WORK_FAIL", b""),
        ("WORK_EXCEPTION", data)."""
        while True:
            packet = self.conn.recv(timeout)
            if packet.cmd in (Cmd.WORK_COMPLETE, Cmd.WORK_EXCEPTION):
                return packet.cmd.name, packet.args[1]
            if packet.cmd == Cmd.WORK_FAIL:
                return packet.cmd.name, b""

    def run(self, function: str, workload: bytes, timeout: float = 15.0) -> tuple[str, bytes]:
        self.submit(function, workload)
        return self.result(timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def envelope(function: str, *args: Any, gearjob: bool = False, **extra: Any) -> bytes:
    """A workload as Islandora's PHP builds it (json_encode defaults: \\/ and \\uXXXX)."""
    data: dict[str, Any] = {"func": function, "args": list(args), "site": None, "uid": 1}
    if gearjob:
        data["gearjob"] = 1
    data.update(extra)
    return json.dumps(data, separators=(",", ":")).replace("/", "\\/").encode()


def write_config(path: Path, servers: Sequence[str], jobs: dict[str, str], **top: Any) -> Path:
    lines = [f"servers = {json.dumps(list(servers))}"]
    for key, value in top.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines.append("[jobs]")
    for name, target in jobs.items():
        lines.append(f"{json.dumps(name)} = {json.dumps(target)}")
    path.write_text("\n".join(lines) + "\n")
    return path


#: the jobs most tests register (tests/jobs/sample_jobs.py)
JOBS = {
    "hello": "sample_jobs:hello_world",
    "echo": "sample_jobs:echo",
    "length": "sample_jobs:length",
    "big": "sample_jobs:big",
    "each_type": "sample_jobs:each_type",
    "failing": "sample_jobs:failing",
    "unserializable": "sample_jobs:unserializable",
    "exits": "sample_jobs:exits",
    "slow": "sample_jobs:slow",
    "stubborn": "sample_jobs:stubborn",
    "touch": "sample_jobs:touch",
}


def job_flags(jobs: dict[str, str]) -> list[str]:
    return [arg for name, target in jobs.items() for arg in ("--job", f"{name}={target}")]


StartWorker = Callable[..., WorkerProcess]


class WorkerPool:
    """Starts worker subprocesses for one test; stop_all() at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []

    def start(
        self,
        *servers: Any,
        extra: Sequence[str] = (),
        jobs: dict[str, str] | None = JOBS,
        env: dict[str, str] | None = None,
        ready: bool = True,
    ) -> WorkerProcess:
        args = [a for s in servers for a in ("--server", str(s))]
        args += job_flags(jobs or {}) + list(extra)
        worker = WorkerProcess(args, self.tmp_path / f"worker{len(self.workers)}.log", env=env)
        self.workers.append(worker)
        worker.start()
        if ready:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m gearjob ARGS` to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "gearjob", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env or subprocess_env(),
        timeout=timeout,
        check=False,
    )


# -- a model of the workload envelope (fuzz tests) ----------------------------------------------

RECORD = "record"  #: the job (tests/jobs/sample_jobs.py:record) that records its arguments
MAX_DEPTH = 100  #: payload.decode_request's default nesting limit


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def depth(value: Any) -> int:
    """Nesting depth of lists and objects (a top-level object is 1)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def expected_call(workload: bytes) -> tuple[list[Any], dict[str, Any]] | None:
    """(args, kwargs) the record job must get from `workload`, None when it must not run."""
    try:
        data = json.loads(workload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or depth(data) > MAX_DEPTH:
        return None
    if "func" in data and data["func"] != RECORD:
        return None
    args = data.get("args")
    if args is None:
        return [], {}
    if isinstance(args, list):
        return args, {}
    if isinstance(args, dict):
        return [], args
    return None
