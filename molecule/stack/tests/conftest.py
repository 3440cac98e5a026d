"""Attach the workers' journal to every failed test of this directory."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        host = getattr(item, "funcargs", {}).get("host")
        if host is not None:
            try:
                cmd = host.run("journalctl --unit 'gearjob-worker@*' --lines 80 --no-pager")
                text = cmd.stdout + cmd.stderr
            except Exception as exc:  # the host itself may be gone
                text = f"(cannot read the journal: {exc})"
            report.sections.append(("journalctl -u gearjob-worker@*", text))
