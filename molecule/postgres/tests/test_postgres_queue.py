"""The PostgreSQL queue (on the same host) keeps background jobs across a kill -9."""

from __future__ import annotations

from typing import Any

testinfra_hosts = ["ansible://gearman_servers"]


def psql(host: Any, db: str, sql: str) -> str:
    return host.check_output(f"runuser -u postgres -- psql -X -A -t -d {db} -c \"{sql}\"")


def test_queue_survives_kill_9(host: Any, gearman_vars: dict[str, Any], gearman_persistence: Any) -> None:
    db = gearman_vars["gearman_server_postgres_db"]
    table = gearman_vars["gearman_server_postgres_table"]

    def rows(function: str) -> int:
        return int(psql(host, db, f"SELECT count(*) FROM {table} WHERE function_name = '{function}'"))

    gearman_persistence.run(rows)


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
