"""Fault tests: what the stack promises whatever crashes (README.md, "The chaos scenario").

With a persistent queue, a background job that gearmand acknowledged with a handle runs at
least once; a foreground caller gets a result or a clear error, never a hang. Each test
submits N known background jobs (``GEARJOB_CHAOS_N``, default 1000), breaks something
while they drain, restores it (also when the test fails), waits for the drain and adds a
row to the table: jobs acknowledged, jobs run, lost (must be 0), duplicates (extra runs).
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from typing import Any

import pytest
from chaos import (
    POISON,
    RECORD,
    SERVER_UNIT,
    N,
    Row,
    Stack,
    Submitter,
    address,
    cut,
    docker,
    drain,
    foreground,
    functions,
    heal,
    kill_server,
    kill_worker,
    new_tag,
    run_count,
    runs,
    server_pid,
    sh,
    submit,
    wait_running,
    wait_server,
    wait_until,
    worker_pids,
)

QUEUES = ["sqlite", "mysql", "postgres"]
DATABASE_UNITS = {"mysql": "mariadb.service", "postgres": "postgresql.service"}


def at_progress(
    worker: str, tag: str, marks: list[int], act: Any, limit: float = 240
) -> None:
    """Call ``act(i)`` each time the runs of ``tag`` pass ``marks[i]``."""
    for i, mark in enumerate(marks):
        wait_until(
            f"{mark} runs of {tag}",
            lambda mark=mark: run_count(worker, tag) >= mark,
            limit,
        )
        act(i)


def report(rows: list[Row], outcome: Any, fault: str, note: str = "") -> None:
    """Add the row, then assert the promise: nothing acknowledged was lost."""
    rows.append(outcome.row(fault, note))
    assert not outcome.lost, (
        f"{fault}: {len(outcome.lost)} lost, e.g. {outcome.lost[:10]}"
    )


# -- 6. foreground callers -------------------------------------------------------------------


def foreground_row(
    fault: str, outcome: dict[str, Any], waited: float, timeout: float
) -> Row:
    """The row of one foreground call: it is not queued, so there is nothing to count or
    lose; the note says what the caller got, and after how long."""
    got = outcome.get("error") or "a result"
    return Row(
        fault, 1, "-", "-", "-", f"{got} after {waited:.1f} s (timeout {timeout:.0f} s)"
    )


def test_foreground_caller_whose_server_is_killed(
    stack: Stack, rows: list[Row]
) -> None:
    stack.settle()
    server = stack.servers["sqlite"]
    tag = new_tag("fg-kill")
    caller = foreground(stack.worker, address(server), tag, seconds=6, timeout=30)
    try:
        wait_running(server)
        killed = time.monotonic()
        before = kill_server(server)
        out, _ = caller.communicate(timeout=40)
        waited = time.monotonic() - killed
    finally:
        if caller.poll() is None:
            caller.kill()
        wait_server(server)
    outcome = json.loads(out)
    rows.append(foreground_row("foreground, its server killed", outcome, waited, 30))
    assert server_pid(server) != before
    assert outcome["ok"] is False and outcome["error"] == "ServerUnavailable", outcome
    assert waited < 5, outcome


def test_foreground_caller_cut_from_its_server(stack: Stack, rows: list[Row]) -> None:
    stack.settle()
    server = stack.servers["sqlite"]
    tag = new_tag("fg-cut")
    timeout = 8.0
    caller = foreground(stack.worker, address(server), tag, seconds=3, timeout=timeout)
    try:
        wait_running(server)
        cut(server, stack.worker)
        out, _ = caller.communicate(timeout=timeout + 30)
    finally:
        if caller.poll() is None:
            caller.kill()
        heal(server)
    outcome = json.loads(out)
    rows.append(
        foreground_row(
            "foreground, cut from its server", outcome, outcome["elapsed"], timeout
        )
    )
    assert outcome["ok"] is False and outcome["error"] == "JobTimeout", outcome
    assert outcome["elapsed"] < timeout + 3, outcome


# -- 1. kill -9 gearmand ---------------------------------------------------------------------


@pytest.mark.parametrize("queue", QUEUES)
def test_kill_gearmand_while_the_queue_drains(
    stack: Stack, rows: list[Row], queue: str
) -> None:
    stack.settle()
    server = stack.servers[queue]
    tag = new_tag(f"kill-{queue}")
    acked = submit(stack.worker, [address(server)], tag, N)
    kills = []

    def kill(_: int) -> None:
        before = kill_server(server)
        kills.append(before)
        wait_server(server, before)

    try:
        at_progress(stack.worker, tag, [N // 5, N * 2 // 5, N * 3 // 5], kill)
    finally:
        wait_server(server)
    outcome = drain(stack.worker, [server], tag, acked)
    report(rows, outcome, f"kill -9 gearmand x{len(kills)} ({queue})")
    assert len(kills) == 3


# -- 2. kill -9 workers, a poison job ---------------------------------------------------------


def test_kill_workers_at_random(stack: Stack, rows: list[Row]) -> None:
    stack.settle()
    servers = list(stack.servers.values())
    tag = new_tag("kill-workers")
    acked = submit(stack.worker, stack.addresses(), tag, N)
    chance = random.Random(tag)
    killed = []

    def kill(_: int) -> None:
        pids = worker_pids(stack.worker, stack.instances)
        running = [i for i, pid in enumerate(pids, 1) if pid]
        if running:
            killed.append(kill_worker(stack.worker, chance.choice(running)))

    at_progress(stack.worker, tag, [N * k // 10 for k in range(1, 9)], kill)
    outcome = drain(stack.worker, servers, tag, acked)
    report(rows, outcome, f"kill -9 a random worker x{len(killed)}")
    assert len([p for p in killed if p]) >= 6


def test_poison_job_is_dropped_and_reported(stack: Stack, rows: list[Row]) -> None:
    stack.settle()
    server = stack.servers["sqlite"]
    retries = 3  # gearman_server_job_retries of the scenario
    tag = new_tag("poison")
    since = sh(stack.worker, "date '+%Y-%m-%d %H:%M:%S'").strip()
    acked = submit(stack.worker, [address(server)], tag, 1, function=POISON, threads=1)
    assert acked == [0]
    wait_until(
        "gearmand to drop the poison job",
        lambda: (functions(server) or {}).get(POISON, (1, 0, 0))[0] == 0,
        limit=60,
    )
    time.sleep(3)  # a further try would show now
    tries = runs(stack.worker, tag)["poison"]
    # The report: each instance the job killed names it in its journal (the role's
    # ExecStopPost); gearmand 1.1.20 logs the drop itself only at NOTICE.
    journal = sh(
        stack.worker,
        f"journalctl --unit 'gearjob-worker@*' --since '{since}' --priority warning "
        "--no-pager --output cat",
    )
    reports = [
        line
        for line in journal.splitlines()
        if f"while running job {POISON} H:" in line
    ]
    handles = {line.split(f"job {POISON} ")[1].split(";")[0] for line in reports}
    rows.append(
        Row(
            "poison job (SIGKILLs its worker)",
            1,
            tries,
            "-",
            "-",
            f"dropped after {tries} tries (not lost: each try is named in the workers' "
            "journal)",
        )
    )
    assert tries == retries, journal
    assert len(reports) == retries and len(handles) == 1, journal
    assert (functions(server) or {}).get(POISON, (0, 0, 0))[0] == 0
    stack.settle()  # systemd restarted every worker the job killed


# -- 3. the queue database restarts under gearmand --------------------------------------------


@pytest.mark.parametrize("queue", ["mysql", "postgres"])
def test_database_restart_under_gearmand(
    stack: Stack, rows: list[Row], queue: str
) -> None:
    stack.settle()
    server = stack.servers[queue]
    unit = DATABASE_UNITS[queue]
    tag = new_tag(f"db-{queue}")
    half = N // 2
    before = server_pid(server)
    submitter = Submitter(
        stack.worker, [address(server)], tag, [(0, half), (half, N - half)]
    )
    try:
        submitter.batch()
        at_progress(
            stack.worker,
            tag,
            [half // 3],
            lambda _: sh(server, f"systemctl restart {unit}"),
        )
        # The second half is submitted right after the restart, by the same clients.
        submitter.go()
        submitter.batch()
    finally:
        submitter.close()
        sh(server, f"systemctl start {unit} {SERVER_UNIT}", check=False)
    outcome = drain(stack.worker, [server], tag, submitter.acked)
    restarted = server_pid(server) != before
    report(
        rows,
        outcome,
        f"restart {unit} ({queue})",
        f"gearmand {'restarted with it' if restarted else 'kept running'}; "
        f"{submitter.errors} submission(s) refused and retried",
    )
    assert len(submitter.acked) == N, submitter.last_error


# -- 4. a job server reboots -----------------------------------------------------------------


def test_job_server_reboot(stack: Stack, rows: list[Row]) -> None:
    stack.settle()
    server = stack.servers["sqlite"]
    tag = new_tag("reboot")
    half = N // 2
    submitter = Submitter(
        stack.worker, [address(server)], tag, [(0, half), (half, N - half)]
    )
    reboot: subprocess.Popen[str] | None = None
    try:
        submitter.batch()
        wait_until(
            "the drain to start", lambda: run_count(stack.worker, tag) >= half // 3, 120
        )
        reboot = subprocess.Popen(
            ["docker", "restart", "--time", "20", server], text=True
        )
        # The same clients submit the second half while the server reboots.
        submitter.go()
        submitter.batch()
    finally:
        submitter.close()
        if reboot is not None:
            reboot.wait(timeout=120)
        if (
            docker("inspect", "--format", "{{.State.Running}}", server).stdout.strip()
            != "true"
        ):
            docker("start", server)
    wait_server(server, limit=120)
    outcome = drain(stack.worker, [server], tag, submitter.acked)
    report(
        rows,
        outcome,
        "reboot the sqlite job server",
        f"{submitter.errors} submission(s) refused and retried",
    )
    assert len(submitter.acked) == N, submitter.last_error
    stack.settle()  # the workers are back on the rebooted server by themselves


# -- 5. a network cut between the worker host and one job server ------------------------------


def test_network_cut_between_workers_and_one_server(
    stack: Stack, rows: list[Row]
) -> None:
    stack.settle()
    cut_off = stack.servers["sqlite"]
    others = [stack.servers["mysql"], stack.servers["postgres"]]
    tag = new_tag("cut")
    half = N // 2
    cut(cut_off, stack.worker)
    try:
        # Queued on the cut-off server by a client on that host: they wait for the heal.
        stranded: list[int] = []
        local = threading.Thread(
            target=lambda: stranded.extend(
                submit(cut_off, ["127.0.0.1:4730"], tag, half)
            ),
        )
        local.start()
        # Jobs sent to the other servers keep flowing while the cut lasts.
        flowing = Submitter(
            stack.worker, [address(s) for s in others], tag, [(half, N - half)]
        )
        try:
            through = flowing.batch()
        finally:
            flowing.close()
        local.join(timeout=180)
        during = drain(stack.worker, others, tag, through, limit=120)
        assert not during.lost, (
            f"{len(during.lost)} jobs did not run through the other servers"
        )
        assert all(runs(stack.worker, tag)[str(i)] == 0 for i in stranded)
        # gearmand restarts while the cut lasts: the workers' connections to it are dead
        # but they cannot see it (every packet is dropped). The stranded jobs, kept in
        # SQLite, can only run once each worker found out and connected again.
        before = server_pid(cut_off)
        sh(cut_off, f"systemctl restart {SERVER_UNIT}")
        wait_server(cut_off, before)
        record = (functions(cut_off) or {}).get(RECORD)
        assert record is not None and record[2] == 0, (
            f"the restarted gearmand should know no worker yet: {record}"
        )
    finally:
        heal(cut_off)
    acked = stranded + through
    outcome = drain(stack.worker, [cut_off, *others], tag, acked)
    report(
        rows,
        outcome,
        "network cut worker host / sqlite server, gearmand restarted during the cut",
        f"{len(through)} ran through the other servers during the cut, "
        f"{len(stranded)} after the workers reconnected",
    )
    assert len(acked) == N
    stack.settle()  # every worker instance is registered with the new gearmand
