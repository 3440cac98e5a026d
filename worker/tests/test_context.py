"""gearjob.current_job(): a job's handle and unique key, and WORK_STATUS / WORK_DATA /
WORK_WARNING sent from the job and from its threads (real gearmand, worker subprocess)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import JOBS, RawClient, envelope, wait_for

from gearjob import JobEnded, NotInJob, context, current_job
from gearjob.protocol import Cmd

pytest_plugins = ["daemon_fixtures"]

CONTEXT_JOBS = {
    **JOBS,
    "reporting": "context_jobs:reporting",
    "whoami": "context_jobs:whoami",
    "threaded": "context_jobs:threaded",
    "leaky": "context_jobs:leaky",
    "slow_progress": "context_jobs:slow_progress",
}


def packets_until_result(client: RawClient) -> list[tuple[str, tuple[bytes, ...]]]:
    """Every packet of the job, up to and including its WORK_COMPLETE / WORK_FAIL."""
    seen = []
    while True:
        packet = client.conn.recv(15)
        seen.append((packet.cmd.name, packet.args))
        if packet.cmd in (Cmd.WORK_COMPLETE, Cmd.WORK_FAIL):
            return seen


def test_progress_data_and_warning_reach_a_foreground_client_in_order(gearmand, start_worker):
    start_worker(gearmand, jobs=CONTEXT_JOBS)
    with RawClient(gearmand.address) as client:
        handle = client.submit("reporting", envelope("reporting", 3)).encode()
        seen = packets_until_result(client)
    assert seen == [
        ("WORK_STATUS", (handle, b"1", b"3")),
        ("WORK_STATUS", (handle, b"2", b"3")),
        ("WORK_STATUS", (handle, b"3", b"3")),
        ("WORK_DATA", (handle, b"chunk1;")),
        ("WORK_WARNING", (handle, b"careful")),
        ("WORK_COMPLETE", (handle, b"final")),
    ]


def test_a_job_knows_its_function_handle_and_unique_key(gearmand, start_worker):
    start_worker(gearmand, jobs=CONTEXT_JOBS)
    with RawClient(gearmand.address) as client:
        handle = client.submit("whoami", envelope("whoami", gearjob=True), unique=b"key-7")
        _, data = client.result()
    assert json.loads(data) == {"function": "whoami", "handle": handle, "unique": "key-7"}


def test_sends_from_the_jobs_threads_never_interleave(gearmand, start_worker):
    start_worker(gearmand, jobs=CONTEXT_JOBS)
    with RawClient(gearmand.address) as client:
        handle = client.submit("threaded", envelope("threaded", 4, 50)).encode()
        seen = packets_until_result(client)
    assert seen[-1] == ("WORK_COMPLETE", (handle, b"200"))
    chunks = [args[1].decode() for cmd, args in seen[:-1] if cmd == "WORK_DATA"]
    assert len(chunks) == len(seen) - 1 == 200
    assert all(re.fullmatch(r"<\d:\d+:x{2000}>", c) for c in chunks)
    assert {(c.split(":")[0], c.split(":")[1]) for c in chunks} == {
        (f"<{i}", str(n)) for i in range(4) for n in range(50)
    }


def test_a_send_after_the_job_ended_raises_job_ended_and_sends_nothing(
    gearmand, start_worker, tmp_path: Path
):
    worker = start_worker(gearmand, jobs=CONTEXT_JOBS)
    report = tmp_path / "late"
    with RawClient(gearmand.address) as client:
        handle = client.submit("leaky", envelope("leaky", str(report))).encode()
        assert packets_until_result(client) == [("WORK_COMPLETE", (handle, b"done"))]
        text = wait_for(lambda: report.exists() and report.read_text(), what="the late report")
        assert text.startswith("JobEnded: job leaky")
        # the worker and its connection are fine: the next job runs
        assert client.run("hello", envelope("hello", "again")) == ("WORK_COMPLETE", b"Hello again")
    assert "Traceback" not in worker.log()


def test_current_job_outside_a_job_says_where_it_works() -> None:
    assert context.slot[0] is None
    with pytest.raises(NotInJob, match="outside a job"):
        current_job()


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


@pytest.fixture
def fake_job() -> Any:
    conn = _Recorder()
    context.slot[0] = (conn, b"H:host:1", b"fn", b"")
    try:
        yield current_job(), conn
    finally:
        context.slot[0] = None


@pytest.mark.parametrize(
    ("numerator", "denominator", "message"),
    [
        (-1, 10, "numerator must be a whole number"),
        (1.5, 10, "numerator must be a whole number"),
        (True, 10, "numerator must be a whole number"),
        (1, 0, "denominator must be above 0"),
        (1, 2**32, "denominator must be a whole number"),
    ],
)
def test_bad_progress_values_are_refused_naming_the_value(
    fake_job: Any, numerator: Any, denominator: Any, message: str
) -> None:
    job, conn = fake_job
    with pytest.raises(ValueError, match=message):
        job.progress(numerator, denominator)
    assert conn.sent == []


def test_send_data_takes_bytes_or_str_only(fake_job: Any) -> None:
    job, conn = fake_job
    job.send_data(b"\0raw")
    job.send_data("é")
    with pytest.raises(TypeError, match="send_data\\(\\) takes bytes or str, not int"):
        job.send_data(5)
    assert [p[12:] for p in conn.sent] == [b"H:host:1\0\0raw", "H:host:1\0é".encode()]


def test_a_context_kept_past_its_job_refuses_to_send(fake_job: Any) -> None:
    job, conn = fake_job
    context.slot[0] = (conn, b"H:host:2", b"fn", b"")  # the next job
    errors: list[BaseException] = []

    def late() -> None:
        try:
            job.warn("late")
        except JobEnded as exc:
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "job fn H:host:1 has ended" in str(errors[0])
    assert conn.sent == []


def test_a_background_job_may_send_everything_and_nobody_complains(gearmand, start_worker):
    worker = start_worker(gearmand, jobs=CONTEXT_JOBS, extra=["--log-each-job"])
    with RawClient(gearmand.address) as client:
        client.submit_background("reporting", envelope("reporting", 2))
        wait_for(lambda: "job reporting H:" in worker.log() and " done in " in worker.log())
        # the worker's connection is fine: a foreground job right after gets its answers
        handle = client.submit("reporting", envelope("reporting", 1)).encode()
        assert packets_until_result(client)[-1] == ("WORK_COMPLETE", (handle, b"final"))
    assert "ERROR" not in worker.log() and "unexpected" not in worker.log()
