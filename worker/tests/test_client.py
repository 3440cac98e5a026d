"""The client against a real gearmand, with a raw in-test worker."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import gearjob
from gearjob import (
    Client,
    JobFailed,
    JobTimeout,
    PayloadError,
    ServerAddress,
    ServerUnavailable,
)
from gearjob.client import JobResult
from gearjob.errors import ProtocolError
from gearjob.protocol import (
    Cmd,
    Connection,
    FunctionStatus,
    admin_command,
    pack_response,
    server_status,
)

if TYPE_CHECKING:
    from conftest import GearmanServer, RawWorker

pytestmark = pytest.mark.timeout(60)

WorkerFactory = Callable[..., "RawWorker"]


def echo(*args: Any, **kwargs: Any) -> Any:
    return {"args": list(args), "kwargs": kwargs}


def boom(message: str) -> None:
    raise ValueError(message)


class ImageError(Exception):
    pass


def image_error() -> None:
    raise ImageError("cannot read /tmp/a.jpg")


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def queued(server: GearmanServer, function: str) -> int:
    for status in server_status(server.address):
        if status.function == function:
            return status.total
    return 0


@pytest.fixture
def client(gearmand: GearmanServer) -> Client:
    with Client([gearmand.address], timeout=10) as c:
        yield c  # type: ignore[misc]


# -- foreground ---------------------------------------------------------------------------------


def test_submit_returns_the_value_untouched(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo})
    args = [
        "plain",
        "ünïcödé — 日本語 \U0001f389",
        {"nested": [1, 2.5, None, True, {"k": "v"}]},
        2**70,
        -0.0,
        "",
        [],
    ]
    assert client.submit("echo", *args) == {"args": args, "kwargs": {}}
    assert client.submit("echo") == {"args": [], "kwargs": {}}


def test_ten_megabyte_argument_and_result(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo})
    big = "€✓" * (10 * 1024 * 1024 // 6)  # ~10 MiB as UTF-8, ~4x that as escaped JSON
    assert client.submit("echo", big, timeout=60)["args"] == [big]


def test_envelope_on_the_wire(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    worker = raw_worker(gearmand, {"echo": echo})
    client.submit("echo", "a/b", 1, unique="key-1")
    _, unique, workload = worker.jobs[-1]
    assert unique == "key-1"
    assert json.loads(workload) == {
        "func": "echo",
        "args": ["a/b", 1],
        "site": None,
        "uid": None,
        "gearjob": 1,
    }
    assert workload.isascii()


def test_job_exception_becomes_job_failed(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"boom": boom, "image_error": image_error})
    with pytest.raises(JobFailed) as info:
        client.submit("boom", "bad input ✗")
    err = info.value
    assert err.job_name == "boom"
    assert err.exc_type == "ValueError"
    assert err.message == "bad input ✗"
    assert err.handle is not None
    assert err.handle.startswith("H:")
    assert str(err) == f"job boom ({err.handle}) failed: ValueError: bad input ✗"
    with pytest.raises(JobFailed, match=r"failed: test_client\.ImageError: cannot read"):
        client.submit("image_error")
    # the connection is still in order afterwards
    with pytest.raises(JobFailed, match="again"):
        client.submit("boom", "again")


def test_work_fail_without_exception(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"boom": boom}, exceptions=False)
    with pytest.raises(JobFailed) as info:
        client.submit("boom", "x")
    assert info.value.exc_type is None
    assert "without details (WORK_FAIL)" in str(info.value)
    assert "\0" not in str(info.value)


def test_status_data_and_warnings_are_ignored(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo}, chatty=True)
    assert client.submit("echo", 1) == {"args": [1], "kwargs": {}}
    assert client.run_batch([{"job_name": "echo", "args": [2]}])[0].value == {
        "args": [2],
        "kwargs": {},
    }


def test_timeout_then_next_result_is_not_mixed_up(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    release = threading.Event()

    def slow(tag: str) -> str:
        release.wait(10)
        return f"slow {tag}"

    raw_worker(gearmand, {"slow": slow, "echo": echo})
    with pytest.raises(JobTimeout) as info:
        client.submit("slow", "first", timeout=0.2)
    assert info.value.job_name == "slow"
    assert info.value.timeout == 0.2
    assert info.value.handle is not None
    assert str(info.value) == f"job slow ({info.value.handle}) did not finish within 0.2 s"
    release.set()
    assert client.submit("echo", "second") == {"args": ["second"], "kwargs": {}}
    assert client.submit("slow", "third") == "slow third"


def test_timeout_without_any_worker(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    with pytest.raises(JobTimeout, match=r"did not finish within 0\.1 s"):
        client.submit("late", "abandoned", timeout=0.1)
    # the client closed the connection, so gearmand skips the abandoned job
    worker = raw_worker(gearmand, {"late": echo})
    assert client.submit("late", "wanted")["args"] == ["wanted"]
    assert [json.loads(w)["args"] for _, _, w in worker.jobs] == [["wanted"]]


def test_default_timeout_from_client(gearmand: GearmanServer) -> None:
    with Client([str(gearmand.address)], timeout=0.1) as c, pytest.raises(JobTimeout):
        c.submit("nobody_serves_this")


def test_priorities_foreground(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo})
    for priority in ("low", "normal", "high"):
        assert client.submit("echo", priority, priority=priority)["args"] == [priority]  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="priority must be 'low', 'normal' or 'high', not 'urgent'"
    ):
        client.submit("echo", priority="urgent")  # type: ignore[arg-type]


def test_priorities_order_the_queue(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    order: list[str] = []
    for priority in ("low", "normal", "high", "low", "high"):
        client.submit_background("record", priority, priority=priority, unique=False)  # type: ignore[arg-type]
    assert queued(gearmand, "record") == 5
    raw_worker(gearmand, {"record": order.append})
    wait_until(lambda: len(order) == 5, "five jobs")
    assert order == ["high", "high", "normal", "low", "low"]


def test_priorities_order_a_foreground_batch(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    order: list[str] = []
    jobs = [{"job_name": "record", "args": [p], "priority": p} for p in ("low", "normal", "high")]

    def start_worker_when_queued() -> None:
        wait_until(lambda: queued(gearmand, "record") == 3, "three queued jobs")
        raw_worker(gearmand, {"record": order.append})

    starter = threading.Thread(target=start_worker_when_queued)
    starter.start()
    results = client.run_batch(jobs)
    starter.join()
    assert [r.ok for r in results] == [True, True, True]
    assert order == ["high", "normal", "low"]


# -- background, unique keys, status ------------------------------------------------------------


def test_submit_background_runs_the_job(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    seen: list[Any] = []
    raw_worker(gearmand, {"remember": seen.append})
    handle = client.submit_background("remember", {"id": "ä"})
    assert handle.startswith("H:")
    wait_until(lambda: seen == [{"id": "ä"}], "the background job")


def test_unique_key_dedups_waiting_jobs(gearmand: GearmanServer, client: Client) -> None:
    key = "object-42-" + "k" * 53  # 63 bytes, the longest key gearmand handles
    first = client.submit_background("later", 1, unique=key)
    second = client.submit_background("later", 2, unique=key)
    assert first == second
    assert server_status(gearmand.address) == [FunctionStatus("later", 1, 0, 0)]
    other = client.submit_background("later", 1, unique="object-43")
    assert other != first
    assert queued(gearmand, "later") == 2


def test_default_unique_dedups_identical_jobs(gearmand: GearmanServer, client: Client) -> None:
    a = client.submit_background("same", "x", {"k": 1})
    b = client.submit_background("same", "x", {"k": 1})
    c = client.submit_background("same", "y")
    assert a == b != c
    assert queued(gearmand, "same") == 2
    client.submit_background("nodedup", "x", unique=False)
    client.submit_background("nodedup", "x", unique=None)
    assert queued(gearmand, "nodedup") == 2


def test_unique_key_is_checked(client: Client) -> None:
    with pytest.raises(ValueError, match="at most 63 bytes"):
        client.submit_background("j", unique="x" * 64)
    with pytest.raises(ValueError, match="at most 63 bytes"):
        client.submit("j", unique="ü" * 32)


def test_job_names_are_checked(client: Client) -> None:
    for bad in ("", "with space", "nul\0", "x" * 513):
        with pytest.raises(ValueError, match="job name"):
            client.submit(bad)


def test_job_status(gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    handle = client.submit_background("slow")
    status = client.job_status(handle)
    assert (status.handle, status.known, status.running) == (handle, True, False)
    worker = raw_worker(gearmand, {"slow": slow})
    assert started.wait(10)
    wait_until(lambda: client.job_status(handle).running, "the job to run")
    release.set()
    wait_until(lambda: not client.job_status(handle).known, "the job to finish")
    assert worker.error is None
    unknown = client.job_status("H:nowhere:1")
    assert (unknown.known, unknown.running, unknown.fraction) == (False, False, None)
    # a fresh client (no memory of the handle) asks every server
    with Client([gearmand.address]) as other:
        assert other.job_status(client.submit_background("unserved")).known


def test_job_status_progress(gearmand: GearmanServer, client: Client) -> None:
    handle = client.submit_background("progress")
    worker = Connection(gearmand.address)
    worker.connect()
    try:
        worker.send(Cmd.CAN_DO, b"progress")
        worker.send(Cmd.GRAB_JOB_UNIQ)
        assert worker.recv(5).args[0].decode() == handle
        worker.send(Cmd.WORK_STATUS, handle.encode(), b"3", b"4")
        wait_until(lambda: client.job_status(handle).numerator == 3, "progress")
        status = client.job_status(handle)
        assert (status.running, status.denominator, status.fraction) == (True, 4, 0.75)
    finally:
        worker.close()


# -- batches ------------------------------------------------------------------------------------


def test_run_batch_in_input_order(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo, "boom": boom})
    jobs: list[dict[str, Any]] = [{"job_name": "echo", "args": [i]} for i in range(50)]
    jobs[7] = {"job_name": "boom", "args": ["seven"]}
    jobs[30] = {"job_name": "echo"}
    seen: list[tuple[int, JobResult]] = []
    results = client.run_batch(jobs, on_result=lambda i, r: seen.append((i, r)))
    assert len(results) == 50
    for i, result in enumerate(results):
        if i == 7:
            assert not result.ok
            assert isinstance(result.error, JobFailed)
            assert (result.error.exc_type, result.error.message) == ("ValueError", "seven")
            assert result.value is None
        elif i == 30:
            assert result.value == {"args": [], "kwargs": {}}
        else:
            assert result.ok, result
            assert result.value == {"args": [i], "kwargs": {}}
            assert result.job_name == "echo"
            assert result.handle is not None
    assert sorted(i for i, _ in seen) == list(range(50))
    assert all(results[i] is r for i, r in seen)
    assert client.submit_batch(jobs) is False
    assert client.submit_batch([j for j in jobs if j["job_name"] == "echo"]) is True
    assert client.run_batch([]) == []
    # the connection is reused in order afterwards
    assert client.submit("echo", "after") == {"args": ["after"], "kwargs": {}}


def test_batch_with_duplicate_unique_keys(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    worker = raw_worker(gearmand, {"echo": echo})
    jobs = [{"job_name": "echo", "args": [i], "unique": "same"} for i in range(3)]
    results = client.run_batch(jobs, timeout=10)
    assert all(r.ok for r in results)
    # jobs coalesced by the server share one run (and its result)
    assert len(worker.jobs) + len({r.handle for r in results}) >= 2
    assert {json.dumps(r.value) for r in results} <= {
        json.dumps({"args": [i], "kwargs": {}}) for i in range(3)
    }


def test_batch_timeout(gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client) -> None:
    raw_worker(gearmand, {"echo": echo})
    jobs = [{"job_name": "echo", "args": [1]}, {"job_name": "nobody_serves_this"}]
    results = client.run_batch(jobs, timeout=0.5)
    assert results[0].ok
    assert isinstance(results[1].error, JobTimeout)
    assert "did not finish within 0.5 s" in str(results[1].error)
    assert client.submit("echo", 2)["args"] == [2]


def test_batch_payload_error_before_anything_is_sent(
    gearmand: GearmanServer, client: Client
) -> None:
    jobs = [{"job_name": "later", "args": [1]}, {"job_name": "later", "args": [{1, 2}]}]
    with pytest.raises(PayloadError, match=r"batch job 1: argument 1 of job later \(set\)"):
        client.run_batch(jobs)
    assert server_status(gearmand.address) == []


@pytest.mark.parametrize(
    ("job", "error", "match"),
    [
        ({"args": []}, ValueError, "batch job 0 has no job_name"),
        ({"job_name": "x", "arg": []}, ValueError, r"unknown key\(s\) \['arg'\]"),
        ({"job_name": "x", "args": "abc"}, ValueError, "args must be a list, not str"),
        ({"job_name": "x", "priority": "asap"}, ValueError, "not 'asap'"),
        (["x"], TypeError, "batch job 0 must be a mapping"),
    ],
)
def test_batch_job_specs_are_checked(
    client: Client, job: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        client.run_batch([job])


def test_batch_spreads_over_servers(
    gearmand_factory: Callable[..., GearmanServer], raw_worker: WorkerFactory
) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    w1 = raw_worker(one, {"echo": echo})
    w2 = raw_worker(two, {"echo": echo})
    with Client([one.address, two.address], timeout=20) as c:
        results = c.run_batch([{"job_name": "echo", "args": [i]} for i in range(200)])
        assert [r.value["args"] for r in results] == [[i] for i in range(200)]
        assert len(w1.jobs) > 0
        assert len(w2.jobs) > 0
        assert len(w1.jobs) + len(w2.jobs) == 200


# -- payload errors -----------------------------------------------------------------------------


def test_payload_error_before_anything_is_sent(gearmand: GearmanServer, client: Client) -> None:
    with pytest.raises(PayloadError, match=r"argument 2 of job later \(set\)"):
        client.submit("later", "ok", {1, 2})
    with pytest.raises(PayloadError, match="argument 1 of job later"):
        client.submit_background("later", float("nan"))
    assert server_status(gearmand.address) == []


def test_oversize_arguments_and_results(gearmand: GearmanServer, raw_worker: WorkerFactory) -> None:
    raw_worker(gearmand, {"echo": echo, "grow": lambda n: "x" * n})
    with Client([gearmand.address], timeout=10, max_packet_size=4096) as c:
        with pytest.raises(PayloadError, match="more than max_packet_size 4096"):
            c.submit("echo", "x" * 5000)
        assert c.submit("grow", 4000) == "x" * 4000
        with pytest.raises(
            ProtocolError,
            match=r"packet of 50\d\d bytes announced, more than max_packet_size 4096; "
            r"connection closed \(raise max_packet_size .*\); while waiting for job grow \(H:",
        ):
            c.submit("grow", 5000)
        assert c.submit("echo", "small") == {"args": ["small"], "kwargs": {}}


# -- servers going away -------------------------------------------------------------------------


def test_server_unavailable_message(unused_port: int) -> None:
    with Client([f"127.0.0.1:{unused_port}"]) as c:
        with pytest.raises(ServerUnavailable) as info:
            c.submit("j")
        assert str(info.value) == f"127.0.0.1:{unused_port}: connection refused"
        with pytest.raises(ServerUnavailable, match="connection refused"):
            c.submit_background("j")
        with pytest.raises(ServerUnavailable, match="connection refused"):
            c.run_batch([{"job_name": "j"}])
        with pytest.raises(ServerUnavailable, match="connection refused"):
            c.job_status("H:x:1")


def test_server_that_does_not_answer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        port = silent.getsockname()[1]
        with (
            Client([f"127.0.0.1:{port}"], connect_timeout=0.2) as c,
            pytest.raises(ServerUnavailable) as info,
        ):
            c.submit("j")
    assert str(info.value) == f"127.0.0.1:{port}: no answer to the greeting within 0.2 s"


def test_all_servers_down_names_each(
    gearmand_factory: Callable[..., GearmanServer],
) -> None:
    one, two = gearmand_factory(), gearmand_factory()
    one.stop()
    two.stop()
    with Client([one.address, two.address]) as c, pytest.raises(ServerUnavailable) as info:
        c.submit("j")
    message = str(info.value)
    assert message.startswith("no job server available: ")
    assert f"127.0.0.1:{one.port}: connection refused" in message
    assert f"127.0.0.1:{two.port}: connection refused" in message


def test_failover_to_second_server(
    gearmand_factory: Callable[..., GearmanServer], raw_worker: WorkerFactory
) -> None:
    down, up = gearmand_factory(), gearmand_factory()
    raw_worker(up, {"echo": echo})
    down.stop()
    with Client([down.address, up.address], timeout=10) as c:
        for i in range(6):  # every rotation position
            assert c.submit("echo", i)["args"] == [i]
            assert c.submit_background("echo", i, unique=False).startswith("H:")
        assert all(r.ok for r in c.run_batch([{"job_name": "echo", "args": [1]}] * 5))


class DroppingServer:
    """Greets like gearmand (answers OPTION_REQ), then drops the connection at the first job:
    a job server that goes away between connect and submit."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = ServerAddress("127.0.0.1", self.listener.getsockname()[1])
        self.submits = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
                while len(data) >= 12 and len(data) >= 12 + int.from_bytes(data[8:12], "big"):
                    cmd = Cmd(int.from_bytes(data[4:8], "big"))
                    data = data[12 + int.from_bytes(data[8:12], "big") :]
                    if cmd == Cmd.OPTION_REQ:
                        conn.sendall(pack_response(Cmd.OPTION_RES, b"exceptions"))
                    elif cmd.name.startswith("SUBMIT_JOB"):
                        self.submits += 1
                        return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dropping() -> Iterator[DroppingServer]:
    server = DroppingServer()
    try:
        yield server
    finally:
        server.close()


