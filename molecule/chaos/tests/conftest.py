"""Fixtures of the chaos tests: the scenario's containers, the table of the faults (printed
at the end and added to the figures scripts/molecule.sh shows), and the journals of the
job servers and workers attached to every failed test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import testinfra
from gearjob_testinfra import Journal, attach_journals, record_figure

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import N, Row, Stack, sh, table


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Stack:
    inventory = request.config.option.ansible_inventory

    def hosts(group: str) -> list[Any]:
        return list(testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=inventory))

    servers = {}
    for server in hosts("gearman_servers"):
        queue = server.ansible.get_variables()["gearman_server_queue_type"]
        servers[queue] = server.backend.host
    worker = hosts("gearjob_workers")[0]
    count = int(worker.ansible.get_variables()["gearjob_worker_instances"])
    return Stack(servers, worker.backend.host, count)


_ROWS: list[Row] = []


@pytest.fixture(scope="session")
def rows() -> Iterator[list[Row]]:
    """The table's rows; printed, and recorded as figures, when the session ends."""
    yield _ROWS
    if _ROWS:
        record_figure(f"chaos table (N = {N} jobs per fault):")
        for line in table(_ROWS):
            record_figure("  " + line)


@attach_journals
def stack_journals(item: pytest.Item) -> Iterator[Journal]:
    found = getattr(item, "funcargs", {}).get("stack")
    if found is None:
        return
    units = [(c, "gearman-job-server") for c in found.servers.values()]
    units.append((found.worker, "gearjob-worker@*"))
    for container, unit in units:
        yield Journal(container, partial(sh, container, check=False), f"--unit '{unit}'", 40)
