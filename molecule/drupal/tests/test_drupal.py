"""Islandora Job's producer side (PHP's gearman extension) against gearjob workers that
run a Drupal site's jobs through drush, configured by the role's Drupal variables only."""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import uuid
from pathlib import Path
from typing import Any

from gearjob_workers import recap_changed, run_playbook, wait_until, worker_pids

testinfra_hosts = ["ansible://drupal_producers"]

STATE = "/var/lib/drupal-standin"
REDEPLOY = Path(__file__).resolve().parents[1] / "redeploy-workers.yml"


def worker(group: Any) -> Any:
    return group("gearjob_workers")[0]


def produce(host: Any, group: Any, *args: str) -> dict[str, Any]:
    server = worker(group).backend.get_hostname()
    quoted = " ".join(shlex.quote(a) for a in args)
    cmd = host.run(f"php /root/producer.php {server} 4730 {quoted}")
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    result: dict[str, Any] = json.loads(cmd.stdout)
    return result


def test_worker_config_comes_from_the_drupal_variables(group: Any) -> None:
    config = worker(group).file("/etc/gearjob/worker.toml").content_string
    assert '[commands."drupal"]' in config
    assert (
        'exec = "/usr/local/bin/drush --root=/var/www/drupal -u 1 islandora-job-router"'
        in config
    )
    # every sites/*/settings.php, as gearman-init finds them
    assert "islandora-job-list-functions --uri=default" in config
    assert "islandora-job-list-functions --uri=second" in config
    unit = worker(group).run("systemctl show --property User --value gearjob-worker@1")
    assert unit.stdout.strip() == "www-data"


def test_jobs_lists_the_drupal_functions_and_their_origin(group: Any) -> None:
    cmd = worker(group).run(
        "runuser -u www-data -g gearjob -- /opt/gearjob/bin/gearjob jobs --json"
        " --config /etc/gearjob/worker.toml"
    )
    assert cmd.rc == 0, cmd.stderr
    rows = {row["name"]: row for row in json.loads(cmd.stdout)["jobs"]}
    assert {"test_basic_hello", "test_basic_fail", "test_basic_slow"} <= set(rows)
    assert rows["test_basic_hello"]["origin"].endswith(
        "[commands.drupal] functions_from"
    )


def test_islandora_job_submit_background_and_batch(host: Any, group: Any) -> None:
    marker = f"m-{uuid.uuid4().hex[:8]}"
    out = produce(host, group, "basic", marker)
    # islandora_job_submit: the function's return value
    assert out["hello"] == {"result": "Hello D\u00e4nny \u2603 a/b", "ok": True}
    # a job that throws: drush exits non-zero, the job fails, the result is empty (FALSE)
    assert out["fail"]["ok"] is False and not out["fail"]["result"]
    # islandora_job_submit_background: a handle, and the job's side effect appears
    assert out["background"].startswith("H:")
    touched = f"{STATE}/touched/{marker}"
    wait_until("the background job's file", lambda: worker(group).file(touched).exists)
    # islandora_job_submit_batch: runTasks() is TRUE once every task ended; exactly the
    # good tasks completed (the failed task's completion callback never fires)
    assert out["batch"] is True
    assert out["completed"] == sorted(f"Hello {marker}-{i}" for i in range(5))


def test_payload_reaches_the_router_byte_for_byte(host: Any, group: Any) -> None:
    out = produce(host, group, "call", "test_basic_hello", 'a/b \u00e9 "q" \\ \u2603')
    assert out["call"]["ok"] is True
    payload = base64.b64decode(out["sent"][0])
    assert b"\\/" in payload and b"\\u00e9" in payload  # json_encode's escapes, kept
    done = f"{STATE}/done/{hashlib.md5(payload).hexdigest()}"
    recorded = worker(group).run(f"base64 -w0 {done}")
    assert recorded.rc == 0, f"no status row for the exact payload {payload!r}"
    assert base64.b64decode(recorded.stdout) == payload
    # the router removed its status row: it matched the payload exactly
    status = f"{STATE}/status/{hashlib.md5(payload).hexdigest()}"
    assert not worker(group).file(status).exists


def test_enabling_a_module_serves_its_function_after_a_reload_with_no_job_lost(
    host: Any, group: Any
) -> None:
    drupal = worker(group)
    pids = worker_pids(drupal)
    marker = f"s-{uuid.uuid4().hex[:8]}"
    count = 20
    out = produce(host, group, "slow", "8", marker, str(count))
    assert out["slow"].startswith("H:") and all(
        h.startswith("H:") for h in out["handles"]
    )
    started = f"{STATE}/started/{marker}"
    wait_until("the slow job to start", lambda: drupal.file(started).exists)
    drupal.run(f'echo \'["test_basic", "test_extra"]\' > {STATE}/enabled.json')
    # what `systemctl reload gearjob-workers` does, instance by instance, as the role does
    assert drupal.run("systemctl reload gearjob-worker@1 gearjob-worker@2").rc == 0

    def reversed_ok() -> bool:
        call = produce(host, group, "call", "test_extra_reverse", "abc")["call"]
        return bool(call == {"result": "cba", "ok": True})

    wait_until("test_extra_reverse to be served", reversed_ok)
    names = [marker] + [f"{marker}-{i}" for i in range(count)]
    wait_until(
        "every background job's file (none lost)",
        lambda: all(drupal.file(f"{STATE}/touched/{n}").exists for n in names),
        limit=90,
    )
    assert worker_pids(drupal) == pids, "the workers were restarted, not reloaded"
    log = drupal.run("journalctl --unit 'gearjob-worker@*' --no-pager").stdout
    assert "added: test_extra_reverse" in log


def reloads(host: Any) -> int:
    journal = host.run("journalctl --unit 'gearjob-worker@*' --no-pager").stdout
    return journal.count("SIGHUP: reloading")


def test_redeploy_after_the_change_reloads_and_then_touches_nothing(group: Any) -> None:
    drupal = worker(group)
    pids = worker_pids(drupal)
    before = reloads(drupal)
    result = run_playbook(REDEPLOY)  # the function list changed since the converge
    assert sum(recap_changed(result.stdout).values()) > 0, result.stdout[-3000:]
    wait_until("the role's reloads", lambda: reloads(drupal) >= before + len(pids))
    assert worker_pids(drupal) == pids, (
        "the role restarted the workers instead of reloading"
    )
    listed = drupal.file("/etc/gearjob/drupal-functions.list").content_string
    assert "test_extra_reverse" in listed
    before = reloads(drupal)
    result = run_playbook(REDEPLOY)
    assert sum(recap_changed(result.stdout).values()) == 0, result.stdout[-3000:]
    assert worker_pids(drupal) == pids
    assert reloads(drupal) == before
