"""Who may reach the job servers and the queue database by default (see ../molecule.yml, which
sets no whitelist): the hosts of gearman_servers, gearjob_workers and gearjob_clients reach
gearmand, the database host (in none of those groups, on the same network) is refused; the
database listens on its own address and loopback only, and lets each job server's account
log in from that server's address only."""

from __future__ import annotations

from typing import Any

from gearjob_testinfra import firewall_admits, tcp_connect

testinfra_hosts = ["ansible://gearman_servers"]

GEARMAN_PORT = 4730
MYSQL_PORT = 3306


def address(host: Any) -> str:
    return host.check_output("hostname -I").split()[0]


def test_members_reach_gearmand_and_the_database_host_is_refused(host: Any, group: Any) -> None:
    outsider = group("gearman_queue_db")[0]
    members = group("gearjob_workers") + group("gearjob_clients") + group("gearman_servers")
    for member in members:
        assert tcp_connect(member, host, GEARMAN_PORT) == "connected", member.backend.host
    assert tcp_connect(outsider, host, GEARMAN_PORT) == "refused"
    for member in members:
        assert firewall_admits(host, address(member)), member.backend.host
    assert not firewall_admits(host, address(outsider))


def test_the_rules_say_whom_they_admit(host: Any) -> None:
    rules = host.file("/etc/gearman-job-server/firewall.nft").content_string
    assert "# gearman_servers, gearjob_workers, gearjob_clients and this one" in rules


def test_the_database_listens_on_its_own_address_and_loopback(group: Any) -> None:
    database = group("gearman_queue_db")[0]
    listening = database.check_output(f"ss -Hltn 'sport = :{MYSQL_PORT}'")
    local = sorted(line.split()[3] for line in listening.splitlines())
    assert local == sorted([f"127.0.0.1:{MYSQL_PORT}", f"{address(database)}:{MYSQL_PORT}"])
    socket_unit = database.service("mariadb.socket")
    assert not socket_unit.is_enabled
    assert not socket_unit.is_running


def test_each_queue_account_may_log_in_from_its_server_only(host: Any, group: Any) -> None:
    database = group("gearman_queue_db")[0]
    accounts = database.check_output(
        "mariadb -N -B -e \"SELECT CONCAT(user, '@', host) FROM mysql.user"
        " WHERE user LIKE 'gearman\\\\_s%' ORDER BY user\""
    ).split()
    servers = group("gearman_servers")
    assert accounts == sorted(
        f"gearman_{server.check_output('hostname')}@{address(server)}" for server in servers
    )
    # MariaDB refuses a host that no account may log in from before the handshake.
    for stranger in group("gearjob_workers") + group("gearjob_clients"):
        answer = tcp_connect(stranger, database, MYSQL_PORT, first_bytes=True)
        assert "is not allowed to connect" in answer, answer
    answer = tcp_connect(host, database, MYSQL_PORT, first_bytes=True)
    assert answer.startswith("connected") and "is not allowed" not in answer, answer