def test_dropped_submit_goes_to_the_next_server(
    gearmand: GearmanServer,
    raw_worker: WorkerFactory,
    dropping: DroppingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gearjob.client, "BACKOFF_FIRST", 60.0)
    raw_worker(gearmand, {"echo": echo})
    with Client([dropping.address, gearmand.address], timeout=10) as c:
        assert c.submit("echo", 1)["args"] == [1]  # tried the dropping server first
        assert dropping.submits == 1
        for i in range(4):  # backed off: it is tried last, so not at all
            assert c.submit("echo", i)["args"] == [i]
            assert c.submit_background("echo", i, unique=False).startswith("H:")
        assert dropping.submits == 1


def test_batch_resubmits_dropped_jobs(
    gearmand: GearmanServer, raw_worker: WorkerFactory, dropping: DroppingServer
) -> None:
    raw_worker(gearmand, {"echo": echo})
    with Client([dropping.address, gearmand.address], timeout=10) as c:
        results = c.run_batch([{"job_name": "echo", "args": [i]} for i in range(20)])
    assert dropping.submits == 1
    assert [r.value["args"] for r in results] == [[i] for i in range(20)]


def test_a_port_that_is_not_a_job_server(
    gearmand: GearmanServer, raw_worker: WorkerFactory
) -> None:
    raw_worker(gearmand, {"echo": echo})
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_like_http() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.recv(1024)

        threading.Thread(target=answer_like_http, daemon=True).start()
        with Client([f"127.0.0.1:{port}", gearmand.address], timeout=10) as c:
            assert c.submit("echo", 1)["args"] == [1]  # after trying the HTTP port first
        threading.Thread(target=answer_like_http, daemon=True).start()
        with (
            Client([f"127.0.0.1:{port}"], timeout=10) as c,
            pytest.raises(ServerUnavailable, match=r"not a Gearman response.*HTTP/1\.1 400"),
        ):
            c.submit("echo", 1)


