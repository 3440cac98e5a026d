"""Peers that do not speak Gearman properly: garbage, truncated packets, gigantic length
headers, random packets.

The client talks to a fake server (a listening socket in the test that answers the greeting
and then sends scripted raw bytes); the worker daemon (a real subprocess) talks to a fake
gearmand that answers GRAB_JOB_UNIQ with crafted JOB_ASSIGN_UNIQ packets. Both must end up
disconnected with an error (the worker logs it and reconnects) or, for an oversize job, fail
that job and keep the connection, with bounded memory.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_helpers import WorkerProcess, expected_call, job_flags, subprocess_env
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gearjob import Client, payload
from gearjob.errors import GearjobError, JobTimeout, ProtocolError
from gearjob.protocol import ARG_COUNT, MAGIC_REQ, MAGIC_RES, Cmd, pack_response

HANDLE = b"H:fake:1"
GIB = 1 << 30


def rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peak_rss(pid: int | str = "self") -> None:
    """Make VmHWM (the peak RSS) start again from the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Peer:
    """One accepted connection of a fake server: reads request packets, sends raw bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(30)
        self.buf = bytearray()

    def packet(self) -> tuple[Cmd, tuple[bytes, ...]]:
        while True:
            if len(self.buf) >= 12:
                magic, num, size = struct.unpack(">4sII", self.buf[:12])
                assert magic == MAGIC_REQ, bytes(self.buf[:40])
                if len(self.buf) >= 12 + size:
                    body = bytes(self.buf[12 : 12 + size])
                    del self.buf[: 12 + size]
                    cmd = Cmd(num)
                    nargs = ARG_COUNT[cmd]
                    return cmd, tuple(body.split(b"\0", nargs - 1)) if nargs else ()
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the peer closed the connection")
            self.buf += data

    def until(self, *cmds: Cmd) -> tuple[Cmd, tuple[bytes, ...]]:
        """The next packet with one of `cmds` (others are skipped)."""
        while True:
            cmd, args = self.packet()
            if cmd in cmds:
                return cmd, args

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


# -- the client against a fake server ----------------------------------------------------------


class ScriptedServer(threading.Thread):
    """Answers the client's greeting, reads one SUBMIT_JOB, sends `reply` and closes; for
    every connection the client makes."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="scripted-server")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = b""
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            peer = Peer(sock)
            try:
                _, args = peer.until(Cmd.OPTION_REQ)
                peer.send(pack_response(Cmd.OPTION_RES, *args))
                peer.until(Cmd.SUBMIT_JOB)
                peer.send(self.reply)
            except (OSError, EOFError):
                pass
            finally:
                peer.close()

    def stop(self) -> None:
        self.stopping = True
        with socket.create_connection(("127.0.0.1", self.port)):  # wakes accept()
            pass
        self.join(5)
        self.listener.close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def raw_packet(num: int, body: bytes, magic: bytes = MAGIC_RES) -> bytes:
    return magic + struct.pack(">II", num, len(body)) + body


