"""Filters that turn the inventory into addresses, for the gearman_server role's firewall
whitelist and MySQL account, and for ansible/queue-database.yml (pure logic, no DNS).

A host's addresses are the default IPv4 and IPv6 addresses of its gathered facts
(``ansible_facts.default_ipv4.address``, ``default_ipv6``) and its ``ansible_host`` when
that is an IP literal. A name is never looked up: a host with neither has no address.

- ``groups | gearman_server_members(allowed_groups, self)``: the hosts of those groups and
  this host, in inventory order, each once;
- ``hostvars | gearman_server_hosts_without_facts(hosts)``: the hosts whose network facts
  must be gathered (no network facts and no IP ``ansible_host``);
- ``hostvars | gearman_server_host_addresses(hosts, gathered)``: ``{"addresses": {host:
  [address]}, "missing": [host without an address]}``; ``gathered`` (``{host: facts}``) holds
  facts gathered since;
- ``hostvars | gearman_server_host_address(host)``: that host's first address, or "";
- ``addresses | gearman_server_whitelist(networks, local_networks)``: one list of networks
  for nftables, single addresses as /32 or /128, each once;
- ``hostvars | gearman_server_queue_db_clients(servers, db_host, gathered)``: the job
  servers whose queue lives on ``db_host``, each as ``{"host", "addresses", "type", "db",
  "user"}`` (no addresses: none known).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

# What a job server's queue variables mean outside the role (its defaults are not in hostvars).
QUEUE_DEFAULTS = {"type": "memory", "db": "gearman", "user": "gearman"}


def _ip(value: Any) -> str:
    """``value`` as a normalised IP address, or "" when it is not one."""
    if not isinstance(value, str):
        return ""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def _vars(hostvars: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    found = hostvars.get(host) if isinstance(hostvars, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _facts(host_vars: Mapping[str, Any], gathered: Any = None) -> Mapping[str, Any]:
    """The host's facts; facts gathered for it later (as a setup task returns them, names
    with or without "ansible_") take their place."""
    if isinstance(gathered, Mapping):
        return {key.removeprefix("ansible_"): value for key, value in gathered.items()}
    facts = host_vars.get("ansible_facts")
    return facts if isinstance(facts, Mapping) else {}


def _addresses(host_vars: Mapping[str, Any], gathered: Any = None) -> list[str]:
    facts = _facts(host_vars, gathered)
    found: list[str] = []
    for key in ("default_ipv4", "default_ipv6"):
        entry = facts.get(key)
        address = _ip(entry.get("address")) if isinstance(entry, Mapping) else ""
        if address and not ipaddress.ip_address(address).is_link_local:
            found.append(address)
    address = _ip(host_vars.get("ansible_host"))
    if address and not ipaddress.ip_address(address).is_loopback:
        found.append(address)
    return list(dict.fromkeys(found))


def members(groups: Mapping[str, Any], allowed_groups: Iterable[str], self: str) -> list[str]:
    found: list[str] = []
    for name in allowed_groups:
        found.extend(groups.get(name) or [])
    found.append(self)
    return list(dict.fromkeys(found))


def hosts_without_facts(hostvars: Mapping[str, Any], hosts: Iterable[str]) -> list[str]:
    wanted = []
    for host in hosts:
        host_vars = _vars(hostvars, host)
        facts = _facts(host_vars)
        gathered = "default_ipv4" in facts or "default_ipv6" in facts
        if not gathered and not _ip(host_vars.get("ansible_host")):
            wanted.append(host)
    return wanted


def host_addresses(
    hostvars: Mapping[str, Any], hosts: Iterable[str], gathered: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    addresses: dict[str, list[str]] = {}
    missing: list[str] = []
    for host in hosts:
        found = _addresses(_vars(hostvars, host), (gathered or {}).get(host))
        if found:
            addresses[host] = found
        else:
            missing.append(host)
    return {"addresses": addresses, "missing": missing}


def host_address(hostvars: Mapping[str, Any], host: str) -> str:
    found = _addresses(_vars(hostvars, host))
    return found[0] if found else ""


def whitelist(
    addresses: Mapping[str, list[str]], networks: Iterable[str], local_networks: Iterable[str]
) -> list[str]:
    found: list[str] = []
    for address in [a for host in addresses.values() for a in host]:
        found.append(str(ipaddress.ip_network(address)))
    for network in [*networks, *local_networks]:
        found.append(str(ipaddress.ip_network(network, strict=False)))
    return list(dict.fromkeys(found))


def _queue(host_vars: Mapping[str, Any], server: str) -> dict[str, str]:
    kind = str(host_vars.get("gearman_server_queue_type", QUEUE_DEFAULTS["type"]))
    return {
        "type": kind,
        "db": str(host_vars.get(f"gearman_server_{kind}_db", QUEUE_DEFAULTS["db"])),
        "user": str(host_vars.get(f"gearman_server_{kind}_user", QUEUE_DEFAULTS["user"])),
        "host": str(host_vars.get(f"gearman_server_{kind}_host", "")),
        "delegate": str(host_vars.get("gearman_server_database_delegate_to", server)),
    }


def queue_db_clients(
    hostvars: Mapping[str, Any],
    servers: Iterable[str],
    db_host: str,
    gathered: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The job servers of ``servers`` with a mysql or postgres queue on ``db_host``: those
    whose database tasks run there, or whose queue host is its name or its IP. ``gathered``
    as for host_addresses."""
    db_names = {db_host, _ip(_vars(hostvars, db_host).get("ansible_host"))} - {""}
    clients = []
    for server in servers:
        host_vars = _vars(hostvars, server)
        queue = _queue(host_vars, server)
        if queue["type"] not in ("mysql", "postgres"):
            continue
        if queue["delegate"] not in db_names and queue["host"] not in db_names:
            continue
        clients.append(
            {
                "host": server,
                "addresses": _addresses(host_vars, (gathered or {}).get(server)),
                "type": queue["type"],
                "db": queue["db"],
                "user": queue["user"],
            }
        )
    return clients


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gearman_server_members": members,
            "gearman_server_hosts_without_facts": hosts_without_facts,
            "gearman_server_host_addresses": host_addresses,
            "gearman_server_host_address": host_address,
            "gearman_server_whitelist": whitelist,
            "gearman_server_queue_db_clients": queue_db_clients,
        }
