"""The whole stack on one host: units, jobs through the client, failures, registration."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Any

from gearjob_workers import (
    UNIT,
    Background,
    all_running,
    batch_results,
    instances,
    new_tag,
    recap_changed,
    records,
    run_playbook,
    wait_registered,
    wait_until,
    worker_pids,
    write_jobs,
)

testinfra_hosts = ["ansible://gearjob_workers"]

SCENARIO = Path(__file__).resolve().parents[1]


def submit(host: Any, *args: str) -> Any:
    return host.run("gearjob submit " + " ".join(shlex.quote(a) for a in args))


# --------------------------------------------------------------------------- deployment


def test_units_are_templated_hardened_and_grouped(host: Any) -> None:
    unit = host.file("/etc/systemd/system/gearjob-worker@.service")
    assert unit.exists and unit.user == "root" and unit.mode == 0o644
    assert "Ansible managed" in unit.content_string
    props = host.check_output(
        "systemctl show --property Type,Restart,KillMode,KillSignal,User,NoNewPrivileges,"
        "ProtectSystem,ProtectHome,PrivateTmp,PartOf,TimeoutStopUSec,NotifyAccess " + UNIT.format(1)
    )
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values["Type"] == "notify"
    assert values["Restart"] == "always"
    assert values["KillMode"] == "mixed"
    assert values["KillSignal"] == "15"
    assert values["User"] == "gearjob"
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "strict"
    assert values["ProtectHome"] == "yes"
    assert values["PrivateTmp"] == "yes"
    assert values["PartOf"] == "gearjob-workers.target"
    # job_timeout 120 s -> TimeoutStopSec = 180 s: longer than the longest job.
    assert values["TimeoutStopUSec"] == "3min"
    assert host.service("gearjob-workers.target").is_enabled


def test_every_instance_runs_as_gearjob(host: Any) -> None:
    pids = worker_pids(host)
    assert len(pids) == instances(host) == 2
    for number, pid in pids.items():
        assert pid > 0, f"gearjob-worker@{number} has no process"
        assert host.service(f"gearjob-worker@{number}").is_enabled
        process = host.process.get(pid=pid)
        assert process.user == "gearjob"
    assert host.run("systemctl is-active --quiet gearjob-worker@3").rc != 0


def test_config_is_readable_by_the_workers_only(host: Any) -> None:
    config = host.file("/etc/gearjob/worker.toml")
    assert (config.user, config.group, config.mode) == ("root", "gearjob", 0o640)
    assert '"my_module_hello_world" = "my_module.jobs:hello_world"' in config.content_string
    assert 'servers = ["127.0.0.1:4730"]' in config.content_string
    jobs = host.check_output("/opt/gearjob/bin/gearjob jobs --config /etc/gearjob/worker.toml")
    assert "my_module_slow" in jobs


def test_code_in_the_virtualenv_is_read_only_for_the_workers(host: Any) -> None:
    venv = host.file("/opt/gearjob")
    assert venv.user == "root" and not venv.mode & 0o002
    assert host.run("runuser -u gearjob -- touch /opt/gearjob/x").rc != 0


# --------------------------------------------------------------------------- jobs


def test_foreground_job_prints_its_result(host: Any) -> None:
    cmd = submit(host, "my_module_hello_world", "Danny")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "Hello Danny"


def test_background_job_returns_a_handle_and_runs(host: Any) -> None:
    tag = new_tag("background")
    cmd = submit(host, "--background", "my_module_record", tag)
    assert cmd.rc == 0, cmd.stderr
    assert re.fullmatch(r"H:[^:\s]+:\d+", cmd.stdout.strip()), cmd.stdout
    found = wait_until(f"the background job {tag} to run", lambda: records(host, tag))
    assert found[0]["pid"] in worker_pids(host).values()


def test_batch_of_50_succeeds_on_every_worker(host: Any) -> None:
    wait_registered(host, instances(host))
    path = write_jobs(host, "batch-50", [{"job_name": "my_module_slow", "args": [0.05]}] * 50)
    cmd = host.run(f"gearjob batch {path}")
    assert cmd.rc == 0, cmd.stderr
    results = batch_results(cmd.stdout)
    assert len(results) == 50
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    assert {r["result"] for r in results} == set(worker_pids(host).values())


def test_slow_batch_runs_in_parallel(host: Any, record_property: Any) -> None:
    jobs, seconds = 6, 1.0
    wait_registered(host, instances(host))
    tag = new_tag("parallel")
    path = write_jobs(host, tag, [{"job_name": "my_module_slow", "args": [seconds, tag]}] * jobs)
    started = time.monotonic()
    cmd = host.run(f"gearjob batch {path}")
    elapsed = time.monotonic() - started
    assert cmd.rc == 0, cmd.stderr
    # Structural proof: jobs of two different workers overlapped in time.
    spans: dict[int, list[tuple[float, float]]] = {}
    starts: dict[int, list[float]] = {}
    for r in records(host, tag):
        if r["event"] == "start":
            starts.setdefault(r["pid"], []).append(r["time"])
        elif r["event"] == "end":
            spans.setdefault(r["pid"], []).append((starts[r["pid"]].pop(0), r["time"]))
    assert len(spans) == instances(host)
    (a, b) = list(spans.values())[:2]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)
    # Generous bound on the speed-up: N=2 workers should take about half the serial time.
    ratio = elapsed / (jobs * seconds)
    record_property("parallel_ratio", f"{ratio:.2f}")
    print(
        f"slow batch: {jobs} x {seconds} s on {instances(host)} workers in {elapsed:.1f} s "
        f"(ratio {ratio:.2f} of serial)"
    )
    assert ratio < 0.85


def test_failing_job_reports_failure_and_workers_stay_up(host: Any) -> None:
    before = worker_pids(host)
    cmd = submit(host, "my_module_fail", "boom")
    assert cmd.rc == 1
    assert "ValueError" in cmd.stderr and "boom" in cmd.stderr, cmd.stderr
    assert submit(host, "my_module_hello_world", "again").stdout.strip() == "Hello again"
    assert worker_pids(host) == before


def test_killed_worker_job_goes_to_another_worker(host: Any) -> None:
    tag = new_tag("kill9")
    job = Background(host, tag, f"gearjob submit my_module_slow 4 {tag}")
    try:
        first = wait_until("the slow job to start", lambda: records(host, tag))[0]["pid"]
        before = worker_pids(host)
        assert first in before.values()
        host.check_output(f"kill -9 {first}")
        rc, out = job.wait()
        assert rc == 0, out
        assert int(out.strip()) != first
        starts = [r["pid"] for r in records(host, tag) if r["event"] == "start"]
        assert starts[0] == first and starts[-1] == int(out.strip())
        # systemd starts the killed instance again (Restart=always).
        after = wait_until("every instance to run again", lambda: all_running(host), 30)
        killed = next(n for n, pid in before.items() if pid == first)
        assert after[killed] != first
        assert all(after[n] == pid for n, pid in before.items() if n != killed)
    finally:
        job.cleanup()


# --------------------------------------------------------------------------- registration


def test_registering_a_new_job_restarts_each_worker_without_losing_jobs(host: Any) -> None:
    before = wait_until("every instance to run", lambda: all_running(host), 30)
    new_job = new_tag("reverse").replace("-", "_")  # a new name on every run
    assert submit(host, new_job, "abc", "--timeout", "1").rc == 5  # not registered yet
    tag = new_tag("during-restart")
    long_job = Background(host, tag, f"gearjob submit my_module_slow 6 {tag}")
    hellos = [{"job_name": "my_module_hello_world", "args": [str(i)]} for i in range(40)]
    batch_path = write_jobs(host, f"{tag}-jobs", hellos)
    try:
        running = wait_until("the long job to start", lambda: records(host, tag))[0]["pid"]
        batch = Background(host, f"{tag}-batch", f"gearjob batch {batch_path}")
        run_playbook(SCENARIO / "register-new-job.yml", "-e", f"gearjob_test_new_job={new_job}")
        after = wait_until("every instance to run", lambda: all_running(host), 30)
        # Every instance restarted: a new process each.
        assert not set(after.values()) & set(before.values()), (before, after)
        # The long job that ran during the restart finished on its old worker.
        rc, out = long_job.wait()
        assert rc == 0 and int(out.strip()) == running, out
        rc, out = batch.wait()
        assert rc == 0, out
        results = batch_results(out)
        assert [r["result"] for r in results] == [f"Hello {i}" for i in range(40)]
        batch.cleanup()
        # The new job runs.
        cmd = submit(host, new_job, "abc")
        assert cmd.rc == 0 and cmd.stdout.strip() == "cba", cmd.stderr
        # The same run again changes nothing and restarts nothing.
        again = run_playbook(
            SCENARIO / "register-new-job.yml", "-e", f"gearjob_test_new_job={new_job}"
        )
        assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-3000:]
        assert worker_pids(host) == after
    finally:
        long_job.cleanup()