CREATED = pack_response(Cmd.JOB_CREATED, HANDLE)
PACKETS = st.one_of(
    st.just(CREATED),
    st.binary(max_size=40).map(lambda d: pack_response(Cmd.WORK_COMPLETE, HANDLE, d)),
    st.just(pack_response(Cmd.WORK_FAIL, HANDLE)),
    st.binary(max_size=60).map(lambda d: pack_response(Cmd.WORK_EXCEPTION, HANDLE, d)),
    st.sampled_from([Cmd.WORK_DATA, Cmd.WORK_WARNING, Cmd.NOOP, Cmd.OPTION_RES]).map(
        lambda c: pack_response(c, HANDLE, b"x") if ARG_COUNT[c] == 2 else pack_response(c)
    ),
    st.builds(
        lambda a, b: pack_response(Cmd.ERROR, a, b), st.binary(max_size=10), st.binary(max_size=20)
    ),
    st.builds(raw_packet, st.integers(0, 70), st.binary(max_size=30)),  # any type, any body
    st.builds(raw_packet, st.integers(0, 70), st.binary(max_size=30), st.just(MAGIC_REQ)),
    st.binary(max_size=30),  # garbage
    st.builds(  # a gigantic length header
        lambda num, size, tail: MAGIC_RES + struct.pack(">II", num, size) + tail,
        st.sampled_from([Cmd.WORK_COMPLETE, Cmd.JOB_CREATED, Cmd.NOOP]),
        st.integers(64 << 20, (1 << 32) - 1),
        st.binary(max_size=20),
    ),
)


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(PACKETS, max_size=5)))
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]  # truncated
    return data


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(reply=replies())
@example(reply=CREATED + pack_response(Cmd.WORK_COMPLETE, HANDLE, b'{"ok": [1, 2]}'))
@example(reply=CREATED + MAGIC_RES + struct.pack(">II", Cmd.WORK_COMPLETE, 2 * GIB) + b"H")
@example(reply=CREATED[:-3])
@example(reply=b"HTTP/1.1 400 Bad Request\r\n\r\n")
def test_the_client_survives_any_reply(scripted: ScriptedServer, reply: bytes) -> None:
    scripted.reply = reply
    with Client([f"127.0.0.1:{scripted.port}"], timeout=20) as client:
        try:
            value = client.submit("f", "x")
        except GearjobError as exc:
            assert not isinstance(exc, JobTimeout), "the client missed the end of the connection"
            assert str(exc)
            if isinstance(exc, ProtocolError) and "refused job f" not in str(exc):
                # an ERROR answer is a proper refusal; anything else ends the connection
                assert not client._servers[0].conn.connected, "not disconnected after garbage"
            return
    assert CREATED in reply, "a result for a job that was never created"
    rest = reply[len(CREATED) :]
    magic, num, size = struct.unpack(">4sII", rest[:12].ljust(12, b"\0"))
    body = rest[12 : 12 + size]
    complete = (magic, num) == (MAGIC_RES, Cmd.WORK_COMPLETE) and len(body) == size
    if complete and body.startswith(HANDLE + b"\0"):
        assert value == payload.decode_result(body[len(HANDLE) + 1 :])


def test_the_client_does_not_buffer_a_gigantic_packet(scripted: ScriptedServer) -> None:
    header = MAGIC_RES + struct.pack(">II", Cmd.WORK_COMPLETE, 2 * GIB)
    scripted.reply = CREATED + header + HANDLE + b"\0" + b"x" * (4 << 20)
    reset_peak_rss()
    before = rss_kb()
    with (
        Client([f"127.0.0.1:{scripted.port}"], timeout=20) as client,
        pytest.raises(ProtocolError, match=r"2147483648 bytes announced, more than"),
    ):
        client.submit("f", "x")
    assert rss_kb(field="VmHWM") - before < 8 * 1024


# -- the worker against a fake gearmand ---------------------------------------------------------


@dataclass
class FakeGearmand:
    listener: socket.socket
    worker: WorkerProcess
    record: Path
    peer: Peer | None = None
    jobs: int = 0

    def accept(self) -> Peer:
        """The worker's next connection (skipping the probes it makes before connecting:
        they close without a word)."""
        while True:
            sock, _ = self.listener.accept()
            peer = Peer(sock)
            try:
                peer.until(Cmd.SET_CLIENT_ID)
            except EOFError:
                peer.close()
                continue
            self.peer = peer
            return peer

    def runs(self) -> int:
        return len(self.record.read_text().splitlines()) if self.record.exists() else 0

    def assign(self, function: bytes, unique: bytes, workload: bytes) -> tuple[bytes, list[Cmd]]:
        """Answer the worker's next GRAB_JOB_UNIQ with this job; (handle, the packets that
        ended it: [WORK_EXCEPTION,] WORK_FAIL or WORK_COMPLETE)."""
        assert self.peer is not None
        self.jobs += 1
        handle = b"H:fake:%d" % self.jobs
        self.peer.until(Cmd.GRAB_JOB_UNIQ)
        self.peer.send(pack_response(Cmd.JOB_ASSIGN_UNIQ, handle, function, unique, workload))
        return handle, self.result(handle)

    def result(self, handle: bytes) -> list[Cmd]:
        assert self.peer is not None
        seen: list[Cmd] = []
        while True:
            cmd, args = self.peer.until(Cmd.WORK_COMPLETE, Cmd.WORK_FAIL, Cmd.WORK_EXCEPTION)
            assert args[0] == handle, (cmd, args[0], handle)
            seen.append(cmd)
            if cmd != Cmd.WORK_EXCEPTION:
                return seen


def start_fake(tmp: Path) -> FakeGearmand:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    record = tmp / "record.jsonl"
    worker = WorkerProcess(
        [
            "--server",
            f"127.0.0.1:{listener.getsockname()[1]}",
            *job_flags({"record": "sample_jobs:record"}),
        ],
        tmp / "worker.log",
        env=subprocess_env(GEARJOB_TEST_RECORD=str(record)),
    )
    fake = FakeGearmand(listener, worker, record)
    worker.start()
    fake.accept()
    worker.wait_ready()
    return fake


