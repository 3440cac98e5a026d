"""The shared testinfra plugin's journals of a failed test (pure logic, fake hosts)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "gearjob_testinfra.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gearjob_testinfra_under_test", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class FakeHost:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.backend = SimpleNamespace(host=name)
        self.fail = fail
        self.commands: list[str] = []

    def run(self, command: str) -> Any:
        if self.fail:
            raise ConnectionError("container is gone")
        self.commands.append(command)
        return SimpleNamespace(stdout=f"out of {command}\n", stderr="")


def item(**funcargs: Any) -> Any:
    return SimpleNamespace(funcargs=funcargs)


def test_the_server_journal_of_the_host_fixture() -> None:
    plugin = load()
    host = FakeHost("gearman-1")
    sections = plugin.journal_sections(item(host=host))
    assert host.commands == ["journalctl --unit gearman-job-server --lines 60 --no-pager"]
    assert sections == [
        (
            "journalctl --unit gearman-job-server (gearman-1)",
            "out of journalctl --unit gearman-job-server --lines 60 --no-pager\n",
        )
    ]


def test_a_test_without_hosts_gets_no_sections() -> None:
    assert load().journal_sections(item()) == []


def test_a_scenarios_journals_follow_the_servers() -> None:
    plugin = load()
    host = FakeHost("stack-1")

    @plugin.attach_journals
    def workers(found: Any) -> Iterator[Any]:
        yield plugin.Journal("stack-1", plugin.host_runner(found.funcargs["host"]), "-u w@*", 80)

    titles = [title for title, _ in plugin.journal_sections(item(host=host))]
    assert titles == [
        "journalctl --unit gearman-job-server (stack-1)",
        "journalctl -u w@* (stack-1)",
    ]
    assert host.commands[-1] == "journalctl -u w@* --lines 80 --no-pager"


def test_a_host_that_is_gone_is_named_not_raised() -> None:
    plugin = load()
    sections = plugin.journal_sections(item(host=FakeHost("gone-1", fail=True)))
    assert sections == [
        (
            "journalctl --unit gearman-job-server (gone-1)",
            "(cannot read the journal: container is gone)",
        )
    ]


def test_a_source_that_cannot_list_its_hosts_is_named() -> None:
    plugin = load()

    @plugin.attach_journals
    def broken(found: Any) -> Iterator[Any]:
        raise RuntimeError("no inventory")
        yield  # pragma: no cover

    sections = plugin.journal_sections(item())
    assert sections == [("journals of broken", "(cannot list them: no inventory)")]


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[2].glob("*/tests/conftest.py"))
)
def test_no_scenario_defines_its_own_report_hook(path: Path) -> None:
    assert "pytest_runtest_makereport" not in path.read_text(encoding="utf-8"), path


def test_the_journals_of_an_inventory_group() -> None:
    plugin = load()
    members = {"gearjob_workers": [FakeHost("w1"), FakeHost("w2")]}
    plugin.attach_journals(plugin.group_journals("gearjob_workers", "-u 'w@*'"))
    sections = plugin.journal_sections(item(group=lambda name: members.get(name, [])))
    assert [title for title, _ in sections] == [
        "journalctl -u 'w@*' (w1)",
        "journalctl -u 'w@*' (w2)",
    ]
    assert members["gearjob_workers"][1].commands == ["journalctl -u 'w@*' --lines 60 --no-pager"]
    # a test without the group fixture gets none of them
    assert plugin.journal_sections(item()) == []
