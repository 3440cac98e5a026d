"""`gearjob status --db` and `gearjob clear` against gearmand with each persistent queue:
SQLite, MariaDB and PostgreSQL (real servers, see db_fixtures.py)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import wait_for

from gearjob import cli
from gearjob.client import Client
from gearjob.protocol import server_status

pytest_plugins = ["daemon_fixtures", "db_fixtures"]

N = 12
#: a function name that would delete every row if it were quoted into SQL carelessly
INJECTION = "x'OR'a'='a"
KEEP, CLEAR, OTHER = "q_keep", "q_clear", "zürich"
TOUCH = {KEEP: "sample_jobs:touch", CLEAR: "sample_jobs:touch"}


@dataclass
class Backend:
    kind: str
    section: dict[str, Any]
    gearmand_args: list[str]


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    table = "q_" + uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        path = str(tmp_path / "queue.sqlite3")
        args = ["-q", "libsqlite3", f"--libsqlite3-db={path}", f"--libsqlite3-table={table}"]
        return Backend("sqlite", {"path": path, "table": table}, args)
    database = request.getfixturevalue("mariadb" if request.param == "mysql" else "postgres")
    return Backend(request.param, database.section(table), database.gearmand_args(table))


def status(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["status", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def queued_by_function(report: dict[str, Any]) -> dict[str, int]:
    return {f["function"]: f["queued"] for f in report["servers"][0]["functions"] if f["queued"]}


def test_clear_deletes_the_jobs_of_chosen_functions_and_no_other(
    backend, gearmand_service, start_worker, tmp_path, capsys
):
    service = gearmand_service(*backend.gearmand_args)
    config = str(service.queue_toml(tmp_path / "queue.toml", backend.kind, backend.section))
    ran = tmp_path / "ran"
    ran.mkdir()
    with Client([service.address]) as client:
        for i in range(N):
            client.submit_background(KEEP, str(ran / f"keep-{i}"))
            client.submit_background(CLEAR, str(ran / f"clear-{i}"))
            client.submit_background(INJECTION, i)
            client.submit_background(OTHER, i)

    every = {KEEP: N, CLEAR: N, INJECTION: N, OTHER: N}
    code, report = status("--db", "--queue-config", config, "--server", str(service), capsys=capsys)
    assert code == 0
    assert queued_by_function(report) == every
    assert all(f["waiting"] == N and f["workers"] == 0 for f in report["servers"][0]["functions"])
    assert report["totals"] == {"queued": 4 * N, "running": 0, "waiting": 4 * N}
    persistent = report["persistent_queue"]
    assert persistent["type"] == backend.kind and persistent["ok"] is True
    assert persistent["rows"] == 4 * N
    assert {f["function"]: f["rows"] for f in persistent["functions"]} == every

    code = cli.main(
        ["clear", "--queue-config", config, "--function", CLEAR, "--function", INJECTION, "--yes"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"to delete: {2 * N} job(s)\n  q_clear: {N}\n  {INJECTION}: {N}\n" in out
    assert f"stopping gearmand at {service}" in out and f"starting gearmand at {service}" in out
    assert f"deleted {2 * N} job(s)" in out

    # gearmand came back with only the rows that are left
    code, report = status("--db", "--queue-config", config, "--server", str(service), capsys=capsys)
    assert code == 0
    assert queued_by_function(report) == {KEEP: N, OTHER: N}
    assert {f["function"]: f["rows"] for f in report["persistent_queue"]["functions"]} == {
        KEEP: N,
        OTHER: N,
    }

    # a worker for both functions runs every kept job and none of the cleared ones
    start_worker(service, jobs=TOUCH)
    wait_for(lambda: len(list(ran.glob("keep-*"))) == N, what=f"{N} {KEEP} jobs")
    with Client([service.address], timeout=30) as client:
        assert client.submit(CLEAR, str(ran / "clear-new")) == str(ran / "clear-new")
    wait_for(lambda: not queued_by_status(service, KEEP, CLEAR), what="an empty queue")
    assert sorted(p.name for p in ran.iterdir() if p.name.startswith("clear")) == ["clear-new"]


def queued_by_status(service: Any, *functions: str) -> int:
    return sum(
        s.total for s in server_status(service.address, timeout=5) if s.function in functions
    )


# ----------------------------------------------------------------------------- SQLite only


@pytest.fixture
def sqlite_service(gearmand_service, tmp_path):
    """gearmand with a SQLite queue holding one job of fn_a; its queue.toml; the database."""
    path = tmp_path / "queue.sqlite3"
    service = gearmand_service("-q", "libsqlite3", f"--libsqlite3-db={path}")
    config = service.queue_toml(tmp_path / "queue.toml", "sqlite", {"path": str(path)})
    with Client([service.address]) as client:
        client.submit_background("fn_a", 1)
    return service, str(config), path


def other_commands(service: Any, path: Path, stop: list[str], start: list[str]) -> str:
    """A queue.toml for the SQLite service with other stop/start commands."""
    config = path.parent / "other.toml"
    config.write_text(
        f'type = "sqlite"\nserver = "{service}"\nstop_command = {json.dumps(stop)}\n'
        f'start_command = {json.dumps(start)}\nstart_timeout = 0.5\n[sqlite]\npath = "{path}"\n'
    )
    return str(config)


def rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(
            conn.execute(
                "SELECT function_name, COUNT(*) FROM gearman_queue GROUP BY function_name"
            ).fetchall()
        )


def test_rows_deleted_while_gearmand_runs_are_still_executed(
    sqlite_service, start_worker, tmp_path
):
    """Why clear restarts gearmand: it reads the table only at start-up (gearmand 1.1.20)."""
    service, _, path = sqlite_service
    with Client([service.address]) as client:
        for i in range(3):
            client.submit_background("touch", str(tmp_path / f"ran-{i}"))
    assert rows(path) == {"fn_a": 1, "touch": 3}
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM gearman_queue")
    assert rows(path) == {}
    start_worker(service, jobs={"touch": "sample_jobs:touch"})
    wait_for(lambda: len(list(tmp_path.glob("ran-*"))) == 3, what="the 3 deleted jobs to run")


def test_offline_clear_refuses_while_gearmand_answers_and_leaves_it_stopped(sqlite_service, capsys):
    service, config, path = sqlite_service
    with Client([service.address]) as client:
        client.submit_background("fn_b", 2)
    assert cli.main(["clear", "--queue-config", config, "--all", "--offline", "--yes"]) == 1
    err = capsys.readouterr().err
    assert f"gearmand at {service} is running" in err and "nothing was deleted" in err
    assert rows(path) == {"fn_a": 1, "fn_b": 1}

    service.stop()
    assert cli.main(["clear", "--queue-config", config, "--all", "--offline", "--yes"]) == 0
    assert "deleted 2 job(s)" in capsys.readouterr().out
    assert rows(path) == {}
    assert cli.main(["check", "--server", str(service)]) == 4  # not started again


def test_clear_without_a_terminal_needs_yes_and_changes_nothing(sqlite_service):
    from daemon_helpers import run_cli

    service, config, path = sqlite_service
    done = run_cli("clear", "--queue-config", config, "--function", "fn_a", stdin="y\n")
    assert done.returncode == 2
    assert "to delete: 1 job(s)\n  fn_a: 1\n" in done.stdout  # shown before refusing
    assert "not a terminal" in done.stderr and "pass --yes" in done.stderr
    assert rows(path) == {"fn_a": 1}
    assert [s.queued for s in server_status(service.address) if s.function == "fn_a"] == [1]


def test_clear_asks_on_a_terminal_and_no_means_nothing_changes(sqlite_service):
    import os
    import subprocess
    import sys

    from daemon_helpers import subprocess_env

    _, config, path = sqlite_service
    master, slave = os.openpty()
    try:
        os.write(master, b"n\n")
        done = subprocess.run(
            [sys.executable, "-m", "gearjob", "clear", "--queue-config", config, "--all"],
            stdin=slave,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=30,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 1
    assert "delete 1 job(s) and restart gearmand? [y/N]" in done.stdout
    assert "nothing was deleted" in done.stderr
    assert rows(path) == {"fn_a": 1}


def test_a_failing_stop_command_deletes_nothing(sqlite_service, capsys):
    service, _, path = sqlite_service
    config = other_commands(service, path, ["false"], ["true"])
    assert cli.main(["clear", "--queue-config", config, "--all", "--yes"]) == 1
    assert "cannot stop gearmand: false exited with 1" in capsys.readouterr().err
    assert rows(path) == {"fn_a": 1}


def test_gearmand_not_answering_after_the_start_exits_4(sqlite_service, capsys):
    service, _, path = sqlite_service
    config = other_commands(service, path, service.command("stop"), ["true"])
    assert cli.main(["clear", "--queue-config", config, "--function", "fn_a", "--yes"]) == 4
    err = capsys.readouterr().err
    assert f"{service}: gearmand did not answer within 0.5 s of true" in err
    assert rows(path) == {}  # deleted while it was stopped
