"""gearjob's alert rules in a real Prometheus (the Debian package, set up by prepare.yml
and given the rules by the gearjob_metrics role, every `for:` 10 s): with the workers
stopped and jobs queued, GearjobJobsWaitingWithoutWorker goes pending, then firing; with
the workers started again the jobs run and the alert resolves. The workers keep their
counters for node_exporter's textfile collector."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from gearjob_ops import submit_background
from gearjob_workers import all_running, instances, wait_until

testinfra_hosts = ["ansible://gearman_servers"]

PROMETHEUS = "http://127.0.0.1:9090"
ALERT = "GearjobJobsWaitingWithoutWorker"
FUNCTION = "my_module_hello_world"


def api(host: Any, path: str, **params: str) -> Any:
    """GET PROMETHEUS + path on the host; the "data" of a successful answer."""
    code = (
        "import json, sys, urllib.parse, urllib.request\n"
        "url = sys.argv[1] + '?' + urllib.parse.urlencode(json.loads(sys.argv[2]))\n"
        "print(urllib.request.urlopen(url, timeout=10).read().decode())\n"
    )
    out = host.check_output(
        f"python3 -c {shlex.quote(code)} {PROMETHEUS}{path} {shlex.quote(json.dumps(params))}"
    )
    body = json.loads(out)
    assert body["status"] == "success", body
    return body["data"]


def alert_states(host: Any) -> set[str]:
    """The states of ALERT for FUNCTION: {"pending"}, {"firing"} or set()."""
    return {
        alert["state"]
        for alert in api(host, "/api/v1/alerts")["alerts"]
        if alert["labels"].get("alertname") == ALERT and alert["labels"].get("function") == FUNCTION
    }


def test_rules_are_installed_with_the_short_durations(host: Any) -> None:
    rules = host.file("/etc/prometheus/rules.d/gearjob.rules.yml")
    assert rules.exists and rules.user == "root" and rules.mode == 0o644
    groups = api(host, "/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert loaded[ALERT]["duration"] == 10
    assert loaded[ALERT]["health"] == "ok"
    wait_until(
        "Prometheus scraping the exporter",
        lambda: api(host, "/api/v1/query", query='up{job="gearjob"} == 1')["result"],
    )


def test_no_worker_alert_goes_pending_then_firing_and_resolves(host: Any) -> None:
    host.check_output("systemctl stop gearjob-workers.target")
    try:
        submit_background(host, FUNCTION, ["alert-1", "alert-2", "alert-3"])
        wait_until("the alert pending", lambda: alert_states(host) == {"pending"}, 30)
        wait_until("the alert firing", lambda: alert_states(host) == {"firing"}, 60)
        waiting = api(host, "/api/v1/query", query=f'gearjob_jobs_waiting{{function="{FUNCTION}"}}')
        assert [float(r["value"][1]) for r in waiting["result"]] == [3.0]
    finally:
        host.check_output("systemctl start gearjob-workers.target")
    wait_until("every worker running again", lambda: all_running(host))
    wait_until("the alert resolved", lambda: not alert_states(host), 60)
    drained = f'gearjob_jobs_queued{{function="{FUNCTION}"}} == 0'
    wait_until("the jobs run", lambda: api(host, "/api/v1/query", query=drained)["result"])


def counters(host: Any) -> str:
    return str(host.check_output("cat /var/lib/gearjob/metrics/gearjob-worker@*.prom"))


def failures(host: Any, function: str) -> int:
    pattern = rf'^gearjob_worker_jobs_failed_total\{{worker="[^"]+",function="{function}"\}} (\d+)$'
    return sum(int(n) for n in re.findall(pattern, counters(host), re.MULTILINE))


def test_workers_keep_their_counters_for_node_exporter(host: Any) -> None:
    for instance in range(1, instances(host) + 1):
        found = host.file(f"/var/lib/gearjob/metrics/gearjob-worker@{instance}.prom")
        assert found.exists and found.user == "gearjob" and found.mode == 0o644, instance
        assert f'gearjob_worker_jobs_total{{worker="gearjob-worker@{instance}"}}' in found.content_string
    before = failures(host, "my_module_fail")
    assert host.run("/opt/gearjob/bin/gearjob submit my_module_fail").rc == 1
    wait_until("the failure counted", lambda: failures(host, "my_module_fail") == before + 1, 10)
