"""The SQLite queue keeps background jobs across a kill -9 of gearmand."""

from __future__ import annotations

from typing import Any

testinfra_hosts = ["ansible://gearman_servers"]


def sqlite_rows(host: Any, gearman_vars: dict[str, Any]) -> Any:
    path = gearman_vars["gearman_server_sqlite_path"]
    table = gearman_vars["gearman_server_sqlite_table"]

    def rows(function: str) -> int:
        query = f"SELECT COUNT(*) FROM {table} WHERE function_name = ?"
        script = (
            "import sqlite3, sys; "
            f"db = sqlite3.connect('file:{path}?mode=ro', uri=True); "
            f"print(db.execute({query!r}, (sys.argv[1],)).fetchone()[0])"
        )
        return int(host.check_output(f'python3 -c "{script}" {function}'))

    return rows


def test_queue_survives_kill_9(host: Any, gearman_vars: dict[str, Any], gearman_persistence: Any) -> None:
    gearman_persistence.run(sqlite_rows(host, gearman_vars))


def test_scheduled_job_survives_kill_9_and_runs_on_time(
    host: Any, gearman_vars: dict[str, Any], gearman_scheduled: Any
) -> None:
    gearman_scheduled.run(sqlite_rows(host, gearman_vars), on_time=True)


def test_gearmand_logs_to_the_journal(host: Any) -> None:
    # The scenario logs at INFO: gearmand's start-up lines reach the journal.
    out = host.check_output("journalctl --unit gearman-job-server --no-pager --output cat")
    assert "Listening on 127.0.0.1:4730" in out
