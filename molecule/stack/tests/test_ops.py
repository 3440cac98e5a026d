"""Operations on the stack's job server (memory queue, site.yml): the metrics exporter,
ansible/queue-status.yml and ansible/clear-queue.yml with running workers."""

from __future__ import annotations

import re
import uuid
from typing import Any

from gearjob_ops import (
    METRICS_UNIT,
    changed_per_host,
    metric,
    playbook,
    row,
    scrape,
    shown,
    submit_background,
    unit_properties,
)
from gearjob_testinfra import status
from gearjob_workers import all_running, wait_registered, wait_until

testinfra_hosts = ["ansible://gearman_servers"]

SERVER = "127.0.0.1:4730"


def gearmand_pid(host: Any) -> int:
    return int(host.check_output("systemctl show --property MainPID --value gearman-job-server"))


def test_exporter_reports_the_server_and_its_workers(host: Any) -> None:
    values = unit_properties(host, METRICS_UNIT, "ActiveState", "DynamicUser", "Restart")
    assert values == {"ActiveState": "active", "DynamicUser": "yes", "Restart": "on-failure"}
    # The shared server tests kill gearmand just before; the workers reconnect with a back-off.
    wait_registered(host, 2)
    page = scrape(host)
    assert metric(page, "gearjob_server_up", server=SERVER) == 1
    # The two worker instances of the stack registered the example jobs.
    assert metric(page, "gearjob_workers", server=SERVER, function="my_module_hello_world") == 2
    # A memory queue has no table.
    assert metric(page, "gearjob_persistent_queue_up") is None


def test_memory_queue_status_refused_function_clear_and_full_clear(host: Any) -> None:
    workers = wait_until("every worker instance to run", lambda: all_running(host), 30)
    flood = f"ops_flood_{uuid.uuid4().hex[:8]}"  # no worker has it: its jobs wait
    jobs = 40
    submit_background(host, flood, [f"job-{i}" for i in range(jobs)])
    assert status(host, flood, 4730) == (jobs, 0, 0)
    assert metric(scrape(host), "gearjob_jobs_waiting", server=SERVER, function=flood) == jobs

    result = playbook("queue-status.yml")
    assert result.returncode == 0, shown(result)
    assert re.search(row(SERVER, flood, jobs, 0, 0, jobs), result.stdout), shown(result)
    assert re.search(row("my_module_hello_world", 0, 0, 2, 0), result.stdout), shown(result)
    assert f"persistent queue of {SERVER}: memory" in result.stdout, shown(result)

    # gearmand cannot drop one function's jobs from memory: refused, nothing restarted.
    pid = gearmand_pid(host)
    result = playbook("clear-queue.yml", "-e", f"function={flood}")
    assert result.returncode != 0, shown(result)
    assert "cannot delete the queued jobs of one function" in result.stdout, shown(result)
    assert gearmand_pid(host) == pid
    assert status(host, flood, 4730) == (jobs, 0, 0)

    # all=true restarts gearmand, which drops every queued job; the workers keep running and
    # reconnect by themselves.
    result = playbook("clear-queue.yml", "-e", "all=true")
    assert result.returncode == 0, shown(result)
    assert "keeps its queue in memory only" in result.stdout, shown(result)
    assert set(changed_per_host(result.stdout).values()) == {1}, shown(result)
    assert gearmand_pid(host) not in (0, pid)
    assert status(host, flood, 4730) in (None, (0, 0, 0))
    hello = host.run("gearjob submit --timeout 60 my_module_hello_world again")
    assert hello.rc == 0 and hello.stdout.strip() == "Hello again", hello.stderr
    assert all_running(host) == workers
