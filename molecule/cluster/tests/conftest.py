"""Attach the workers' journals to every failed test of the cluster scenario (``group``, the
hosts of an inventory group, comes from the shared gearjob_testinfra plugin)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gearjob_testinfra import Journal, attach_journals, host_runner

# The helpers shared with the stack scenario.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stack" / "tests"))


@attach_journals
def worker_journals(item: pytest.Item) -> Iterator[Journal]:
    if "group" not in getattr(item, "funcargs", {}):
        return
    for worker in item.funcargs["group"]("gearjob_workers"):
        yield Journal(worker.backend.host, host_runner(worker), "--unit 'gearjob-worker@*'")
