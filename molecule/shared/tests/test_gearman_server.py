"""What every host of the gearman_servers group must look like after the role ran."""

from __future__ import annotations

from typing import Any

from gearjob_testinfra import SERVICE, listening, main_pid, params, role_internal_vars, wait_for_restart

testinfra_hosts = ["ansible://gearman_servers"]

UNIT = "/etc/systemd/system/gearman-job-server.service"
DEFAULTS = "/etc/default/gearman-job-server"
CONFIG_DIR = "/etc/gearman-job-server"
CREDENTIALS = f"{CONFIG_DIR}/queue-credentials.conf"
LISTEN_HOSTS = f"{CONFIG_DIR}/listen.hosts"


def test_packages_are_installed_in_the_expected_version(host: Any) -> None:
    for name in ("gearman-job-server", "gearman-tools"):
        assert host.package(name).is_installed, name
    info = host.system_info
    key = f"{info.distribution.capitalize()}-{info.release.split('.')[0]}"
    expected = role_internal_vars()["gearman_server__os_map"].get(key, {}).get("gearmand_version")
    version = host.package("gearman-job-server").version
    if expected is not None:
        assert version.startswith(f"{expected}+") or version.startswith(f"{expected}-"), (
            f"{key} ships gearmand {version}; vars/main.yml says {expected}"
        )


def test_service_is_enabled_and_running_as_gearman(host: Any) -> None:
    service = host.service(SERVICE)
    assert service.is_enabled
    assert service.is_running
    pid = main_pid(host)
    assert pid > 0
    process = host.process.get(pid=pid)
    assert process.comm == "gearmand"
    assert process.user == "gearman"
    assert process.group == "gearman"
    assert len(host.process.filter(comm="gearmand")) == 1


def test_listens_exactly_on_the_configured_addresses(host: Any, gearman_vars: dict[str, Any]) -> None:
    port = gearman_vars["gearman_server_port"]
    assert listening(host, port) == set(gearman_vars["gearman_server_listen"])
    # gearmand opens no other TCP port (its HTTP protocol module stays off):
    # the only other listeners allowed are the scenario's queue databases, the
    # gearjob metrics exporter of site.yml (9731), the stack scenario's Prometheus
    # (9090) and Docker's DNS resolver on 127.0.0.11.
    ports = {
        local.rpartition(":")[2]
        for local in (line.split()[3] for line in host.check_output("ss -Hltn").splitlines())
        if not local.startswith("127.0.0.11:")
    }
    assert ports <= {str(port), "3306", "5432", "9731", "9090"}, ports
    for address in gearman_vars["gearman_server_listen"]:
        cmd = host.run(f"gearadmin -h {address} -p {port} --status")
        assert cmd.rc == 0, cmd.stderr


def test_params_are_rendered_from_the_role_variables(host: Any, gearman_vars: dict[str, Any]) -> None:
    options = params(host)
    listen = gearman_vars["gearman_server_listen"]
    expected = [
        f"--listen={listen[0] if len(listen) == 1 else 'gearman-job-server-listen'}",
        f"--port={gearman_vars['gearman_server_port']}",
        f"--threads={gearman_vars['gearman_server_threads']}",
        f"--job-retries={gearman_vars['gearman_server_job_retries']}",
        f"--worker-wakeup={gearman_vars['gearman_server_worker_wakeup']}",
        f"--verbose={gearman_vars['gearman_server_log_level']}",
        "--log-file=stderr",
    ]
    assert options[: len(expected)] == expected
    assert ("--keepalive" in options) == gearman_vars["gearman_server_keepalive"]
    assert "--daemon" not in options and "-d" not in options
    assert not any("password" in option or "conninfo" in option for option in options)
    queue = gearman_vars["gearman_server_queue_type"]
    queue_options = [o for o in options if o.startswith("--queue-type=")]
    assert len(queue_options) == (0 if queue == "memory" else 1)
    # The running gearmand got exactly these options (the role restarted it).
    cmdline = host.file(f"/proc/{main_pid(host)}/cmdline").content.split(b"\0")
    assert [arg.decode() for arg in cmdline if arg][1:] == options


