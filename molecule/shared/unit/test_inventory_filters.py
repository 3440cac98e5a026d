"""The filters that turn the inventory into addresses (whitelist, MySQL account, queue
database access): pure logic, on plain dicts standing for hostvars."""

from __future__ import annotations

from typing import Any

import pytest
from filter_plugins import load_filter

inventory = load_filter("gearman_server_inventory")


def facts(ipv4: str | None = None, ipv6: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"default_ipv4": {}, "default_ipv6": {}}
    if ipv4:
        found["default_ipv4"] = {"address": ipv4, "interface": "eth0"}
    if ipv6:
        found["default_ipv6"] = {"address": ipv6, "scope": "global"}
    return found


HOSTVARS: dict[str, Any] = {
    "s1": {"ansible_facts": facts("10.0.0.5")},
    "w1": {"ansible_facts": facts("10.0.0.21", "2001:db8::21"), "ansible_host": "10.0.0.21"},
    # An IP ansible_host and no facts (not gathered yet).
    "w2": {"ansible_host": "192.0.2.22"},
    # A name as ansible_host and no facts: no address (names are never looked up).
    "c1": {"ansible_host": "web1.example.org"},
    # Facts gathered, but no default route; a loopback ansible_host is no address either.
    "c2": {"ansible_facts": facts(), "ansible_host": "127.0.0.1"},
}
GROUPS = {
    "all": list(HOSTVARS),
    "gearman_servers": ["s1"],
    "gearjob_workers": ["w1", "w2"],
    "gearjob_clients": ["c1", "w1"],
    "outsiders": ["x1"],
}


def test_the_filters_are_registered() -> None:
    assert set(inventory.FilterModule().filters()) == {
        "gearman_server_members",
        "gearman_server_hosts_without_facts",
        "gearman_server_host_addresses",
        "gearman_server_host_address",
        "gearman_server_whitelist",
        "gearman_server_queue_db_clients",
    }


def test_members_are_the_groups_hosts_and_this_host_each_once() -> None:
    allowed = ["gearman_servers", "gearjob_workers", "gearjob_clients", "missing_group"]
    assert inventory.members(GROUPS, allowed, "s1") == ["s1", "w1", "w2", "c1"]
    assert inventory.members(GROUPS, [], "s1") == ["s1"]
    assert inventory.members(GROUPS, ["outsiders"], "s1") == ["x1", "s1"]


def test_facts_are_gathered_only_for_hosts_without_an_address_source() -> None:
    hosts = ["s1", "w1", "w2", "c1", "c2", "unknown"]
    assert inventory.hosts_without_facts(HOSTVARS, hosts) == ["c1", "unknown"]


def test_addresses_come_from_facts_and_an_ip_ansible_host_never_from_names() -> None:
    found = inventory.host_addresses(HOSTVARS, ["s1", "w1", "w2", "c1", "c2"])
    assert found == {
        "addresses": {
            "s1": ["10.0.0.5"],
            "w1": ["10.0.0.21", "2001:db8::21"],
            "w2": ["192.0.2.22"],
        },
        "missing": ["c1", "c2"],
    }


def test_facts_gathered_later_count_with_or_without_the_ansible_prefix() -> None:
    gathered = {
        "c1": {"ansible_default_ipv4": {"address": "10.0.0.31"}},
        "c2": {"default_ipv6": {"address": "2001:db8::32"}},
    }
    found = inventory.host_addresses(HOSTVARS, ["c1", "c2"], gathered)
    assert found == {"addresses": {"c1": ["10.0.0.31"], "c2": ["2001:db8::32"]}, "missing": []}


def test_link_local_defaults_are_no_address() -> None:
    hostvars = {"h": {"ansible_facts": facts("10.0.0.9", "fe80::1")}}
    assert inventory.host_addresses(hostvars, ["h"])["addresses"] == {"h": ["10.0.0.9"]}


def test_one_address_for_the_mysql_account() -> None:
    assert inventory.host_address(HOSTVARS, "w1") == "10.0.0.21"
    assert inventory.host_address(HOSTVARS, "w2") == "192.0.2.22"
    assert inventory.host_address(HOSTVARS, "c1") == ""
    assert inventory.host_address({}, "s1") == ""


def test_the_whitelist_joins_hosts_networks_and_local_networks_each_once() -> None:
    addresses = {"s1": ["10.0.0.5"], "w1": ["10.0.0.21", "2001:db8::21"]}
    assert inventory.whitelist(addresses, ["10.0.1.0/24", "10.0.0.5"], ["10.0.0.0/24"]) == [
        "10.0.0.5/32",
        "10.0.0.21/32",
        "2001:db8::21/128",
        "10.0.1.0/24",
        "10.0.0.0/24",
    ]
    assert inventory.whitelist({}, [], []) == []


def server(kind: str, **more: str) -> dict[str, Any]:
    return {
        "ansible_facts": facts(more.pop("ip", "10.0.0.5")),
        "gearman_server_queue_type": kind,
        **more,
    }


@pytest.mark.parametrize(
    ("server_vars", "expected"),
    [
        # The role's database tasks run on db1.
        (server("mysql", gearman_server_database_delegate_to="db1"), True),
        # The queue host is db1's name, or its IP (ansible_host).
        (server("postgres", gearman_server_postgres_host="db1"), True),
        (server("mysql", gearman_server_mysql_host="10.0.0.9"), True),
        # A database elsewhere, on the job server itself, or no database at all.
        (server("mysql", gearman_server_mysql_host="db2"), False),
        (server("mysql", gearman_server_mysql_host="127.0.0.1"), False),
        (server("sqlite"), False),
        ({"ansible_facts": facts("10.0.0.5")}, False),
    ],
)
def test_the_queue_database_serves_the_job_servers_whose_queue_is_there(
    server_vars: dict[str, Any], expected: bool
) -> None:
    hostvars = {"db1": {"ansible_host": "10.0.0.9"}, "s1": server_vars}
    found = inventory.queue_db_clients(hostvars, ["s1"], "db1")
    assert bool(found) is expected


def test_a_queue_database_client_carries_its_database_user_and_addresses() -> None:
    hostvars = {
        # Also a job server, with its queue on itself (the role's default delegate).
        "db1": server("mysql", ip="10.0.0.9", gearman_server_mysql_host="127.0.0.1"),
        "s1": server(
            "postgres",
            gearman_server_database_delegate_to="db1",
            gearman_server_postgres_db="gearman_s1",
            gearman_server_postgres_user="gearman_s1",
        ),
        "s2": server("mysql", ip="10.0.0.6", gearman_server_mysql_host="db1"),
        # Its queue is on another database host.
        "s3": server("mysql", ip="10.0.0.7", gearman_server_mysql_host="db2"),
    }
    found = inventory.queue_db_clients(hostvars, ["s1", "s2", "s3", "db1"], "db1")
    assert found == [
        {
            "host": "s1",
            "addresses": ["10.0.0.5"],
            "type": "postgres",
            "db": "gearman_s1",
            "user": "gearman_s1",
        },
        {
            "host": "s2",
            "addresses": ["10.0.0.6"],
            "type": "mysql",
            "db": "gearman",
            "user": "gearman",
        },
        {
            "host": "db1",
            "addresses": ["10.0.0.9"],
            "type": "mysql",
            "db": "gearman",
            "user": "gearman",
        },
    ]
