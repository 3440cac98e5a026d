"""The monitoring content of roles/gearjob_metrics/files: the Prometheus rules pass
``promtool check rules`` and their unit tests, follow the monitoring-mixins conventions,
and every panel of the Grafana dashboard returns data from a real Prometheus scraping a
real exporter in front of a real gearmand."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port
from daemon_helpers import subprocess_env

from gearjob import Client, JobFailed

pytest_plugins = ["daemon_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "roles/gearjob_metrics/files"
RULES = FILES / "prometheus/gearjob.rules.yml"
RULE_TESTS = ROOT / "roles/gearjob_metrics/tests/prometheus/gearjob.rules.test.yml"
DASHBOARD = FILES / "grafana/gearjob-dashboard.json"
OPERATING = ROOT / "docs/operating.md"


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's prometheus (scripts/setup-python.sh)")
    return path


def promtool(*args: str, cwd: Path = ROOT) -> None:
    run = subprocess.run(
        [program("promtool"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool("check", "rules", str(RULES))
    promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


def test_every_alert_follows_the_conventions_and_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATING.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    assert len(alerts()) >= 6
    for alert in alerts():
        name = alert["alert"]
        assert re.fullmatch(r"Gearjob[A-Z][A-Za-z]+", name), name
        assert re.fullmatch(r"\d+[smh]", alert.get("for", "")), name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        notes = alert["annotations"]
        assert notes["summary"] and notes["description"], name
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page.endswith("/docs/operating.md") and anchor == name.lower(), name
        assert anchor in anchors, f"docs/operating.md has no heading for {name}"
        assert name in tested, f"{name} has no promtool unit test that expects it to fire"


def test_recording_rules_are_named_level_metric_operations() -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    for rule in (r for g in groups for r in g["rules"] if "record" in r):
        assert re.fullmatch(r"[a-z_]+:gearjob_[a-z_]+:[a-z0-9_]+", rule["record"]), rule


# --------------------------------------------------------------------------- dashboard


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(found) >= 10
    return found


def test_dashboard_has_datasource_and_instance_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "worker_instance"):
        assert variables[name]["includeAll"] and variables[name]["multi"], name
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                expr = target["expr"]
                assert re.search(r'instance=~"\$(worker_)?instance"', expr) or "ALERTS" in expr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait(self, expr: str, what: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(expr)
            except OSError:
                result = []
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"no result for {expr} ({what}) within {timeout:g} s")
            time.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    """prometheus({"job": "host:port", ...}) -> a real Prometheus scraping each target every
    second, with the rules."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, str]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [target]}]}
                        for job, target in targets.items()
                    ],
                }
            )
        )
        port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed with the process)
        argv = [
            program("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        log.close()
        server = Prometheus(f"http://127.0.0.1:{port}")
        for job in targets:
            server.wait(f'up{{job="{job}"}} == 1', f"Prometheus scrapes {job}")
        return server

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """node_exporter(directory) -> host:port of a real node_exporter serving the *.prom files
    of the directory (its textfile collector only)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(directory: Path) -> str:
        address = f"127.0.0.1:{free_port()}"
        argv = [
            program("prometheus-node-exporter"),
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={directory}",
            f"--web.listen-address={address}",
        ]
        log = open(tmp_path / "node-exporter.log", "wb")  # noqa: SIM115 (closed below)
        procs.append(subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        log.close()
        return address

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    gearmand_factory, raw_worker, start_worker, exporter, node_exporter, prometheus, tmp_path
):
    path = tmp_path / "queue.sqlite3"
    server = gearmand_factory("-q", "libsqlite3", f"--libsqlite3-db={path}")
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    metrics_file = textfiles / "gearjob-worker@1.prom"
    start_worker(server, env=subprocess_env(GEARJOB_METRICS_FILE=str(metrics_file)))
    release = threading.Event()
    raw_worker(server, {"m_busy": lambda *args: release.wait(60)})
    try:
        with Client([server.address]) as client:
            for i in range(3):
                client.submit_background("m_waiting", i)  # no worker: waiting
            client.submit_background("m_busy", 1)  # runs until released
            client.submit_background("m_later", 1, delay=600)  # scheduled, not due
            assert client.submit("hello", "x") == "Hello x"
            with pytest.raises(JobFailed):
                client.submit("failing")
        config = tmp_path / "queue.toml"
        config.write_text(f'type = "sqlite"\nserver = "{server}"\n[sqlite]\npath = "{path}"\n')
        _, url = exporter("--server", str(server), "--queue-config", str(config))
        gearjob_target = url.removeprefix("http://")
        prom = prometheus({"gearjob": gearjob_target, "node": node_exporter(textfiles)})
        prom.wait("gearjob_jobs_running > 0", "the busy job runs")
        prom.wait("gearjob_worker_jobs_failed_total > 0", "the worker's metrics file")
        # rate(), deriv() and changes() need a few samples
        prom.wait("count_over_time(gearjob_worker_jobs_total[1m]) > 3", "four scrapes")
        prom.wait('ALERTS{alertname="GearjobJobsWaitingWithoutWorker"}', "the pending alert")

        for name, metric in [
            ("instance", "gearjob_server_up"),
            ("worker", "gearjob_worker_jobs_total"),
        ]:
            values = prom.get("/api/v1/label/instance/values", **{"match[]": metric})
            assert values, f"the {name} variable would offer nothing"
        assert prom.get("/api/v1/label/instance/values", **{"match[]": "gearjob_server_up"}) == [
            gearjob_target
        ]
        for title, expr in panel_queries():
            concrete = expr.replace("$worker_instance", ".*").replace("$instance", ".*")
            concrete = concrete.replace("$__rate_interval", "1m")
            result = prom.query(concrete)  # a query error fails in get()
            assert result, f"panel {title!r}: {concrete} returned no series"
    finally:
        release.set()