def test_no_secret_on_the_command_line(host: Any, gearman_vars: dict[str, Any]) -> None:
    processes = host.check_output("ps -eo args")
    for key in ("gearman_server_mysql_password", "gearman_server_postgres_password"):
        secret = gearman_vars[key]
        if secret:
            assert secret not in processes, f"{key} is visible in ps"


def test_files_have_safe_owners_and_modes(host: Any, gearman_vars: dict[str, Any]) -> None:
    for path in (UNIT, DEFAULTS):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644), path
        assert f.content_string.startswith("#"), f"{path} does not start with the managed comment"
    d = host.file(CONFIG_DIR)
    assert d.is_directory and (d.user, d.group, d.mode) == ("root", "gearman", 0o750)
    queue = gearman_vars["gearman_server_queue_type"]
    credentials = host.file(CREDENTIALS)
    if queue in ("mysql", "postgres"):
        assert (credentials.user, credentials.group, credentials.mode) == ("root", "gearman", 0o640)
    else:
        assert not credentials.exists
    hosts_file = host.file(LISTEN_HOSTS)
    assert hosts_file.exists == (len(gearman_vars["gearman_server_listen"]) > 1)
    if queue == "sqlite":
        path = gearman_vars["gearman_server_sqlite_path"]
        directory = host.file(path.rsplit("/", 1)[0])
        assert (directory.user, directory.group, directory.mode) == ("gearman", "gearman", 0o750)
        db = host.file(path)
        assert (db.user, db.group) == ("gearman", "gearman")
        assert db.mode & 0o007 == 0, oct(db.mode)


def test_unit_is_the_roles_own_and_hardened(host: Any, gearman_vars: dict[str, Any]) -> None:
    props = host.service(SERVICE).systemd_properties
    expected = {
        "FragmentPath": UNIT,
        "Type": "exec",
        "User": "gearman",
        "Group": "gearman",
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "UnitFileState": "enabled",
        "ActiveState": "active",
    }
    assert {k: props.get(k) for k in expected} == expected
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # No capabilities at all (systemctl prints an empty bounding set as nothing).
    assert host.check_output(f"systemctl show --property CapabilityBoundingSet --value {SERVICE}") == ""
    assert "PIDFile" not in props or not props["PIDFile"]
    writable = props.get("ReadWritePaths", "").split()
    if gearman_vars["gearman_server_queue_type"] == "sqlite":
        assert writable == [gearman_vars["gearman_server_sqlite_path"].rsplit("/", 1)[0]]
    else:
        assert writable == []
    # stderr goes to the journal.
    assert props.get("StandardError") in ("inherit", "journal")
    assert props.get("StandardOutput") == "journal"


def test_unit_is_ordered_after_a_local_queue_database(host: Any, gearman_vars: dict[str, Any]) -> None:
    props = host.service(SERVICE).systemd_properties
    queue = gearman_vars["gearman_server_queue_type"]
    database_units = {"mysql": "mariadb.service", "postgres": "postgresql.service"}
    for name, unit in database_units.items():
        local = queue == name and gearman_vars[f"gearman_server_{name}_host"] in ("127.0.0.1", "localhost")
        assert (unit in props.get("After", "").split()) == local, (name, props.get("After"))
        assert (unit in props.get("Wants", "").split()) == local, (name, props.get("Wants"))
    # gearmand's PostgreSQL queue never reconnects: it restarts with a local PostgreSQL.
    local_postgres = queue == "postgres" and gearman_vars["gearman_server_postgres_host"] in (
        "127.0.0.1",
        "localhost",
    )
    part_of = props.get("PartOf", "").split()
    assert ("postgresql.service" in part_of) == local_postgres, part_of
    assert "mariadb.service" not in part_of, part_of


def test_gearmand_is_restarted_after_a_crash(host: Any, gearman_vars: dict[str, Any]) -> None:
    before = main_pid(host)
    restarts = int(host.check_output(f"systemctl show --property NRestarts --value {SERVICE}"))
    host.check_output(f"kill -SEGV {before}")
    wait_for_restart(host, before, gearman_vars["gearman_server_port"])
    after = int(host.check_output(f"systemctl show --property NRestarts --value {SERVICE}"))
    assert after == restarts + 1
