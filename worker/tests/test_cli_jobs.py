"""`gearjob submit --progress / --at / --in`, `gearjob status --handle` and `gearjob cancel`
against real gearmand and a worker subprocess; the progress bar on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import run_cli, subprocess_env, wait_for

pytest_plugins = ["daemon_fixtures"]

JOBS = {
    "reporting": "context_jobs:reporting",
    "stamp": "context_jobs:stamp",
    "slow_progress": "context_jobs:slow_progress",
}


@pytest.fixture
def served(gearmand, start_worker):
    start_worker(gearmand, jobs=JOBS)
    return gearmand


def read_all(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side is closed
            return data
        if not chunk:
            return data
        data += chunk


def test_submit_progress_draws_a_bar_on_a_terminal(served):
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gearjob", "submit", "--progress", "--server", str(served),
             "reporting", "4"],
            stdout=subprocess.PIPE, stderr=follower, env=subprocess_env(),
        )  # fmt: skip
        os.close(follower)
        follower = -1
        terminal = read_all(leader).decode()
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0, terminal
    # the data chunk goes to stdout as it comes, then the result
    assert out == b"chunk1;final\n"
    bars = [part for part in terminal.split("\r") if part.startswith("[")]
    assert bars[0].startswith("[#######-----------------------] 1/4  25.0%")
    assert bars[-1].startswith("[##############################] 4/4 100.0%")
    assert "gearjob: warning from the job: careful" in terminal


def test_without_a_terminal_there_is_no_bar(served):
    done = run_cli("submit", "--progress", "--server", str(served), "reporting", "4")
    assert (done.returncode, done.stdout) == (0, "chunk1;final\n")
    assert done.stderr == "gearjob: warning from the job: careful\n"


def test_scheduled_submit_status_of_its_handle_and_its_run(served, tmp_path: Path):
    marker = tmp_path / "ran"
    done = run_cli("submit", "--server", str(served), "--background", "--in", "4s", "stamp",
                   str(marker))  # fmt: skip
    assert done.returncode == 0, done.stderr
    handle = done.stdout.strip()
    status = run_cli("status", "--server", str(served), "--handle", handle)
    assert (status.returncode, status.stdout) == (0, f"{handle}: queued\n")
    wait_for(marker.exists, 20, what="the scheduled job")
    status = run_cli("status", "--server", str(served), "--handle", handle, "--json")
    assert status.returncode == 6
    assert '"state": "unknown"' in status.stdout


def test_status_of_a_running_job_shows_its_progress(served, tmp_path: Path):
    started = tmp_path / "started"
    done = run_cli("submit", "--server", str(served), "--background", "slow_progress", "30",
                   "0.1", str(started))  # fmt: skip
    handle = done.stdout.strip()
    wait_for(started.exists, what="the job to start")
    wait_for(
        lambda: "/30 (" in run_cli("status", "--server", str(served), "--handle", handle).stdout,
        what="its progress",
    )
    status = run_cli("status", "--server", str(served), "--handle", handle)
    assert status.returncode == 0
    assert status.stdout.startswith(f"{handle}: running, ")
    cancel = run_cli("cancel", "--server", str(served), handle)
    assert cancel.returncode == 1
    assert "is running on a worker" in cancel.stderr and "gearmand cannot cancel" in cancel.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--background", "--in", "5x"], "bad duration '5x'"),
        (["--background", "--in", "0"], "more than 0 seconds"),
        (["--background", "--at", "2000-01-01T00:00"], "is in the past"),
        (["--background", "--at", "soon"], "bad time 'soon'"),
        (["--in", "10m"], "add --background"),
        (["--background", "--in", "10m", "--priority", "high"], "cannot have a priority"),
        (["--background", "--progress"], "--progress follows a foreground job"),
    ],
)
def test_bad_schedules_are_usage_errors(gearmand, args, message):
    done = run_cli("submit", "--server", str(gearmand), *args, "stamp", "x")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_cancel_a_queued_job_then_unknown_handles(gearmand, tmp_path: Path):
    done = run_cli("submit", "--server", str(gearmand), "--background", "--in", "1h", "stamp",
                   str(tmp_path / "never"))  # fmt: skip
    handle = done.stdout.strip()
    cancel = run_cli("cancel", "--server", str(gearmand), handle)
    assert (cancel.returncode, cancel.stdout) == (0, f"cancelled {handle}\n")
    unknown = run_cli("cancel", "--server", str(gearmand), "H:nohost:77")
    assert unknown.returncode == 6
    assert "no job server knows job H:nohost:77" in unknown.stderr
    bad = run_cli("cancel", "--server", str(gearmand), "H:a b")
    assert bad.returncode == 2 and "like H:host:42" in bad.stderr
    down = run_cli("cancel", "--server", "127.0.0.1:1", handle)
    assert down.returncode == 4