def stop_fake(fake: FakeGearmand) -> None:
    if fake.peer is not None:
        fake.peer.close()
    fake.worker.stop()
    fake.listener.close()


@pytest.fixture(scope="module")
def shared_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGearmand]:
    fake = start_fake(tmp_path_factory.mktemp("fake"))
    try:
        yield fake
    finally:
        stop_fake(fake)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGearmand]:
    fake = start_fake(tmp_path)
    try:
        yield fake
    finally:
        stop_fake(fake)


WORKLOADS = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda args, func: json.dumps({"func": func, "args": args}).encode(),
        st.lists(st.text(max_size=5) | st.integers(), max_size=3),
        st.sampled_from(["record", "other"]),
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    function=st.sampled_from([b"record", b"", b"unknown", "r\u00e9cord".encode()])
    | st.binary(max_size=20),
    unique=st.binary(max_size=40),
    workload=WORKLOADS,
)
@example(function=b"record", unique=b"", workload=b'{"args": ["ok"]}')
@example(function=b"rec\0ord", unique=b"", workload=b'{"args": []}')
@example(function=b"\xff\xfe", unique=b"u", workload=b"{}")
def test_crafted_job_assignments_fail_or_run_correctly(
    shared_fake: FakeGearmand, function: bytes, unique: bytes, workload: bytes
) -> None:
    fake = shared_fake
    before = fake.runs()
    handle, ended = fake.assign(function, unique, workload)
    # what the worker sees: the body split at the first three NULs
    _, seen_function, _, seen_workload = (
        handle + b"\0" + function + b"\0" + unique + b"\0" + workload
    ).split(b"\0", 3)
    call = expected_call(seen_workload) if seen_function == b"record" else None
    if call is None:
        assert ended[-1] == Cmd.WORK_FAIL
        assert fake.runs() == before, "the job ran although it must not"
        if seen_function != b"record":
            pattern = (
                re.escape(handle.decode())
                + " failed in [0-9.]+ s: (job .* is not registered on this worker|workload of job)"
            )
            assert re.search(pattern, fake.worker.log())
    else:
        assert ended == [Cmd.WORK_COMPLETE]
        assert fake.runs() == before + 1
        got = json.loads(fake.record.read_text().splitlines()[-1])
        assert got == {"args": call[0], "kwargs": call[1]}


def test_the_worker_served_every_crafted_job_in_one_connection(shared_fake: FakeGearmand) -> None:
    _, ended = shared_fake.assign(b"record", b"", b'{"args": [1]}')
    assert ended == [Cmd.WORK_COMPLETE]
    assert shared_fake.worker.proc is not None and shared_fake.worker.proc.poll() is None
    assert "connection lost" not in shared_fake.worker.log()


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "received data that is not a Gearman response"),
        (MAGIC_REQ + struct.pack(">II", Cmd.NOOP, 0), "bad magic"),
        (MAGIC_RES + struct.pack(">II", 77, 0), "unknown packet type 77"),
        (MAGIC_RES + struct.pack(">II", Cmd.NOOP, 2 * GIB), "packet of 2147483648 bytes announced"),
        (
            MAGIC_RES + struct.pack(">II", Cmd.JOB_ASSIGN_UNIQ, 100) + b"H:1\0f",
            "closed by the server",
        ),
        (
            MAGIC_RES + struct.pack(">II", Cmd.JOB_ASSIGN_UNIQ, 3) + b"abc",
            "has 1 argument(s), expected 4",
        ),
    ],
)
def test_a_broken_server_is_dropped_with_a_logged_error_and_reconnected(
    fake: FakeGearmand, data: bytes, logged: str
) -> None:
    pid = fake.worker.pid
    assert fake.peer is not None
    fake.peer.until(Cmd.GRAB_JOB_UNIQ)
    # (a worker waiting for NO_JOB + NOOP reads once 24 bytes are there, or at the end)
    fake.peer.send(data.ljust(24, b"\0"))
    if logged == "closed by the server":
        fake.peer.close()  # a truncated packet, then the end
    fake.worker.wait_log(re.escape(logged))
    assert re.search(
        r"WARNING gearjob.worker: 127.0.0.1:\d+: connection lost: .*" + re.escape(logged),
        fake.worker.log(),
    )
    fake.accept()  # the worker connects again (after its back-off)
    _, ended = fake.assign(b"record", b"", b'{"args": ["after"]}')
    assert ended == [Cmd.WORK_COMPLETE]
    assert fake.worker.proc is not None and fake.worker.proc.poll() is None
    assert fake.worker.pid == pid


