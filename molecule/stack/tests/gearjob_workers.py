"""Helpers for the testinfra tests of the gearjob workers (stack and cluster scenarios)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDS = "/var/lib/gearjob/my_module.jsonl"
#: Where the tests keep files on the hosts (root only).
SCRATCH = "/root/gearjob-tests"
UNIT = "gearjob-worker@{}.service"


def wait_until(what: str, check: Callable[[], Any], limit: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {limit:.0f} s")
        time.sleep(0.3)


def instances(host: Any) -> int:
    return int(host.ansible.get_variables()["gearjob_worker_instances"])


def worker_pids(host: Any, count: int | None = None) -> dict[int, int]:
    """MainPID of gearjob-worker@1..N (0 for an instance that is not running)."""
    count = instances(host) if count is None else count
    units = " ".join(UNIT.format(i) for i in range(1, count + 1))
    out = host.check_output(f"systemctl show --property MainPID --value {units}")
    values = [int(line) for line in out.split()]
    return dict(zip(range(1, count + 1), values, strict=True))


def all_running(host: Any, count: int | None = None) -> dict[int, int] | None:
    """The PIDs when every instance is active with a process, else None."""
    count = instances(host) if count is None else count
    units = " ".join(UNIT.format(i) for i in range(1, count + 1))
    if host.run(f"systemctl is-active --quiet {units}").rc != 0:
        return None
    pids = worker_pids(host, count)
    return pids if all(pids.values()) else None


def workers_on(host: Any, server: str | None = None, function: str = "my_module_slow") -> int:
    """How many workers a job server lists for ``function`` (`gearjob status`, run on
    ``host``; the client configuration's servers added up when ``server`` is None)."""
    option = f" --server {server}" if server else ""
    cmd = host.run(f"gearjob status --json{option}")
    total = 0
    for report in json.loads(cmd.stdout)["servers"]:
        for entry in report.get("functions", []):
            if entry["function"] == function:
                total += int(entry["workers"])
    return total


def wait_registered(host: Any, count: int, server: str | None = None) -> None:
    """Wait until ``count`` workers are registered; after a job server restarts (the shared
    server tests kill it) the workers reconnect by themselves, with a back-off."""
    wait_until(
        f"{count} workers registered with {server or 'the job servers'}",
        lambda: workers_on(host, server) == count,
        limit=60,
    )


def records(host: Any, tag: str | None = None) -> list[dict[str, Any]]:
    """Lines of the example jobs' record file (only those for ``tag`` when given)."""
    text = host.run(f"cat {RECORDS} 2>/dev/null").stdout
    found = [json.loads(line) for line in text.splitlines() if line.strip()]
    if tag is None:
        return found
    return [r for r in found if r.get("tag") == tag or r.get("value") == tag]


def write_jobs(host: Any, name: str, jobs: list[dict[str, Any]]) -> str:
    """Write a JSON-lines batch file on the host; return its path."""
    path = f"{SCRATCH}/{name}.jsonl"
    lines = "\n".join(json.dumps(j) for j in jobs) + "\n"
    host.check_output(f"mkdir -p {SCRATCH} && printf %s {shlex.quote(lines)} > {path}")
    return path


def batch_results(output: str) -> list[dict[str, Any]]:
    """The per-job JSON lines printed by `gearjob batch`."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Background:
    """A command run on the host in a transient systemd unit; its output and exit code
    are kept in /var/tmp/<name>.out and .rc."""

    def __init__(self, host: Any, name: str, command: str) -> None:
        self.host = host
        self.name = name
        self.out = f"{SCRATCH}/{name}.out"
        self.rc_file = f"{SCRATCH}/{name}.rc"
        script = f"{command} > {self.out} 2>&1; echo $? > {self.rc_file}"
        host.check_output(f"mkdir -p {SCRATCH}")
        host.check_output(
            f"systemd-run --quiet --unit {name} --property Type=exec "
            f"/bin/sh -c {shlex.quote(script)}"
        )

    def wait(self, limit: float = 120.0) -> tuple[int, str]:
        def finished() -> bool:
            return self.host.file(self.rc_file).exists and bool(
                self.host.file(self.rc_file).content_string.strip()
            )

        wait_until(f"the command of {self.name} to finish", finished, limit)
        rc = int(self.host.file(self.rc_file).content_string.strip())
        return rc, self.host.file(self.out).content_string

    def cleanup(self) -> None:
        self.host.run(f"systemctl stop {self.name}; systemctl reset-failed {self.name}")
        self.host.run(f"rm -f {self.out} {self.rc_file}")


def run_playbook(
    playbook: Path, *extra: str, limit: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a playbook against the scenario's inventory, as Molecule would."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "--inventory",
        str(inventory),
        str(playbook),
        *extra,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=limit, env=os.environ, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
        )
    return result


def recap_changed(output: str) -> dict[str, int]:
    """changed=N per host from a PLAY RECAP."""
    found = {}
    for line in output.splitlines():
        if " changed=" in line and " ok=" in line:
            name = line.split()[0]
            found[name] = int(line.split(" changed=")[1].split()[0])
    return found
