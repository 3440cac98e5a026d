"""The gearman_server role's filters for the firewall whitelist (pure logic)."""

from __future__ import annotations

import pytest
from filter_plugins import load_filter

networks = load_filter("gearman_server_networks")


def test_the_filters_are_registered() -> None:
    names = set(networks.FilterModule().filters())
    assert names == {
        "gearman_server_network_errors",
        "gearman_server_networks",
        "gearman_server_local_networks",
    }


def test_good_networks_have_no_errors() -> None:
    good = ["10.0.0.0/24", "10.0.0.7", "0.0.0.0/0", "2001:db8::/32", "::1"]
    assert networks.network_errors(good) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "10.0.0.5/24",
            (
                "'10.0.0.5/24' has host bits set: write 10.0.0.0/24 for the whole network "
                "or 10.0.0.5/32 for that one host"
            ),
        ),
        ("2001:db8::1/64", "write 2001:db8::/64 for the whole network or 2001:db8::1/128"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network or address"),
        ("10.0.0.256", "'10.0.0.256' is not an IP network or address"),
        ("gearman.example", "'gearman.example' is not an IP network or address"),
        (" 10.0.0.0/8", "has white space around it"),
        ("", "is empty"),
        (8, "8 is not a string"),
    ],
)
def test_bad_networks_are_named_with_the_fix(value: object, message: str) -> None:
    errors = networks.network_errors(["10.0.0.0/8", value])
    assert len(errors) == 1
    assert message in errors[0]


def test_a_non_list_is_an_error() -> None:
    assert networks.network_errors("10.0.0.0/8") == ["'10.0.0.0/8' is not a list of networks"]


def test_networks_are_split_by_family_and_normalised() -> None:
    values = ["10.0.0.0/24", "10.0.0.7", "2001:db8::/32", "::1", "10.0.0.7/32"]
    assert networks.networks(values, 4) == ["10.0.0.0/24", "10.0.0.7/32"]
    assert networks.networks(values, "6") == ["2001:db8::/32", "::1/128"]


def test_local_networks_come_from_the_interfaces_facts() -> None:
    facts = {
        "interfaces": ["lo", "eth0", "br-1"],
        "lo": {"ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0"}},
        "eth0": {
            "ipv4": {"address": "172.18.0.3", "netmask": "255.255.0.0"},
            "ipv4_secondaries": [{"address": "192.168.5.9", "netmask": "255.255.255.0"}],
            "ipv6": [
                {"address": "fe80::1", "prefix": "64", "scope": "link"},
                {"address": "2001:db8::5", "prefix": "64", "scope": "global"},
            ],
        },
        "br_1": {"ipv4": {"address": "169.254.3.4", "netmask": "255.255.0.0"}},
    }
    assert networks.local_networks(facts) == ["172.18.0.0/16", "192.168.5.0/24", "2001:db8::/64"]
    assert networks.local_networks({}) == []
