"""Checks of the gearman_server role's files that need no host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gearman_server"


def load(relative: str) -> Any:
    return yaml.safe_load((ROLE / relative).read_text(encoding="utf-8"))


def options() -> dict[str, Any]:
    return load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]


def test_defaults_and_argument_spec_have_the_same_keys() -> None:
    defaults = set(load("defaults/main.yml"))
    spec = set(options())
    assert defaults - spec == set(), "in defaults/main.yml but not in meta/argument_specs.yml"
    assert spec - defaults == set(), "in meta/argument_specs.yml but not in defaults/main.yml"


def test_every_variable_carries_the_role_prefix() -> None:
    for name in load("defaults/main.yml"):
        assert name.startswith("gearman_server_") and not name.startswith("gearman_server__"), name
    for name in load("vars/main.yml"):
        assert name.startswith("gearman_server__"), name


@pytest.mark.parametrize("name", sorted(options()))
def test_every_option_is_typed_and_described(name: str) -> None:
    spec = options()[name]
    assert spec.get("type") in {"str", "int", "bool", "list", "dict", "path"}, name
    assert spec.get("description"), name
    if spec["type"] == "list":
        assert spec.get("elements"), f"{name} is a list without elements"


def test_secrets_are_marked_no_log() -> None:
    for name, spec in options().items():
        if "password" in name:
            assert spec.get("no_log") is True, name


def test_defaults_are_documented_in_prose() -> None:
    lines = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and line != "---":
            block_start = index
            while block_start > 0 and lines[block_start - 1].startswith("gearman_server_"):
                block_start -= 1
            assert lines[block_start - 1].startswith("#"), f"no comment above {line}"


@pytest.mark.parametrize(
    "template",
    ["gearman-job-server.default.j2", "gearman-job-server.service.j2", "listen.hosts.j2",
     "queue-credentials.conf.j2"],
)
def test_templates_start_with_the_managed_comment(template: str) -> None:
    first = (ROLE / "templates" / template).read_text(encoding="utf-8").splitlines()[0]
    assert first == "{{ ansible_managed | comment }}"


def test_main_reads_as_preflight_install_configure_run() -> None:
    tasks = load("tasks/main.yml")
    # files.yml: one read of the host, for the three steps after it (and tagged with theirs).
    [read] = [task for task in tasks if task["ansible.builtin.include_tasks"]["file"] == "files.yml"]
    assert read["tags"] == [f"gearman_server_{step}" for step in ["install", "configure", "run"]]
    tasks = [task for task in tasks if task is not read]
    files = [task["ansible.builtin.include_tasks"]["file"] for task in tasks]
    assert files == ["preflight.yml", "install.yml", "configure.yml", "run.yml"]
    for task, step in zip(tasks, ["preflight", "install", "configure", "run"], strict=True):
        assert task["tags"] == [f"gearman_server_{step}"]


def test_argument_spec_choices_match_the_queue_maps() -> None:
    choices = set(options()["gearman_server_queue_type"]["choices"])
    internal = load("vars/main.yml")
    assert set(internal["gearman_server__queue_params"]) == choices
    assert set(internal["gearman_server__credentials"]) == choices
    assert set(internal["gearman_server__queue_spellings"]) == choices - {"memory"}
