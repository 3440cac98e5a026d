"""What a careless or hostile job or producer cannot do to a worker (real gearmand, the
worker as a subprocess): grow its memory or log without limit, kill it with an exception
that is not an Exception, leave a forked copy of it serving, or escape its time limit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import JOBS, RawClient, envelope, wait_for

from gearjob import payload
from gearjob.protocol import Cmd, Connection, pack, server_status

pytest_plugins = ["daemon_fixtures"]

HOSTILE = {
    **JOBS,
    "interrupt": "hostile_jobs:interrupt",
    "fork": "hostile_jobs:fork",
    "take_alarm": "hostile_jobs:take_alarm",
    "unstoppable": "hostile_jobs:unstoppable",
}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def total_jobs(server: Any, function: str) -> int:
    return sum(s.total for s in server_status(server.address) if s.function == function)


def submit_background(server: Any, workloads: list[bytes], batch: int = 500) -> None:
    """Submit background jobs of `hello`, `batch` packets per write."""
    conn = Connection(server.address, connect_timeout=5)
    conn.connect()
    try:
        for start in range(0, len(workloads), batch):
            chunk = workloads[start : start + batch]
            conn.send_bytes(
                b"".join(pack(Cmd.SUBMIT_JOB_BG, b"hello", b"", workload) for workload in chunk)
            )
            for _ in chunk:
                assert conn.recv(10).cmd == Cmd.JOB_CREATED
    finally:
        conn.close()


def run_jobs_with_new_keys(server: Any, first: int, count: int) -> None:
    key_tail = "k" * 2000  # 2 KB keys, a new one for every job
    workloads = [
        envelope("hello", "x", **{f"{n}{key_tail}": 1}) for n in range(first, first + count)
    ]
    submit_background(server, workloads)
    wait_for(lambda: total_jobs(server, "hello") == 0, timeout=120, what="the jobs to be done")


def test_rss_and_log_stay_bounded_under_jobs_with_ever_new_envelope_keys(gearmand, start_worker):
    worker = start_worker(gearmand)
    run_jobs_with_new_keys(gearmand, 0, 2000)  # warm up: the allocator, the log handler
    before = rss_kb(worker.pid)
    log_before = worker.log_path.stat().st_size
    run_jobs_with_new_keys(gearmand, 2000, 20_000)
    grown_kb = rss_kb(worker.pid) - before
    log_grown = worker.log_path.stat().st_size - log_before
    print(f"20,000 jobs with new keys: RSS {before} -> {before + grown_kb} kB, log +{log_grown} B")
    # remembering and logging every key in full grew RSS by ~45 MB and the log by ~40 MB
    assert grown_kb < 12_000, f"RSS grew by {grown_kb} kB over 20,000 jobs"
    assert log_grown < 6_000_000, f"the log grew by {log_grown} bytes over 20,000 jobs"
    log = worker.log()
    assert "different sets of unknown envelope fields seen" in log
    assert "ignoring unknown envelope field(s) 0kkkk" in log
    assert worker.proc is not None and worker.proc.poll() is None


def test_huge_names_in_a_workload_are_shortened_in_the_log(gearmand, start_worker):
    worker = start_worker(gearmand)
    huge = "f" * 1_000_000
    with RawClient(gearmand.address) as client:
        workload = json.dumps({"func": huge, "args": ["x"]}).encode()
        assert client.run("hello", workload) == ("WORK_FAIL", b"")
        workload = envelope("hello", "y", **{huge: 1})
        assert client.run("hello", workload) == ("WORK_COMPLETE", b"Hello y")
    log = worker.log()
    assert len(log) < 20_000, len(log)
    assert "names another job in its envelope: func = 'fff" in log
    assert "(1000002 characters)" in log  # the repr's length
    assert "ignoring unknown envelope field(s) fff" in log


# ------------------------------------------------------------------ BaseException in a job


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "GeneratorExit", "CancelledError"])
def test_a_job_raising_a_base_exception_fails_and_the_worker_lives_on(gearmand, start_worker, kind):
    worker = start_worker(gearmand, jobs=HOSTILE)
    with RawClient(gearmand.address, exceptions=True) as client:
        cmd, data = client.run("interrupt", envelope("interrupt", kind, gearjob=True))
        assert cmd == "WORK_EXCEPTION"
        exc_type, message = payload.decode_exception(data)
        assert exc_type is not None and exc_type.endswith(kind) and message == "raised by the job"
        # as a background job too (it used to kill every worker that picked it up)
        client.submit_background("interrupt", envelope("interrupt", kind))
        worker.wait_log(f"job interrupt H:\\S+ failed in .*{kind}", count=2)
        assert client.run("hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
    assert worker.proc is not None and worker.proc.poll() is None
    assert total_jobs(gearmand, "interrupt") == 0


def test_sigint_during_a_job_still_stops_the_worker_at_once(gearmand, start_worker, tmp_path):
    worker = start_worker(gearmand, jobs=HOSTILE)
    started = tmp_path / "started"
    with RawClient(gearmand.address) as client:
        client.submit_background("slow", envelope("slow", 60, str(started)))
        wait_for(started.exists, what="the job to start")
        worker.send(signal.SIGINT)
        assert worker.wait() == 130
    assert "exiting at once on SIGINT: job slow H:" in worker.log()


# ------------------------------------------------------------------------- forking job


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_forking_job_leaves_no_second_worker(gearmand, start_worker, tmp_path):
    worker = start_worker(gearmand, jobs=HOSTILE)
    marker = tmp_path / "child"
    with RawClient(gearmand.address) as client:
        cmd, data = client.run("fork", envelope("fork", str(marker)))
        assert cmd == "WORK_COMPLETE"
        child = int(data)
        try:
            wait_for(marker.exists, what="the child to run")
            # the child ends with the job (a zombie until the worker exits), it does not serve
            wait_for(lambda: _state(child) in (None, "Z"), what=f"the forked child {child} to end")
        finally:
            if _state(child) not in (None, "Z"):
                os.kill(child, signal.SIGKILL)  # the second worker the test found
        for n in range(5):
            assert client.run("hello", envelope("hello", str(n)))[1] == f"Hello {n}".encode()
    assert int(marker.read_text()) == child
    assert "failed" not in worker.log()  # the child's sys.exit(0) failed no job
    assert worker.proc is not None and worker.proc.poll() is None and os.getpid() != child


# ---------------------------------------------------------------------------- time limit


def test_a_job_that_replaces_the_alarm_handler_does_not_lift_the_time_limit(gearmand, start_worker):
    worker = start_worker(gearmand, jobs=HOSTILE, extra=["--job-timeout", "0.5"])
    with RawClient(gearmand.address, exceptions=True) as client:
        assert client.run("take_alarm", envelope("take_alarm"))[0] == "WORK_COMPLETE"
        cmd, data = client.run("slow", envelope("slow", 30, gearjob=True), timeout=10)
        assert cmd == "WORK_EXCEPTION"
        assert payload.decode_exception(data)[1] == "job slow timed out after 0.5 s"
    assert "before job slow: an earlier job replaced the SIGALRM handler" in worker.log()


def test_a_job_that_swallows_its_timeout_is_failed_and_the_worker_exits_5(
    gearmand, start_worker, tmp_path
):
    worker = start_worker(gearmand, jobs=HOSTILE, extra=["--job-timeout", "0.5"])
    with RawClient(gearmand.address) as client:
        # 0.5 s limit: stopped hard 2 s (the shortest grace) after its deadline
        assert client.run("unstoppable", envelope("unstoppable", 60), timeout=15) == (
            "WORK_FAIL",
            b"",
        )
        assert worker.wait() == 5
    assert "job unstoppable H:" in worker.log()
    assert "ignored its time limit of 0.5 s for 2 s more" in worker.log()
    assert total_jobs(gearmand, "unstoppable") == 0  # failed, not handed to another worker
