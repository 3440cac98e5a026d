"""Bad role variables fail in the preflight, with a message naming the variable,
before the role changes anything on the host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from gearjob_testinfra import main_pid

testinfra_hosts = ["ansible://gearman_servers"]

# (variable named in the message, the bad variables)
CASES: list[tuple[str, dict[str, Any]]] = [
    ("gearman_server_listen", {"gearman_server_listen": ["localhost"]}),
    ("gearman_server_listen", {"gearman_server_listen": ["0.0.0.0", "127.0.0.1"]}),
    ("gearman_server_listen", {"gearman_server_listen": ["gearman.example"]}),
    ("gearman_server_port", {"gearman_server_port": 70000}),
    ("gearman_server_job_retries", {"gearman_server_job_retries": -1}),
    ("gearman_server_threads", {"gearman_server_threads": "many"}),
    ("gearman_server_queue_type", {"gearman_server_queue_type": "redis"}),
    ("gearman_server_mysql_password", {"gearman_server_queue_type": "mysql"}),
    (
        "gearman_server_mysql_table",
        {
            "gearman_server_queue_type": "mysql",
            "gearman_server_mysql_password": "x",
            "gearman_server_mysql_table": "queue; DROP TABLE x",
        },
    ),
    ("gearman_server_postgres_password", {"gearman_server_queue_type": "postgres"}),
    ("gearman_server_sqlite_path", {"gearman_server_queue_type": "sqlite", "gearman_server_sqlite_path": "/tmp/q.db"}),
    ("gearman_server_extra_params", {"gearman_server_extra_params": ["--mysql-password=secret"]}),
]

WATCHED = [
    "/etc/default/gearman-job-server",
    "/etc/systemd/system/gearman-job-server.service",
    "/etc/gearman-job-server",
]


def playbook(results: str) -> list[dict[str, Any]]:
    plays = []
    for index, (_, variables) in enumerate(CASES):
        plays.append(
            {
                "name": f"Case {index}",
                "hosts": "gearman_servers",
                "gather_facts": True,
                "vars": variables,
                "tasks": [
                    {
                        "name": "Apply the role with bad variables",
                        "block": [{"ansible.builtin.include_role": {"name": "gearjob.ops.gearman_server"}}],
                        "rescue": [
                            {
                                "name": "Record the failure",
                                "ansible.builtin.set_fact": {
                                    "preflight_results": (
                                        "{{ preflight_results | default({}) | combine({'%d': "
                                        "{'task': ansible_failed_task.name, "
                                        "'msg': ([ansible_failed_result.msg | default('')] + (ansible_failed_result.results "
                                        "| default([]) | map(attribute='msg', default='') | list)) | join(' ')}}) }}" % index
                                    )
                                },
                            }
                        ],
                    }
                ],
            }
        )
    plays.append(
        {
            "name": "Save the results",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Write them on the controller",
                    "ansible.builtin.copy": {
                        "content": "{{ hostvars[groups['gearman_servers'][0]]['preflight_results'] | default({}) | to_json }}",
                        "dest": results,
                        "mode": "0600",
                    },
                }
            ],
        }
    )
    return plays


def snapshot(host: Any) -> str:
    return host.check_output(
        "find " + " ".join(WATCHED) + " -exec stat -c '%n %s %Y %a %U' {} + | sort; "
        "sha256sum " + " ".join(WATCHED[:2])
    )


def test_bad_variables_fail_in_preflight_before_any_change(host: Any) -> None:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    before = snapshot(host)
    pid = main_pid(host)
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / "preflight.yml"
        results = Path(tmp) / "results.json"
        book.write_text(yaml.safe_dump(playbook(str(results)), sort_keys=False))
        run = subprocess.run(
            ["ansible-playbook", "-i", inventory, str(book)],
            capture_output=True, text=True, check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        found = json.loads(results.read_text())
    name = re.escape(host.backend.host)
    recap = re.search(rf"^{name}\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0\s+skipped=\d+\s+rescued=(\d+)",
                      run.stdout, re.MULTILINE)
    assert recap, run.stdout[-2000:]
    assert recap.group(1) == "0", "the role changed the host although its variables were bad"
    assert int(recap.group(2)) == len(CASES)
    for index, (variable, variables) in enumerate(CASES):
        result = found.get(str(index))
        assert result is not None, f"case {index} ({variables}) did not fail"
        assert variable in result["msg"], (variables, result)
        # Failed in the argument spec check or in the preflight, nowhere later.
        assert result["task"].startswith(("Preflight |", "Validating arguments")), (variables, result)
    assert snapshot(host) == before
    assert main_pid(host) == pid