def test_a_two_gigabyte_job_fails_at_once_with_bounded_memory(fake: FakeGearmand) -> None:
    size = 2 * GIB
    handle = b"H:fake:huge"
    head = b'{"gearjob":1,"func":"record","args":["'
    body_start = handle + b"\0record\0\0" + head
    assert fake.peer is not None
    pid = fake.worker.pid
    fake.peer.until(Cmd.GRAB_JOB_UNIQ)
    reset_peak_rss(pid)
    before = rss_kb(pid)
    fake.peer.send(MAGIC_RES + struct.pack(">II", Cmd.JOB_ASSIGN_UNIQ, size) + body_start)
    fake.peer.send(b"x" * 8192)
    # the job fails as soon as the worker has seen its head, long before the body is there
    assert fake.result(handle) == [Cmd.WORK_EXCEPTION, Cmd.WORK_FAIL]
    chunk = memoryview(b"x" * (1 << 20))
    left = size - len(body_start) - 8192
    while left > 0:
        n = min(left, len(chunk))
        fake.peer.send(chunk[:n])
        left -= n
    _, ended = fake.assign(b"record", b"", b'{"args": ["after the huge one"]}')
    assert ended == [Cmd.WORK_COMPLETE]
    grown = rss_kb(pid, "VmHWM") - before
    assert grown < 4 * 1024, f"the worker's memory grew by {grown} kB"
    log = fake.worker.log()
    assert "job record H:fake:huge failed in" in log
    assert "its packet is 2147483648 bytes, more than this worker's max_packet_size" in log
    assert "connection lost" not in log
    assert fake.worker.proc is not None and fake.worker.proc.poll() is None


def test_the_worker_pipelines_pre_sleep_when_no_job_is_expected(fake: FakeGearmand) -> None:
    """GRAB_JOB_UNIQ and PRE_SLEEP go out together after a NOOP and after a job when the
    queue was empty last time, GRAB_JOB_UNIQ alone while jobs keep coming."""
    peer = fake.peer
    assert peer is not None

    def next_cmds(count: int) -> list[Cmd]:
        return [peer.packet()[0] for _ in range(count)]

    def assign(n: int) -> None:
        peer.send(pack_response(Cmd.JOB_ASSIGN_UNIQ, b"H:c:%d" % n, b"record", b"", b"{}"))

    peer.until(Cmd.GRAB_JOB_UNIQ)  # after CAN_DO
    assert next_cmds(1) == [Cmd.PRE_SLEEP]
    peer.send(pack_response(Cmd.NO_JOB) + pack_response(Cmd.NOOP))
    # no PRE_SLEEP of its own after that NO_JOB: the next packets are the NOOP's GRAB
    assert next_cmds(2) == [Cmd.GRAB_JOB_UNIQ, Cmd.PRE_SLEEP]
    assign(1)  # the queue was empty: the result goes with GRAB + PRE_SLEEP
    assert next_cmds(3) == [Cmd.WORK_COMPLETE, Cmd.GRAB_JOB_UNIQ, Cmd.PRE_SLEEP]
    assign(2)  # that GRAB found a job: the next one goes without PRE_SLEEP
    assert next_cmds(2) == [Cmd.WORK_COMPLETE, Cmd.GRAB_JOB_UNIQ]
    assign(3)
    assert next_cmds(2) == [Cmd.WORK_COMPLETE, Cmd.GRAB_JOB_UNIQ]
    peer.send(pack_response(Cmd.NO_JOB))  # the queue ran dry: PRE_SLEEP on its own
    assert next_cmds(1) == [Cmd.PRE_SLEEP]
    peer.send(pack_response(Cmd.NOOP))
    assert next_cmds(2) == [Cmd.GRAB_JOB_UNIQ, Cmd.PRE_SLEEP]
    assign(4)  # and after an empty queue, PRE_SLEEP comes back with the GRAB
    assert next_cmds(3) == [Cmd.WORK_COMPLETE, Cmd.GRAB_JOB_UNIQ, Cmd.PRE_SLEEP]
    assert fake.runs() == 4
