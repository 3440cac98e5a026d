"""Helpers for the tests of the operator playbooks and the metrics exporter (test_ops.py of
the sqlite and stack scenarios): run a playbook of ansible/ against the scenario's
inventory, queue background jobs, scrape the exporter."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "ansible"
GEARJOB = "/opt/gearjob/bin/gearjob"
PYTHON = "/opt/gearjob/bin/python"
QUEUE_CONFIG = "/etc/gearjob/queue.toml"
METRICS_UNIT = "gearjob-metrics.service"
METRICS_URL = "http://127.0.0.1:9731/metrics"


def playbook(name: str, *extra: str, limit: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ansible/NAME with the scenario's inventory, as an operator would; never raises on
    the playbook's exit code (the tests assert it)."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "--inventory",
        str(inventory),
        str(PLAYBOOKS / name),
        *extra,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=limit, env=os.environ, check=False
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    """The end of a playbook run, for assertion messages."""
    return f"exit {result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}"


def changed_per_host(output: str) -> dict[str, int]:
    """changed=N per host from the PLAY RECAP."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def submit_background(host: Any, function: str, values: list[str]) -> None:
    """Queue one background job per value, through the gearjob library on the host."""
    code = (
        "import json, sys\n"
        "from gearjob import Client\n"
        "with Client(['127.0.0.1:4730']) as client:\n"
        "    for value in json.loads(sys.argv[2]):\n"
        "        client.submit_background(sys.argv[1], value)\n"
    )
    host.check_output(
        f"{PYTHON} -c {shlex.quote(code)} {shlex.quote(function)} {shlex.quote(json.dumps(values))}"
    )


def scrape(host: Any, url: str = METRICS_URL) -> str:
    """The exporter's page, fetched from inside the host."""
    code = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=15).read().decode())\n"
    )
    cmd = host.run(f"python3 -c {shlex.quote(code)} {shlex.quote(url)}")
    if cmd.rc != 0:
        journal = host.run(f"journalctl --unit {METRICS_UNIT} --lines 30 --no-pager").stdout
        raise AssertionError(f"cannot fetch {url}: {cmd.stderr}\n{journal}")
    return str(cmd.stdout)


def metric(page: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, None if absent."""
    for line in page.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def read_toml(host: Any, path: str) -> dict[str, Any]:
    """A TOML file of the host, parsed there (Python 3.11's tomllib)."""
    code = "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))"
    return dict(json.loads(host.check_output(f"python3 -c {shlex.quote(code)} {path}")))


def unit_properties(host: Any, unit: str, *names: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show --property {','.join(names)} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines())


def row(*cells: object) -> str:
    """A regular expression for one row of a `gearjob status` table, its cells in order."""
    return r"\s+".join(re.escape(str(cell)) for cell in cells) + r"(?:\s|$)"
