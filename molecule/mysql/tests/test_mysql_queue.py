"""The MySQL queue (MariaDB on the same host) keeps background jobs across a kill -9."""

from __future__ import annotations

from typing import Any

testinfra_hosts = ["ansible://gearman_servers"]


def mariadb(host: Any, sql: str) -> str:
    return host.check_output(f"mariadb --batch --skip-column-names --execute \"{sql}\"")


def mysql_rows(host: Any, gearman_vars: dict[str, Any]) -> Any:
    db = gearman_vars["gearman_server_mysql_db"]
    table = gearman_vars["gearman_server_mysql_table"]

    def rows(function: str) -> int:
        return int(mariadb(host, f"SELECT COUNT(*) FROM {db}.{table} WHERE function_name = '{function}'"))

    return rows


def test_queue_survives_kill_9(host: Any, gearman_vars: dict[str, Any], gearman_persistence: Any) -> None:
    gearman_persistence.run(mysql_rows(host, gearman_vars))


def test_scheduled_job_survives_kill_9_and_runs_on_time(
    host: Any, gearman_vars: dict[str, Any], gearman_scheduled: Any
) -> None:
    gearman_scheduled.run(mysql_rows(host, gearman_vars), on_time=True)


def test_role_created_the_database_user_with_rights_on_its_database_only(
    host: Any, gearman_vars: dict[str, Any]
) -> None:
    user = gearman_vars["gearman_server_mysql_user"]
    # The database is on this host: the account's default host part is localhost.
    grants = mariadb(host, f"SHOW GRANTS FOR '{user}'@'localhost'")
    db = gearman_vars["gearman_server_mysql_db"]
    assert f"ON `{db}`.*" in grants
    assert "ON *.*" not in grants.replace("GRANT USAGE ON *.*", "")


def test_gearmand_waits_for_the_local_database(host: Any) -> None:
    after = host.check_output("systemctl show --property After --value gearman-job-server")
    assert "mariadb.service" in after.split()
