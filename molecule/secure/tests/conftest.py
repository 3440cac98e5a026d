"""Attach the journals of stunnel, the firewall and the workers to every failed test of the
secure scenario (``group``, the hosts of an inventory group, comes from the shared
gearjob_testinfra plugin)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gearjob_testinfra import Journal, attach_journals, host_runner

# The helpers shared with the stack and cluster scenarios.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stack" / "tests"))

JOURNALS = {
    "gearman_servers": "--unit gearman-tls --unit gearjob-firewall --unit gearman-job-server",
    "gearjob_workers": "--unit 'gearjob-worker@*'",
}


@attach_journals
def secure_journals(item: pytest.Item) -> Iterator[Journal]:
    if "group" not in getattr(item, "funcargs", {}):
        return
    for name, units in JOURNALS.items():
        for member in item.funcargs["group"](name):
            yield Journal(member.backend.host, host_runner(member), units)
