"""/etc/gearjob/queue.toml on every job server: what the gearman_server role tells the
gearjob commands (status, clear, metrics) about the local gearmand's queue."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from gearjob_ops import QUEUE_CONFIG, read_toml
from gearjob_testinfra import role_internal_vars

testinfra_hosts = ["ansible://gearman_servers"]

#: gearjob as site.yml installs it, else the copy the persistence tests install.
GEARJOB_CANDIDATES = ("/opt/gearjob/bin/gearjob", "/opt/gearjob-test/bin/gearjob")
CLIENTS = {"mysql": "mariadb", "postgres": "psql"}


def local_server(gearman_vars: dict[str, Any]) -> str:
    first = gearman_vars["gearman_server_listen"][0]
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(first, first)  # noqa: S104 (a wildcard is answered on loopback)
    port = gearman_vars["gearman_server_port"]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def expected_config(gearman_vars: dict[str, Any]) -> dict[str, Any]:
    kind = gearman_vars["gearman_server_queue_type"]
    config: dict[str, Any] = {
        "type": kind,
        "server": local_server(gearman_vars),
        "service": "gearman-job-server",
    }
    if kind == "sqlite":
        config["sqlite"] = {
            "path": gearman_vars["gearman_server_sqlite_path"],
            "table": gearman_vars["gearman_server_sqlite_table"],
        }
    elif kind in ("mysql", "postgres"):
        table = {
            key: gearman_vars[f"gearman_server_{kind}_{key}"]
            for key in ("host", "port", "user", "password", "db", "table")
        }
        if kind == "mysql" and table["host"] == "localhost":
            table["socket"] = role_internal_vars()["gearman_server__os_defaults"]["mysql_socket"]
        if kind == "postgres" and not table["password"]:
            del table["password"]
        config[kind] = table
    return config


def test_queue_config_describes_the_queue_and_only_gearman_may_read_it(
    host: Any, gearman_vars: dict[str, Any]
) -> None:
    config = host.file(QUEUE_CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "gearman", 0o640)
    assert "Ansible managed" in "".join(config.content_string.splitlines()[:3])
    assert read_toml(host, QUEUE_CONFIG) == expected_config(gearman_vars)


def test_database_queue_has_its_command_line_client(
    host: Any, gearman_vars: dict[str, Any]
) -> None:
    kind = gearman_vars["gearman_server_queue_type"]
    if kind not in CLIENTS:
        pytest.skip(f"a {kind} queue needs no database client")
    assert host.exists(CLIENTS[kind])


def test_gearjob_reads_the_queue_with_it(host: Any, gearman_vars: dict[str, Any]) -> None:
    gearjob = next((p for p in GEARJOB_CANDIDATES if host.file(p).exists), None)
    if gearjob is None:
        pytest.skip("gearjob is not installed on this host")
    server = local_server(gearman_vars)
    cmd = host.run(
        f"{gearjob} status --json --db --config /dev/null --server {shlex.quote(server)} "
        f"--queue-config {QUEUE_CONFIG}"
    )
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    persistent = json.loads(cmd.stdout)["persistent_queue"]
    kind = gearman_vars["gearman_server_queue_type"]
    assert persistent["ok"] and persistent["type"] == kind and persistent["server"] == server
    if kind != "memory":
        table = gearman_vars[f"gearman_server_{kind}_table"]
        assert f"table {table}" in persistent["location"], persistent
