"""Scheduled background jobs (SUBMIT_JOB_EPOCH) on real gearmand with the memory, SQLite,
MariaDB and PostgreSQL queues, and cancelling queued jobs."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import wait_for

from gearjob import Client, cli
from gearjob.queue import DatabaseSettings, open_store
from gearjob.scheduling import (
    MAX_DELAY,
    JobNotFound,
    JobRunning,
    epoch_for,
    parse_duration,
    parse_time,
)

pytest_plugins = ["daemon_fixtures", "db_fixtures"]

JOBS = {"stamp": "context_jobs:stamp", "slow_progress": "context_jobs:slow_progress"}
#: how late a scheduled job may start: gearmand's whole seconds plus the worker's idle re-grab
LATE = 3.0


# ------------------------------------------------------------------------ time arguments


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("1.5s", 1.5), (" 2M ", 120)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "-5", "0", "0s", "1h-3m", "nan", "inf"])
def test_bad_durations_name_the_text_and_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=f"bad duration {text!r}"):
        parse_duration(text)


def test_times_without_an_offset_are_local_time() -> None:
    when = parse_time("2026-12-24T18:00")
    assert when.tzinfo is not None
    assert when.replace(tzinfo=None) == dt.datetime(2026, 12, 24, 18, 0)
    assert parse_time("2026-12-24T18:00+01:00").utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="bad time 'tomorrow': use an ISO 8601"):
        parse_time("tomorrow")


def test_epochs_round_up_and_refuse_what_gearmand_would_get_wrong() -> None:
    now = 1_800_000_000.25
    assert epoch_for(None, None, now=now) is None
    assert epoch_for(None, 10, now=now) == 1_800_000_011  # never before the time asked
    at = dt.datetime.fromtimestamp(now + 60, dt.timezone.utc)
    assert epoch_for(at, None, now=now) == 1_800_000_061
    past = dt.datetime.fromtimestamp(now - 1, dt.timezone.utc)
    with pytest.raises(ValueError, match="is in the past"):
        epoch_for(past, None, now=now)
    for delay in (0, -1, float("nan"), True, "10"):
        with pytest.raises(ValueError, match="delay must be"):
            epoch_for(None, delay, now=now)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"either at= .* or delay="):
        epoch_for(at, 5, now=now)
    with pytest.raises(ValueError, match="more than 366"):
        epoch_for(None, MAX_DELAY + 10, now=now)


def test_client_refuses_a_priority_with_a_schedule_before_sending() -> None:
    with Client(["127.0.0.1:1"]) as client:
        with pytest.raises(ValueError, match="cannot have priority 'high'"):
            client.submit_background("stamp", "x", delay=5, priority="high")
        with pytest.raises(ValueError, match="in the past"):
            client.submit_background("stamp", "x", at=dt.datetime(2000, 1, 1))


# ------------------------------------------------------------------------ real gearmand


@pytest.fixture(params=["memory", "sqlite", "mysql", "postgres"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[str], Any, Any]:
    """(type, gearmand arguments, DatabaseSettings or None, the queue.toml table or None)."""
    table = "s_" + uuid.uuid4().hex[:12]
    if request.param == "memory":
        return "memory", [], None, None
    if request.param == "sqlite":
        path = tmp_path / "queue.sqlite3"
        args = ["-q", "libsqlite3", f"--libsqlite3-db={path}", f"--libsqlite3-table={table}"]
        section = {"path": str(path), "table": table}
        return "sqlite", args, DatabaseSettings(kind="sqlite", **section), section
    database = request.getfixturevalue("mariadb" if request.param == "mysql" else "postgres")
    section = database.section(table)
    settings = DatabaseSettings(kind=request.param, **section)
    return request.param, database.gearmand_args(table), settings, section


def ran_at(path: Path, timeout: float = 30) -> float:
    wait_for(path.exists, timeout, f"the scheduled job to write {path}")
    return float(path.read_text())


def later(seconds: int) -> tuple[dt.datetime, int]:
    epoch = int(time.time()) + seconds
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc), epoch


def test_a_scheduled_job_is_stored_and_runs_at_its_time_never_before(
    queue, gearmand_service, start_worker, tmp_path
):
    kind, args, database, _ = queue
    service = gearmand_service(*args)
    start_worker(service, jobs=JOBS)
    marker = tmp_path / "ran"
    at, epoch = later(4)
    with Client([service.address]) as client:
        handle = client.submit_background("stamp", str(marker), at=at)
        status = client.job_status(handle)
        assert status.known and not status.running
        if database is not None:
            rows, scheduled = open_store(database).counts_scheduled(time.time())
            assert (rows, scheduled) == ({"stamp": 1}, {"stamp": 1}), kind
        when = ran_at(marker)
    assert epoch <= when <= epoch + LATE, (kind, when - epoch)
    if database is not None:
        assert open_store(database).counts_scheduled(time.time()) == ({}, {})


def test_a_scheduled_job_survives_kill_9_of_gearmand_with_a_persistent_queue(
    queue, gearmand_service, start_worker, tmp_path
):
    kind, args, _, _ = queue
    service = gearmand_service(*args)
    marker = tmp_path / "ran"
    at, epoch = later(6)
    with Client([service.address]) as client:
        handle = client.submit_background("stamp", str(marker), at=at)
    os.kill(int((service.state / "pid").read_text()), signal.SIGKILL)
    service.stop()  # waits until it is gone
    service.start()
    with Client([service.address]) as client:
        if kind == "memory":  # documented: the memory queue forgets it, like any queued job
            assert not client.job_status(handle).known
            return
    start_worker(service, jobs=JOBS)
    when = ran_at(marker)
    if kind == "postgres":
        # gearmand 1.1's PostgreSQL queue reloads its rows without when_to_run: the job
        # survives, but runs as soon as a worker is there (documented; status warns)
        assert when < epoch, when - epoch
        return
    assert epoch <= when <= epoch + LATE, (kind, when - epoch)


def test_status_counts_scheduled_rows_apart_and_warns_for_postgres(
    queue, gearmand_service, tmp_path, capsys
):
    kind, args, _, section = queue
    if section is None:
        pytest.skip("the memory queue has no table")
    service = gearmand_service(*args)
    with Client([service.address]) as client:
        client.submit_background("stamp", "due")
        client.submit_background("stamp", "later", delay=600)
    config = service.queue_toml(tmp_path / "queue.toml", kind, section)
    code = cli.main(["status", "--server", str(service), "--queue-config", str(config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ["FUNCTION", "ROWS", "SCHEDULED"] in [line.split() for line in out.splitlines()]
    assert ["stamp", "2", "1"] in [line.split() for line in out.splitlines()]
    assert ("after a restart they run at once" in out) == (kind == "postgres")


def test_the_default_unique_key_keeps_jobs_at_different_times_apart(gearmand):
    at, _ = later(600)
    with Client([gearmand.address]) as client:
        first = client.submit_background("stamp", "x", at=at)
        again = client.submit_background("stamp", "x", at=at)
        other = client.submit_background("stamp", "x", at=at + dt.timedelta(seconds=1))
    assert again == first  # the same job at the same time is queued once
    assert other != first


# ------------------------------------------------------------------------ cancel


def test_cancel_removes_a_queued_job_and_refuses_running_and_unknown_ones(
    gearmand, start_worker, tmp_path
):
    cancelled, marker, started = tmp_path / "cancelled", tmp_path / "marker", tmp_path / "started"
    with Client([gearmand.address]) as client:
        doomed = client.submit_background("stamp", str(cancelled), delay=3)
        before = client.cancel(doomed)
        assert before.known and not before.running
        with pytest.raises(JobNotFound, match="no job server knows job H:nohost:1"):
            client.cancel("H:nohost:1")
        with pytest.raises(ValueError, match="like H:host:42"):
            client.cancel("H:a b")
        start_worker(gearmand, jobs=JOBS)
        running = client.submit_background("slow_progress", 20, 0.2, str(started))
        wait_for(started.exists, what="the slow job to start")
        wait_for(lambda: client.job_status(running).denominator == 20, what="progress")
        with pytest.raises(JobRunning, match=r"running on a worker on .*, \d+/20 done"):
            client.cancel(running)
        client.submit_background("stamp", str(marker), unique=False)
        ran_at(marker)
        # the cancelled job was due 3 s after its submit: wait past that (and a re-grab)
        wait_for(lambda: time.time() > float(marker.read_text()) + 4, what="its time")
    assert not cancelled.exists()
