"""Bad firewall and TLS variables fail in the preflight, with a message naming the variable
and the value, before the role changes anything on the job server."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

testinfra_hosts = ["ansible://gearman_servers"]

# (text the message must contain, the bad variables); the scenario has gearman_server_tls on.
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "'10.0.0.5/24' has host bits set: write 10.0.0.0/24",
        {"gearman_server_allowed_networks": ["10.0.0.0/8", "10.0.0.5/24"]},
    ),
    (
        "'10.0.0.0/33' is not an IP network",
        {"gearman_server_allowed_networks": ["10.0.0.0/33", "2001:db8::/32"]},
    ),
    (
        "'gearman.example' is not an IP network",
        {"gearman_server_allowed_networks": ["gearman.example"]},
    ),
    ("admits no host besides this one", {"gearman_server_allowed_groups": []}),
    (
        "has no address for gearjob-secure-ghost",
        {"gearman_server_allowed_groups": ["gearjob_clients", "ghosts"]},
    ),
    ("gearman_server_firewall", {"gearman_server_firewall": "sometimes"}),
    ("gearman_server_tls_port is 4730", {"gearman_server_tls_port": 4730}),
    ("gearman_server_tls_listen", {"gearman_server_tls_listen": ["0.0.0.0", "127.0.0.1"]}),
    ("gearman_server_tls_listen", {"gearman_server_tls_listen": ["localhost"]}),
    ("gearman_server_tls_allow_plain", {"gearman_server_listen": ["0.0.0.0"]}),
    (
        "stunnel forwards to gearmand on loopback",
        {"gearman_server_listen": ["10.0.0.9"], "gearman_server_tls_allow_plain": True},
    ),
]


def playbook(results: Path) -> list[dict[str, Any]]:
    record = (
        "{{ access_results | default({}) | combine({'%d': {'task': ansible_failed_task.name, "
        "'msg': ansible_failed_result.msg | default('')}}) }}"
    )
    # A member host that cannot be reached and whose ansible_host is a name: the preflight
    # cannot gather its facts, finds no address for it, and names it.
    ghost = {
        "name": "gearjob-secure-ghost",
        "groups": "ghosts",
        "ansible_connection": "community.docker.docker",
        "ansible_host": "gearjob-secure-ghost.invalid",
    }
    plays: list[dict[str, Any]] = [
        {
            "name": "A host without an address",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "Add it", "ansible.builtin.add_host": ghost}],
        },
        # The job server's own facts; the preflight gathers the members' itself.
        {"name": "Facts", "hosts": "gearman_servers", "gather_facts": True},
    ]
    plays += [
        {
            "name": f"Case {index}",
            "hosts": "gearman_servers",
            "gather_facts": False,
            "vars": variables,
            "tasks": [
                {
                    "name": "Apply the role with bad variables",
                    "block": [{"ansible.builtin.include_role": {"name": "gearman_server"}}],
                    "rescue": [
                        {
                            "name": "Record the failure",
                            "ansible.builtin.set_fact": {"access_results": record % index},
                        }
                    ],
                }
            ],
        }
        for index, (_, variables) in enumerate(CASES)
    ]
    plays.append(
        {
            "name": "Save the results",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Write them on the controller",
                    "ansible.builtin.copy": {
                        "content": "{{ hostvars[groups['gearman_servers'][0]]['access_results']"
                        " | default({}) | to_json }}",
                        "dest": str(results),
                        "mode": "0600",
                    },
                }
            ],
        }
    )
    return plays


def state(host: Any) -> str:
    """What the firewall and TLS steps write, and the processes they run."""
    return host.check_output(
        "stat -c '%n %s %Y %a' /etc/gearman-job-server/firewall.nft /etc/gearman-tls/* "
        "/etc/systemd/system/gearjob-firewall.service /etc/systemd/system/gearman-tls.service; "
        "systemctl show --property MainPID --value gearman-tls gearman-job-server; "
        "nft list table inet gearjob"
    )


def test_bad_access_variables_fail_in_preflight_before_any_change(
    host: Any, tmp_path: Path
) -> None:
    before = state(host)
    book = tmp_path / "preflight-access.yml"
    results = tmp_path / "results.json"
    book.write_text(yaml.safe_dump(playbook(results), sort_keys=False))
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(book)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    found = json.loads(results.read_text())
    name = re.escape(host.backend.host)
    recap = re.search(
        rf"^{name}\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0\s+skipped=\d+\s+rescued=(\d+)",
        run.stdout,
        re.MULTILINE,
    )
    assert recap, run.stdout[-2000:]
    assert recap.group(1) == "0", "the role changed the host although its variables were bad"
    assert int(recap.group(2)) == len(CASES)
    for index, (expected, variables) in enumerate(CASES):
        result = found.get(str(index))
        assert result is not None, f"case {index} ({variables}) did not fail"
        assert expected in " ".join(result["msg"].split()), (variables, result)
        assert result["task"].startswith(("Preflight |", "Validating arguments")), (
            variables,
            result,
        )
    assert state(host) == before
