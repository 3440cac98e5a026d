"""Filters of the gearman_server role for the firewall's allowed networks.

- ``networks | gearman_server_network_errors``: a message for each entry that is not an IP
  network (``10.0.0.0/24``, ``2001:db8::/32``) or a single address;
- ``networks | gearman_server_networks(4)``: the IPv4 (or 6) entries, normalised
  (a single address becomes ``/32`` or ``/128``);
- ``ansible_facts | gearman_server_local_networks``: the networks this host's interfaces
  are on (no loopback, no link-local addresses), the default whitelist.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse(value: Any) -> Network:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    text = value.strip()
    if text != value or not text:
        raise ValueError(f"{value!r} is empty or has white space around it")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP network or address: write address/prefix, "
                "for example 10.0.0.0/24, 10.0.0.7 or 2001:db8::/64"
            ) from None
        single = f"{text.partition('/')[0]}/{loose.max_prefixlen}"
        raise ValueError(
            f"{value!r} has host bits set: write {loose} for the whole network "
            f"or {single} for that one host"
        ) from None


def network_errors(values: Any) -> list[str]:
    if not isinstance(values, list):
        return [f"{values!r} is not a list of networks"]
    errors = []
    for value in values:
        try:
            _parse(value)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def networks(values: list[str], version: int) -> list[str]:
    found: list[str] = []
    for value in values:
        net = _parse(value)
        if net.version == int(version) and str(net) not in found:
            found.append(str(net))
    return found


def local_networks(facts: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name in facts.get("interfaces", []):
        iface = facts.get(name.replace("-", "_").replace(".", "_"), {})
        if not isinstance(iface, dict):
            continue
        entries = [iface.get("ipv4") or {}, *(iface.get("ipv4_secondaries") or [])]
        for entry in entries:
            if entry.get("address") and entry.get("netmask"):
                net = ipaddress.ip_interface(f"{entry['address']}/{entry['netmask']}").network
                if not net.is_loopback and not net.is_link_local and str(net) not in found:
                    found.append(str(net))
        for entry in iface.get("ipv6") or []:
            if entry.get("address") and entry.get("prefix") and entry.get("scope") == "global":
                net = ipaddress.ip_interface(f"{entry['address']}/{entry['prefix']}").network
                if not net.is_loopback and str(net) not in found:
                    found.append(str(net))
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gearman_server_network_errors": network_errors,
            "gearman_server_networks": networks,
            "gearman_server_local_networks": local_networks,
        }
