"""Operations on a job server with a SQLite queue, provisioned by site.yml: the metrics
exporter, ansible/queue-status.yml and ansible/clear-queue.yml."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from typing import Any

from gearjob_ops import (
    GEARJOB,
    METRICS_UNIT,
    QUEUE_CONFIG,
    changed_per_host,
    metric,
    playbook,
    row,
    scrape,
    shown,
    submit_background,
    unit_properties,
)
from gearjob_testinfra import status, wait_until

testinfra_hosts = ["ansible://gearman_servers"]

SERVER = "127.0.0.1:4730"
SCRATCH = "/root/gearjob-ops"


def rows(host: Any, gearman_vars: dict[str, Any]) -> dict[str, int]:
    """Rows per function in the SQLite queue table."""
    code = (
        "import json, sqlite3, sys\n"
        "db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n"
        "query = 'SELECT function_name, COUNT(*) FROM ' + sys.argv[2] + ' GROUP BY function_name'\n"
        "print(json.dumps(dict(db.execute(query).fetchall())))\n"
    )
    path = gearman_vars["gearman_server_sqlite_path"]
    table = gearman_vars["gearman_server_sqlite_table"]
    out = host.check_output(f"python3 -c {shlex.quote(code)} {path} {table}")
    return {str(k): int(v) for k, v in json.loads(out).items()}


def test_metrics_exporter_is_hardened_and_reads_the_queue_as_gearman(host: Any) -> None:
    assert host.service(METRICS_UNIT).is_running
    assert host.service(METRICS_UNIT).is_enabled
    values = unit_properties(
        host,
        METRICS_UNIT,
        "DynamicUser",
        "SupplementaryGroups",
        "Restart",
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "CapabilityBoundingSet",
        "ExecStart",
    )
    assert values["DynamicUser"] == "yes"
    assert values["SupplementaryGroups"] == "gearman"
    assert values["Restart"] == "on-failure"
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "strict"
    assert values["ProtectHome"] == "yes"
    assert values["PrivateTmp"] == "yes"
    assert values["CapabilityBoundingSet"] == ""
    assert f"--queue-config {QUEUE_CONFIG}" in values["ExecStart"]
    assert host.socket("tcp://127.0.0.1:9731").is_listening
    unit = host.file("/etc/systemd/system/gearjob-metrics.service")
    assert (unit.user, unit.mode) == ("root", 0o644)
    assert "Ansible managed" in unit.content_string
    # site.yml put gearjob on the job server.
    assert host.file("/usr/local/bin/gearjob").linked_to == GEARJOB


def test_nothing_to_clear_is_refused_before_any_change(host: Any) -> None:
    before = int(host.check_output("systemctl show --property MainPID --value gearman-job-server"))
    result = playbook("clear-queue.yml")
    assert result.returncode != 0, shown(result)
    assert "Nothing to clear was given: -e function=NAME" in result.stderr, shown(result)
    both = playbook("clear-queue.yml", "-e", "function=x", "-e", "all=true")
    assert both.returncode != 0, shown(both)
    assert "Give either function or all, not both" in both.stderr, shown(both)
    after = int(host.check_output("systemctl show --property MainPID --value gearman-job-server"))
    assert after == before


def test_flood_is_shown_exported_and_cleared_other_functions_still_run(
    host: Any, gearman_vars: dict[str, Any]
) -> None:
    tag = uuid.uuid4().hex[:8]
    flood, other = f"ops_flood_{tag}", f"ops_other_{tag}"
    flood_jobs, other_jobs = 120, 15
    output = f"{SCRATCH}/{tag}.jsonl"
    unit = f"gearjob-ops-worker-{tag}"

    # No worker for either function: every job stays queued, in gearmand and the table.
    submit_background(host, flood, [f"flood-{i}" for i in range(flood_jobs)])
    submit_background(host, other, [f"other-{i}" for i in range(other_jobs)])
    assert status(host, flood, 4730) == (flood_jobs, 0, 0)
    assert rows(host, gearman_vars)[flood] == flood_jobs

    # The exporter sees the flood in gearmand and in the table.
    page = scrape(host)
    assert metric(page, "gearjob_server_up", server=SERVER) == 1
    assert metric(page, "gearjob_jobs_queued", server=SERVER, function=flood) == flood_jobs
    assert metric(page, "gearjob_jobs_waiting", server=SERVER, function=flood) == flood_jobs
    assert metric(page, "gearjob_persistent_queue_up", server=SERVER, type="sqlite") == 1
    assert (
        metric(page, "gearjob_persistent_queue_rows", server=SERVER, type="sqlite", function=flood)
        == flood_jobs
    )

    # queue-status.yml shows the counts in gearmand (QUEUED RUNNING WORKERS WAITING) and the rows.
    result = playbook("queue-status.yml")
    assert result.returncode == 0, shown(result)
    out = result.stdout
    assert re.search(row(SERVER, flood, flood_jobs, 0, 0, flood_jobs), out), shown(result)
    assert re.search(row(SERVER, other, other_jobs, 0, 0, other_jobs), out), shown(result)
    assert re.search("- " + row(flood, flood_jobs), out), shown(result)  # its ROWS line
    assert "(sqlite " in result.stdout, shown(result)
    assert set(changed_per_host(result.stdout).values()) == {0}, shown(result)

    # clear-queue.yml drops the flood only (gearmand is restarted around the delete).
    before = int(host.check_output("systemctl show --property MainPID --value gearman-job-server"))
    result = playbook("clear-queue.yml", "-e", f"function={flood}")
    assert result.returncode == 0, shown(result)
    assert f"deleted {flood_jobs} job(s)" in result.stdout, shown(result)
    assert set(changed_per_host(result.stdout).values()) == {1}, shown(result)
    after = int(host.check_output("systemctl show --property MainPID --value gearman-job-server"))
    assert after not in (0, before)
    assert status(host, flood, 4730) in (None, (0, 0, 0))
    assert status(host, other, 4730) == (other_jobs, 0, 0)
    left = rows(host, gearman_vars)
    assert flood not in left and left[other] == other_jobs

    # A second run finds nothing to delete and leaves gearmand alone.
    again = playbook("clear-queue.yml", "-e", f"function={flood}")
    assert again.returncode == 0, shown(again)
    assert "no rows to delete" in again.stdout, shown(again)
    assert set(changed_per_host(again.stdout).values()) == {0}, shown(again)

    # One new job of the cleared function, then a worker for both: it runs the new job and
    # every job of the other function, and not one of the cleared jobs.
    submit_background(host, flood, ["after-clear"])
    code = (
        "import json\n"
        "def record(kind, value):\n"
        f"    with open({output!r}, 'a', encoding='utf-8') as out:\n"
        "        out.write(json.dumps([kind, value]) + '\\n')\n"
        "def flood(value):\n    record('flood', value)\n"
        "def other(value):\n    record('other', value)\n"
    )
    module = f"{SCRATCH}/ops_jobs_{tag}.py"
    host.check_output(f"mkdir -p {SCRATCH} && printf %s {shlex.quote(code)} > {module}")
    worker = (
        f"PYTHONPATH={SCRATCH} exec {GEARJOB} worker --server {SERVER} "
        f"--job {flood}=ops_jobs_{tag}:flood --job {other}=ops_jobs_{tag}:other"
    )
    try:
        host.check_output(
            f"systemd-run --quiet --unit {unit} --property Type=exec "
            f"/bin/sh -c {shlex.quote(worker)}"
        )

        def ran() -> list[list[str]]:
            text = host.run(f"cat {output} 2>/dev/null").stdout
            return [json.loads(line) for line in text.splitlines() if line.strip()]

        wait_until(
            f"the worker to run {other_jobs + 1} jobs",
            lambda: (
                len(ran()) >= other_jobs + 1
                and (status(host, other, 4730) or (0, 0, 0))[0] == 0
                and (status(host, flood, 4730) or (0, 0, 0))[0] == 0
            ),
        )
    finally:
        host.run(f"systemctl stop {unit}; systemctl reset-failed {unit}")
    done = ran()
    host.run(f"rm -f {output} {module}")
    assert sorted(v for k, v in done if k == "other") == sorted(
        f"other-{i}" for i in range(other_jobs)
    )
    assert [v for k, v in done if k == "flood"] == ["after-clear"]
    assert rows(host, gearman_vars).get(other, 0) == 0