def test_reconnect_after_restart(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    raw_worker(gearmand, {"echo": echo})
    assert client.submit("echo", 1)["args"] == [1]
    gearmand.stop()
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{gearmand.port}: "):
        client.submit("echo", 2)
    gearmand.start()  # same port; the old raw worker is gone with the old server
    raw_worker(gearmand, {"echo": echo})
    assert client.submit("echo", 3)["args"] == [3]
    # and once more without the client noticing the outage in between
    gearmand.kill()
    gearmand.start()
    raw_worker(gearmand, {"echo": echo})
    assert client.submit("echo", 4)["args"] == [4]
    assert client.submit_background("echo", 5).startswith("H:")


@contextmanager
def killed_once_a_job_runs(gearmand: GearmanServer, raw_worker: WorkerFactory) -> Iterator[None]:
    """Serve "hang" jobs that block; kill gearmand as soon as one has started."""
    release = threading.Event()
    worker = raw_worker(gearmand, {"hang": lambda: release.wait(20)})

    def kill_when_running() -> None:
        wait_until(lambda: bool(worker.jobs), "a job to start")
        gearmand.kill()

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        yield
    finally:
        release.set()
        killer.join()


def test_server_dies_while_job_runs(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    with (
        killed_once_a_job_runs(gearmand, raw_worker),
        pytest.raises(
            ServerUnavailable,
            match=r"^127\.0\.0\.1:\d+: connection .* while waiting for job hang \(H:.*\)$",
        ),
    ):
        client.submit("hang", timeout=30)


def test_batch_server_dies(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    with killed_once_a_job_runs(gearmand, raw_worker):
        results = client.run_batch([{"job_name": "hang"}, {"job_name": "hang", "args": [1]}])
    assert all(isinstance(r.error, ServerUnavailable) for r in results)
    assert all("while waiting for job hang (H:" in str(r.error) for r in results)


# -- threads, module-level functions, configuration ---------------------------------------------


def test_client_refuses_concurrent_use(
    gearmand: GearmanServer, raw_worker: WorkerFactory, client: Client
) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "done"

    raw_worker(gearmand, {"slow": slow})
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(client.submit("slow")))
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="another thread at the same time"):
            client.submit("slow")
    finally:
        release.set()
        thread.join()
    assert result == ["done"]
    # sequential use from another thread is fine
    other: list[Any] = []
    t2 = threading.Thread(target=lambda: other.append(client.submit("slow")))
    t2.start()
    t2.join()
    assert other == ["done"]


def test_module_functions_use_a_client_per_thread(
    gearmand: GearmanServer, raw_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_worker(gearmand, {"echo": echo, "boom": boom})
    monkeypatch.setenv("GEARJOB_SERVERS", str(gearmand.address))
    gearjob.close_default_client()
    try:
        assert gearjob.submit("echo", "m") == {"args": ["m"], "kwargs": {}}
        handle = gearjob.submit_background("echo", "bg", priority="high")
        assert gearjob.job_status(handle).handle == handle
        assert gearjob.submit_batch([{"job_name": "echo", "args": [1]}]) is True
        assert gearjob.run_batch([{"job_name": "boom", "args": ["b"]}])[0].ok is False
        mine = gearjob.default_client()
        assert mine.servers == [gearmand.address]
        theirs: list[Client] = []
        t = threading.Thread(target=lambda: theirs.append(gearjob.default_client()))
        t.start()
        t.join()
        assert theirs[0] is not mine
        theirs[0].close()
    finally:
        gearjob.close_default_client()


def test_client_from_config_file(
    tmp_path: Path, gearmand: GearmanServer, raw_worker: WorkerFactory
) -> None:
    raw_worker(gearmand, {"echo": echo})
    path = tmp_path / "client.toml"
    path.write_text(
        f'servers = ["{gearmand.address}"]\ntimeout = 7\nconnect_timeout = 2\nclient_id = "web1"\n'
    )
    with Client(config=path) as c:
        assert (c.timeout, c.connect_timeout, c.client_id) == (7.0, 2.0, "web1")
        assert c.submit("echo", 1)["args"] == [1]
        workers = admin_command(gearmand.address, "workers")
        assert any(" web1 :" in line for line in workers), workers
    with Client(config=path, timeout=None) as c:
        assert c.timeout is None
    path.write_text(f'servers = ["{gearmand.address}"]\n')
    with Client(config=path) as c:
        assert c.timeout == 60.0  # the built-in default when the file has none
    with Client(["h1:1", "h2"]) as c:
        assert [str(a) for a in c.servers] == ["h1:1", "h2:4730"]
