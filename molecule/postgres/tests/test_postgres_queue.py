"""The PostgreSQL queue (on the same host) keeps background jobs across a kill -9."""

from __future__ import annotations

from typing import Any

from gearjob_testinfra import journal, main_pid, wait_for_restart

testinfra_hosts = ["ansible://gearman_servers"]


def psql(host: Any, db: str, sql: str) -> str:
    return host.check_output(f"runuser -u postgres -- psql -X -A -t -d {db} -c \"{sql}\"")


def postgres_rows(host: Any, gearman_vars: dict[str, Any]) -> Any:
    db = gearman_vars["gearman_server_postgres_db"]
    table = gearman_vars["gearman_server_postgres_table"]

    def rows(function: str) -> int:
        return int(psql(host, db, f"SELECT count(*) FROM {table} WHERE function_name = '{function}'"))

    return rows


def test_queue_survives_kill_9(host: Any, gearman_vars: dict[str, Any], gearman_persistence: Any) -> None:
    gearman_persistence.run(postgres_rows(host, gearman_vars))


def test_scheduled_job_survives_kill_9_but_runs_early(
    host: Any, gearman_vars: dict[str, Any], gearman_scheduled: Any
) -> None:
    # gearmand 1.1 reloads a PostgreSQL queue without when_to_run (documented in
    # docs/job-context-and-scheduling.md): the job survives, and runs once gearmand is back
    gearman_scheduled.run(postgres_rows(host, gearman_vars), on_time=False)


def test_queue_table_belongs_to_the_queue_user(host: Any, gearman_vars: dict[str, Any]) -> None:
    db = gearman_vars["gearman_server_postgres_db"]
    table = gearman_vars["gearman_server_postgres_table"]
    owner = psql(host, db, f"SELECT tableowner FROM pg_tables WHERE tablename = '{table}'")
    assert owner == gearman_vars["gearman_server_postgres_user"]
    assert psql(host, "postgres", f"SELECT datdba::regrole FROM pg_database WHERE datname = '{db}'") == owner


def test_password_reaches_gearmand_only_through_its_credentials_file(host: Any) -> None:
    credentials = host.file("/etc/gearman-job-server/queue-credentials.conf")
    assert "--libpq-conninfo=postgresql://" in credentials.content_string
    assert "/etc/gearman-job-server/queue-credentials.conf" in host.file("/etc/default/gearman-job-server").content_string


def test_gearmand_restarts_with_the_database(host: Any, gearman_vars: dict[str, Any]) -> None:
    """gearmand's PostgreSQL queue never reconnects: the unit is PartOf= the local database,
    so restarting PostgreSQL restarts gearmand, which accepts background jobs again."""
    port = gearman_vars["gearman_server_port"]
    db = gearman_vars["gearman_server_postgres_db"]
    table = gearman_vars["gearman_server_postgres_table"]
    function = "pg_restart_probe"
    before = main_pid(host)
    host.check_output("systemctl restart postgresql.service")
    wait_for_restart(host, before, port)
    # Without the restart gearmand answers QUEUE_ERROR to every background job from now on.
    host.check_output(f"echo x | gearman -h 127.0.0.1 -p {port} -f {function} -b -u probe-1")
    count = f"SELECT count(*) FROM {table} WHERE function_name = '{function}'"
    assert psql(host, db, count) == "1"
    assert "QUEUE_ERROR" not in journal(host, 20)
    # A worker takes the job: the row goes, nothing is left for the other tests.
    host.check_output(f"timeout 20 gearman -h 127.0.0.1 -p {port} -w -f {function} -c 1 >/dev/null")
    assert psql(host, db, count) == "0"
