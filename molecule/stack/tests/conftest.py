"""Attach the workers' journal to every failed test of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gearjob_testinfra import Journal, attach_journals, host_runner


@attach_journals
def worker_journal(item: pytest.Item) -> Iterator[Journal]:
    host = getattr(item, "funcargs", {}).get("host")
    if host is not None:
        yield Journal(host.backend.host, host_runner(host), "--unit 'gearjob-worker@*'", 80)
