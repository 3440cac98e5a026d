"""Fixtures of the drupal tests: the hosts of each inventory group, and the workers' journal
attached to every failed test."""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import testinfra

# The helpers shared with the stack scenario.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stack" / "tests"))


@pytest.fixture(scope="session")
def group(request: pytest.FixtureRequest) -> Any:
    """group(name) -> the testinfra hosts of an inventory group, in inventory order."""
    inventory = request.config.option.ansible_inventory

    def hosts(name: str) -> list[Any]:
        return list(
            testinfra.get_hosts([f"ansible://{name}"], ansible_inventory=inventory)
        )

    return hosts


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        hosts = getattr(item, "funcargs", {}).get("group")
        if hosts is not None:
            for worker in hosts("gearjob_workers"):
                try:
                    cmd = worker.run(
                        "journalctl --unit 'gearjob-worker@*' --lines 60 --no-pager"
                    )
                    text = cmd.stdout + cmd.stderr
                except Exception as exc:  # noqa: BLE001 - the host itself may be gone
                    text = f"(cannot read the journal: {exc})"
                report.sections.append(("journalctl -u gearjob-worker@*", text))
