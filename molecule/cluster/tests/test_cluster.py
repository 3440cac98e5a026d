"""Two job servers, a MariaDB queue, a worker host and a client host (see ../molecule.yml)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from gearjob_workers import (
    all_running,
    batch_results,
    new_tag,
    records,
    run_playbook,
    wait_registered,
    wait_until,
    worker_pids,
    workers_on,
    write_jobs,
)

testinfra_hosts = ["ansible://gearjob_clients"]

SERVER_UNIT = "gearman-job-server"
SIDE_PLAYBOOK = Path(__file__).resolve().parents[2] / "stack" / "register-new-job.yml"


def address(server: Any) -> str:
    return f"{server.backend.get_hostname()}:4730"


def functions_on(client: Any, server: str) -> dict[str, dict[str, Any]] | None:
    """The functions one server knows (admin status), None when it does not answer."""
    cmd = client.run(f"gearjob status --json --server {server}")
    report = json.loads(cmd.stdout)["servers"][0]
    if not report["ok"]:
        return None
    return {f["function"]: f for f in report["functions"]}


def submit(client: Any, *args: str) -> Any:
    return client.run("gearjob submit " + " ".join(shlex.quote(a) for a in args))


def test_client_config_lists_both_servers(host: Any, group: Any) -> None:
    config = host.file("/etc/gearjob/client.toml").content_string
    expected = json.dumps([address(s) for s in group("gearman_servers")])
    assert f"servers = {expected}" in config


def registered_everywhere(host: Any, group: Any) -> None:
    """Wait until every worker process is registered with every server."""
    count = len(worker_pids(group("gearjob_workers")[0]))
    for server in group("gearman_servers"):
        wait_registered(host, count, address(server))


def test_workers_register_with_every_server(host: Any, group: Any) -> None:
    registered_everywhere(host, group)
    worker = group("gearjob_workers")[0]
    count = len(worker_pids(worker))
    assert count == 2
    for server in group("gearman_servers"):
        known = functions_on(host, address(server)) or {}
        for function in ("my_module_hello_world", "my_module_slow", "my_module_record"):
            assert known[function]["workers"] == count, (address(server), function)


def test_jobs_submitted_to_either_server_run(host: Any, group: Any) -> None:
    registered_everywhere(host, group)
    worker = group("gearjob_workers")[0]
    for server in group("gearman_servers"):
        cmd = submit(host, "--server", address(server), "my_module_hello_world", "cluster")
        assert cmd.rc == 0, cmd.stderr
        assert cmd.stdout.strip() == "Hello cluster"
        tag = new_tag("either")
        cmd = submit(host, "--server", address(server), "--background", "my_module_record", tag)
        assert cmd.rc == 0, cmd.stderr
        wait_until(
            f"the background job sent to {address(server)}",
            lambda tag=tag: records(worker, tag),
        )


def test_one_server_down_then_back(host: Any, group: Any) -> None:
    registered_everywhere(host, group)
    first, second = group("gearman_servers")[:2]
    worker = group("gearjob_workers")[0]
    before = worker_pids(worker)
    first.check_output(f"systemctl stop {SERVER_UNIT}")
    try:
        # Clients: every job still runs, through the other server.
        for i in range(4):
            cmd = submit(host, "my_module_hello_world", f"failover {i}")
            assert cmd.rc == 0, cmd.stderr
            assert cmd.stdout.strip() == f"Hello failover {i}"
        tag = new_tag("failover")
        cmd = submit(host, "--background", "my_module_record", tag)
        assert cmd.rc == 0, cmd.stderr
        wait_until("the background job sent while a server is down", lambda: records(worker, tag))
        path = write_jobs(host, "failover", [{"job_name": "my_module_slow", "args": [0.1]}] * 10)
        cmd = host.run(f"gearjob batch {path}")
        assert cmd.rc == 0, cmd.stderr
        assert len(batch_results(cmd.stdout)) == 10
        assert host.run("gearjob check --client").rc == 4  # one server unavailable
        # Workers: still running, still registered with the other server.
        assert worker_pids(worker) == before
        assert workers_on(host, address(second)) == len(before)
    finally:
        first.check_output(f"systemctl start {SERVER_UNIT}")
    # The workers connect to it again by themselves: no restart.
    wait_until(
        f"the workers to register with {address(first)} again",
        lambda: workers_on(host, address(first)) == len(before),
        limit=90,
    )
    assert worker_pids(worker) == before
    cmd = submit(host, "--server", address(first), "my_module_hello_world", "back")
    assert cmd.rc == 0 and cmd.stdout.strip() == "Hello back", cmd.stderr
    assert host.run("gearjob check --client").rc == 0


def test_queued_jobs_survive_in_mariadb(host: Any, group: Any) -> None:
    first = group("gearman_servers")[0]
    worker = group("gearjob_workers")[0]
    database = group("gearman_queue_db")[0]
    count = "mysql -N -B -e 'SELECT COUNT(*) FROM gearman_s1.gearman_queue'"

    def rows() -> int:
        return int(database.check_output(count))

    tag = new_tag("persist")
    worker.check_output("systemctl stop gearjob-workers.target")
    try:
        # The instances stop with the target (PartOf=), each after its current job; the
        # target's own stop job may finish first.
        wait_until("the workers to stop", lambda: worker_pids(worker) == {1: 0, 2: 0}, 60)
        cmd = submit(host, "--server", address(first), "--background", "my_module_record", tag)
        assert cmd.rc == 0, cmd.stderr
        assert rows() >= 1
        # The job server restarts and reads its queue back from MariaDB.
        first.check_output(f"systemctl restart {SERVER_UNIT}")
        wait_until(
            "the restarted server to list the queued job",
            lambda: (
                (functions_on(host, address(first)) or {})
                .get("my_module_record", {})
                .get("queued", 0)
                >= 1
            ),
        )
    finally:
        worker.check_output("systemctl start gearjob-workers.target")
    found = wait_until("the queued job to run", lambda: records(worker, tag), limit=90)
    assert found[0]["value"] == tag
    wait_until("the queue table to be empty", lambda: rows() == 0)


def test_new_job_is_applied_with_sighup_on_both_servers(host: Any, group: Any) -> None:
    registered_everywhere(host, group)
    worker = group("gearjob_workers")[0]
    before = wait_until("every instance to run", lambda: all_running(worker), 30)
    new_job = new_tag("reverse").replace("-", "_")  # a new name on every run
    run_playbook(SIDE_PLAYBOOK, "-e", f"gearjob_test_new_job={new_job}")
    # gearjob_worker_config_change: reload -> the same processes re-read worker.toml.
    assert worker_pids(worker) == before
    journal = worker.check_output("journalctl --unit 'gearjob-worker@*' --no-pager --lines 200")
    assert journal.count(f"added: {new_job}") == len(before), journal[-2000:]
    for server in group("gearman_servers"):
        cmd = submit(host, "--server", address(server), new_job, "abc")
        assert cmd.rc == 0 and cmd.stdout.strip() == "cba", cmd.stderr
        assert workers_on(host, address(server), new_job) == len(before)
