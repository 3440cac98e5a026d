"""Checks of the gearjob_metrics role's files, the queue.toml template and the operator
playbooks of the queue that need no host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "gearjob_metrics"


def load(relative: str) -> Any:
    return yaml.safe_load((ROLE / relative).read_text(encoding="utf-8"))


def options() -> dict[str, Any]:
    return load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]


def test_defaults_and_argument_spec_have_the_same_keys() -> None:
    assert set(load("defaults/main.yml")) == set(options())


def test_every_variable_carries_the_role_prefix() -> None:
    for name in load("defaults/main.yml"):
        assert name.startswith("gearjob_metrics_") and not name.startswith("gearjob_metrics__")
    for name in load("vars/main.yml"):
        assert name.startswith("gearjob_metrics__"), name


@pytest.mark.parametrize("name", sorted(options()))
def test_every_option_is_typed_and_described(name: str) -> None:
    spec = options()[name]
    assert spec.get("type") in {"str", "int", "float", "bool", "list", "dict", "path"}, name
    assert spec.get("description"), name
    if spec["type"] == "list":
        assert spec.get("elements"), f"{name} is a list without elements"


def test_every_default_has_a_comment_above_it() -> None:
    lines = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("gearjob_metrics_"):
            above = index
            while lines[above - 1].startswith("gearjob_metrics_"):
                above -= 1
            assert lines[above - 1].startswith("#"), f"no comment above {line}"


@pytest.mark.parametrize(
    "template",
    [
        ROLE / "templates" / "gearjob-metrics.service.j2",
        ROLE / "templates" / "metrics.toml.j2",
        REPO / "roles" / "gearman_server" / "templates" / "queue.toml.j2",
    ],
    ids=lambda path: path.name,
)
def test_templates_start_with_the_managed_comment(template: Path) -> None:
    assert template.read_text(encoding="utf-8").splitlines()[0] == "{{ ansible_managed | comment }}"


def test_unit_is_hardened_and_restarts_on_failure() -> None:
    unit = (ROLE / "templates" / "gearjob-metrics.service.j2").read_text(encoding="utf-8")
    for setting in (
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SystemCallFilter=@system-service",
    ):
        assert setting in unit, setting
    assert "Type=forking" not in unit and "PIDFile" not in unit


def test_tasks_that_read_or_write_queue_toml_hide_their_values() -> None:
    writes = yaml.safe_load(
        (REPO / "roles" / "gearman_server" / "tasks" / "queue_config.yml").read_text()
    )
    template = [t for t in writes if "ansible.builtin.template" in t]
    assert template and all(t.get("no_log") is True for t in template)
    reads = yaml.safe_load((REPO / "ansible" / "tasks" / "queue-config.yml").read_text())
    slurp = [t for t in reads if "ansible.builtin.slurp" in t]
    assert slurp and all(t.get("no_log") is True for t in slurp)


@pytest.mark.parametrize(
    ("groups", "after"),
    [
        ({"gearman_servers": ["h1"]}, "After=network-online.target gearman-job-server.service"),
        ({"gearman_servers": ["other"], "gearjob_clients": ["h1"]}, "After=network-online.target"),
        ({}, "After=network-online.target"),
    ],
    ids=["job server", "client only", "no such group"],
)
def test_unit_starts_after_the_local_job_server_only(groups: dict[str, Any], after: str) -> None:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    default = load("defaults/main.yml")["gearjob_metrics_after_units"]
    units = env.from_string(default).render(inventory_hostname="h1", groups=groups)
    template = (ROLE / "templates" / "gearjob-metrics.service.j2").read_text(encoding="utf-8")
    line = next(line for line in template.splitlines() if line.startswith("After="))
    rendered = env.from_string(line).render(gearjob_metrics_after_units=yaml.safe_load(units))
    assert rendered == after
    assert "gearman-job-server" not in line
