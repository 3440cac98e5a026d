"""Every template of the roles rendered for each supported system, by Ansible itself.

Nothing here runs on Ubuntu: its images cannot be built where these tests run. What
differs between the four systems is in the roles' per-OS maps, so this renders every
template and resolves every internal value of the roles with the facts of each system
(render_templates.yml, ansible-core's own template lookup, the roles' defaults, vars and
filter plugins) and asserts that Debian 13 and Ubuntu 22.04/24.04 get exactly what
Debian 12 gets, apart from the differences their map entries declare, which must then
show up where they are used.

The lookup renders as the template module does (the same engine, trim_blocks, no
lstrip_blocks, ansible_managed) without the module's copy to a host, which would cost
a module run per file."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[3]
ROLES = REPO / "roles"
PLAYBOOK = Path(__file__).with_name("render_templates.yml")
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


class System(NamedTuple):
    distribution: str
    major: str
    release: str
    version: str
    python: str

    @property
    def title(self) -> str:
        """As docs/testing.md names it: Debian 12, Ubuntu 22.04."""
        number = self.version if self.distribution == "Ubuntu" else self.major
        return f"{self.distribution} {number}"

    @property
    def map_key(self) -> str:
        return f"{self.distribution}-{self.major}"

    def facts(self) -> dict[str, Any]:
        major, minor, micro = (int(part) for part in self.python.split("."))
        return {
            "distribution": self.distribution,
            "distribution_major_version": self.major,
            "distribution_release": self.release,
            "distribution_version": self.version,
            "os_family": "Debian",
            "python": {"version": {"major": major, "minor": minor, "micro": micro}},
            "python_version": self.python,
        }


# The systems of the support table in docs/testing.md, with the Python each one ships.
SYSTEMS = {
    "debian-12": System("Debian", "12", "bookworm", "12.11", "3.11.2"),
    "debian-13": System("Debian", "13", "trixie", "13.1", "3.13.5"),
    "ubuntu-22.04": System("Ubuntu", "22", "jammy", "22.04", "3.10.12"),
    "ubuntu-24.04": System("Ubuntu", "24", "noble", "24.04", "3.12.3"),
}
REFERENCE = "debian-12"

# Set on every host: each host is a job server, two workers, a client and the exporter.
COMMON: dict[str, Any] = {
    "ansible_host": "127.0.0.1",
    "ansible_python_interpreter": sys.executable,
    "gearjob_worker_instances": 2,
    "gearjob_worker_jobs": {
        "reverse": "gearjob_jobs.text:reverse",
        "sleep": "gearjob_jobs.time:sleep",
    },
}
# One host per variable set; together they reach every branch of the templates that a
# system could change.
HOSTS: dict[str, dict[str, Any]] = {
    "memory": {},
    "sqlite": {
        "gearman_server_queue_type": "sqlite",
        # Beyond loopback: the firewall comes on by itself, whitelisting the networks of
        # the interfaces in the facts.
        "gearman_server_listen": ["0.0.0.0"],
    },
    "mysql": {
        "gearman_server_queue_type": "mysql",
        "gearman_server_mysql_host": "localhost",
        "gearman_server_mysql_password": "mysql-secret",
        "gearman_server_manage_database": True,
    },
    # Remote access: two listen addresses, the firewall, TLS, and workers with every
    # optional setting.
    "postgres": {
        "gearman_server_queue_type": "postgres",
        "gearman_server_postgres_password": "postgres-secret",
        "gearman_server_manage_database": True,
        "gearman_server_listen": ["127.0.0.1", "192.0.2.10"],
        "gearman_server_firewall": True,
        "gearman_server_allowed_networks": ["192.0.2.0/24", "2001:db8::/32"],
        "gearman_server_tls": True,
        "gearman_server_tls_listen": ["192.0.2.10"],
        "gearman_server_extra_params": ["--round-robin"],
        "gearjob_worker_environment": {"JOBS_MODE": "production"},
        "gearjob_worker_job_timeouts": {"sleep": 60},
        "gearjob_worker_watchdog_sec": 30,
        "gearjob_worker_read_write_paths": ["/srv/jobs"],
        "gearjob_worker_client_id": "remote-workers",
        "gearjob_client_timeout": 30,
        "gearjob_metrics_listen_address": "0.0.0.0",
    },
}

# The hosts the workers, clients and exporters of every host find as job servers (the
# others run gearmand too, but are not in the group).
GEARMAN_SERVERS = ["mysql", "postgres"]

# Internal values that follow the system's Python rather than the map (tomli before 3.11);
# the test of the per-OS tables checks them for each system.
BY_PYTHON = frozenset({"_gearjob_worker_needs_tomli", "_gearjob_worker_system_packages"})

# Internal values that only exist while the role runs (registered results).
RUN_TIME_VALUES = {
    "_gearjob_worker_venv_changed_wheels",
    "_gearjob_worker_venv_stamp_wanted",
    "_gearjob_worker_venv_stamp_ok",
    "_gearjob_worker_venv_stamp_content",
    "_gearjob_worker_venv_read",
    "gearman_server__installed_packages",
    "gearman_server__firewall_unit_present",
    "gearman_server__tls_unit_present",
}

# Where each key of gearman_server__os ends up besides gearman_server__os itself: the
# gearman_server templates and internal values that hold the key's value, on the hosts
# whose settings use it, and how the value reads there ("{}" stands for it). A system
# whose map entry gives a key another value than Debian 12's must see exactly these
# change, by that value; nothing else may differ. Keys without places are read by tasks
# only (packages, and the version the Molecule tests check).
ALL = frozenset(HOSTS)


class Place(NamedTuple):
    hosts: frozenset[str]
    reads: str
    also: tuple[str, ...] = ()  # further places in the same file

    @property
    def every_read(self) -> tuple[str, ...]:
        return (self.reads, *self.also)


OS_KEY_PLACES: dict[str, dict[str, Place]] = {
    "gearmand_version": {},
    "service": {
        "gearman_server__service": Place(ALL, '"{}"'),
        "gearman_server__read_units": Place(ALL, '"{}.service"'),
        "queue.toml.j2": Place(ALL, 'service = "{}"'),
        "gearjob-firewall.service.j2": Place(ALL, "{}.service"),
        "gearman-tls.service.j2": Place(ALL, "{}.service"),
    },
    "mysql_service": {
        "gearman_server__database_unit": Place(frozenset({"mysql"}), '"{}"'),
        "gearman-job-server.service.j2": Place(
            frozenset({"mysql"}), "network-online.target {}"
        ),
    },
    "mysql_socket": {"queue.toml.j2": Place(frozenset({"mysql"}), 'socket = "{}"')},
    "mysql_python_package": {},
    "postgres_service": {
        "gearman_server__database_unit": Place(frozenset({"postgres"}), '"{}"'),
        # PartOf: a restart of the database restarts gearmand (see the template)
        "gearman-job-server.service.j2": Place(
            frozenset({"postgres"}), "network-online.target {}", ("PartOf={}",)
        ),
    },
    "postgres_python_package": {},
    "mysql_client_package": {
        "gearman_server__queue_client_packages": Place(ALL, '"{}"'),
        "gearman_server__other_packages": Place(frozenset({"mysql"}), '"{}"'),
    },
    "postgres_client_package": {
        "gearman_server__queue_client_packages": Place(ALL, '"{}"'),
        "gearman_server__other_packages": Place(frozenset({"postgres"}), '"{}"'),
    },
}


def role_yaml(role: str, relative: str) -> Any:
    path = ROLES / role / relative
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}


def role_names() -> list[str]:
    return sorted(path.parent.parent.name for path in ROLES.glob("*/meta/main.yml"))


def templates(role: str) -> list[str]:
    return sorted(path.name for path in (ROLES / role / "templates").glob("*.j2"))


def internal_values(role: str) -> list[str]:
    return sorted(set(role_yaml(role, "vars/main.yml")) - RUN_TIME_VALUES)


# The task file each role copy gets as tasks/render.yml: run inside the role, so the
# lookups see its templates/ and its variables.
RENDER_TASKS = [
    {
        "name": "Render the role's templates and resolve its internal values",
        "ansible.builtin.set_fact": {
            "render_results": (
                "{{ render_results | default({}) | combine({role_name: {"
                " 'templates': dict(render_templates | zip(render_texts)),"
                " 'values': dict(render_names | zip(query('ansible.builtin.vars', *render_names)))"
                "}}) }}"
            ),
        },
        "vars": {
            "render_templates": (
                "{{ query('ansible.builtin.fileglob', role_path ~ '/templates/*.j2')"
                " | map('basename') | sort }}"
            ),
            "render_texts": "{{ query('ansible.builtin.template', *render_templates) }}",
            "render_names": "{{ render_values[role_name] }}",
        },
    }
]


def copy_roles(target: Path) -> Path:
    """The roles with their own files (links to them), but tasks/ holding only render.yml."""
    for role in role_names():
        copy = target / role
        copy.mkdir(parents=True)
        for entry in (ROLES / role).iterdir():
            if entry.name != "tasks":
                (copy / entry.name).symlink_to(entry)
        (copy / "tasks").mkdir()
        (copy / "tasks" / "render.yml").write_text(
            yaml.safe_dump(RENDER_TASKS, sort_keys=False)
        )
    return target


class Run(NamedTuple):
    system: str
    extra_vars: dict[str, Any]
    roles: list[str]


def render(name: str, run: Run, work: Path, roles: Path) -> dict[str, Any]:
    """{host: {role: {"templates": {name: text}, "values": {name: value}}}} for one run."""
    inventory = {
        "all": {
            "vars": {
                **COMMON,
                "render_os": SYSTEMS[run.system].facts(),
                "render_values": {role: internal_values(role) for role in run.roles},
            },
            "hosts": {host: dict(hvars) for host, hvars in HOSTS.items()},
            "children": {
                "gearman_servers": {"hosts": {host: {} for host in GEARMAN_SERVERS}}
            },
        }
    }
    # The same directory for every system: inventory_dir is part of some values.
    inventory_file = work / f"inventory-{name}.yml"
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    tree = work / f"results-{name}"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(roles),
        "ANSIBLE_COLLECTIONS_PATH": f"{REPO / '.collections'}:{REPO / '.cache/collections'}",
        "ANSIBLE_LOCAL_TEMP": str(work / f"tmp-{name}"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DISPLAY_OK_HOSTS": "false",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false",
        # The tree callback keeps each host's last result (the debug task's) as JSON.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
        "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
    }
    result = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(inventory_file),
            "-e",
            json.dumps(run.extra_vars),
            str(PLAYBOOK),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"rendering for {name} failed:\n{result.stdout}\n{result.stderr}"
    )
    return {
        host: json.loads((tree / host).read_text(encoding="utf-8"))["render_results"]
        for host in HOSTS
    }


def gearman_os_map() -> dict[str, dict[str, Any]]:
    return role_yaml("gearman_server", "vars/main.yml")["gearman_server__os_map"]


def gearman_os_defaults() -> dict[str, Any]:
    return role_yaml("gearman_server", "vars/main.yml")["gearman_server__os_defaults"]


# A run that stands for Ubuntu 24.04 with a map entry in which every key has a value of
# its own: it shows that each key changes its declared places, and only those.
MARKED = "marked"
MARKED_SYSTEM = "ubuntu-24.04"


def marker(key: str) -> str:
    return f"os-map-{key.replace('_', '-')}"


def marked_map() -> dict[str, dict[str, Any]]:
    entries = dict(gearman_os_map())
    entries[SYSTEMS[MARKED_SYSTEM].map_key] = {
        key: marker(key) for key in gearman_os_defaults()
    }
    return entries


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{system or MARKED: {host: {role: {"templates": {name: text}, "values": {name: value}}}}}"""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"no ansible-playbook next to {sys.executable}")
    work = tmp_path_factory.mktemp("os-rendering")
    roles = copy_roles(work / "roles")
    runs = {system: Run(system, {}, role_names()) for system in SYSTEMS}
    # Only gearman_server reads the map.
    runs[MARKED] = Run(
        MARKED_SYSTEM, {"gearman_server__os_map": marked_map()}, ["gearman_server"]
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(render, name, run, work, roles)
            for name, run in runs.items()
        }
        results = {run: future.result() for run, future in futures.items()}
    shutil.rmtree(roles)
    return results


def as_text(kind: str, value: Any) -> str:
    return value if kind == "templates" else json.dumps(value, indent=1, sort_keys=True)


def expected_text(reference: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        reference = reference.replace(old, new)
    return reference


def difference(
    host: str,
    role: str,
    kind: str,
    name: str,
    ours: Any,
    theirs: Any,
    changed: dict[str, Any],
) -> str | None:
    """How one rendered file or value (ours) differs from Debian 12's (theirs) other than
    by the changed keys of gearman_server__os ({key: (Debian 12's value, ours)})."""
    if role == "gearman_server" and name == "gearman_server__os":
        expected_os = theirs | {key: new for key, (_, new) in changed.items()}
        return (
            None
            if ours == expected_os
            else f"{host}: {name} is {ours}, not {expected_os}"
        )
    replacements = [
        (reads.format(old), reads.format(new))
        for key, (old, new) in changed.items()
        if role == "gearman_server"
        for place in [OS_KEY_PLACES[key].get(name)]
        if place is not None and host in place.hosts
        for reads in place.every_read
    ]
    expected = expected_text(as_text(kind, theirs), replacements)
    actual = as_text(kind, ours)
    if actual == expected:
        return None
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "expected", "rendered", lineterm=""
    )
    return f"{host}: {role}/{name}:\n" + "\n".join(diff)


def differences(
    results: dict[str, Any],
    reference: dict[str, Any],
    changed: dict[str, tuple[Any, Any]],
    inputs: frozenset[str] = frozenset(),
) -> list[str]:
    """Every difference() of a run from Debian 12's (the values named in inputs are not
    compared)."""
    problems = []
    for host in HOSTS:
        for role in sorted(results[host]):
            for kind in ("templates", "values"):
                ours, theirs = results[host][role][kind], reference[host][role][kind]
                if set(ours) != set(theirs):
                    problems.append(
                        f"{host}: {role} {kind}: {sorted(set(ours) ^ set(theirs))}"
                    )
                    continue
                for name in sorted(set(theirs) - inputs):
                    problem = difference(
                        host, role, kind, name, ours[name], theirs[name], changed
                    )
                    if problem:
                        problems.append(problem)
    return problems


def os_values(results: dict[str, Any]) -> dict[str, Any]:
    return results["memory"]["gearman_server"]["values"]["gearman_server__os"]


def changed_keys(
    results: dict[str, Any], reference: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    ours, theirs = os_values(results), os_values(reference)
    return {key: (theirs[key], ours[key]) for key in theirs if ours[key] != theirs[key]}


def test_every_template_of_every_role_is_rendered(rendered: dict[str, Any]) -> None:
    for run, hosts in rendered.items():
        for host, roles in hosts.items():
            assert sorted(roles) == (
                ["gearman_server"] if run == MARKED else role_names()
            ), (
                run,
                host,
            )
            for role, results in roles.items():
                assert sorted(results["templates"]) == templates(role), (
                    run,
                    host,
                    role,
                )
                assert sorted(results["values"]) == internal_values(role), (
                    run,
                    host,
                    role,
                )
    assert sum(len(templates(role)) for role in role_names()) >= 17


@pytest.mark.parametrize("system", sorted(set(SYSTEMS) - {REFERENCE}))
def test_rendered_files_and_values_are_debian_12s_but_for_the_map(
    rendered: dict[str, Any], system: str
) -> None:
    changed = changed_keys(rendered[system], rendered[REFERENCE])
    assert set(changed) <= set(OS_KEY_PLACES)
    problems = differences(rendered[system], rendered[REFERENCE], changed, BY_PYTHON)
    assert not problems, f"{system} differs from {REFERENCE}:\n" + "\n\n".join(problems)


def test_each_key_of_the_map_changes_exactly_its_declared_places(
    rendered: dict[str, Any],
) -> None:
    assert set(OS_KEY_PLACES) == set(gearman_os_defaults())
    reference = rendered[REFERENCE]
    changed = changed_keys(rendered[MARKED], reference)
    assert changed == {
        key: (os_values(reference)[key], marker(key)) for key in gearman_os_defaults()
    }
    # Every declared place holds the value as declared (on Debian 12 too), so that a
    # change of the value shows there.
    for key, places in OS_KEY_PLACES.items():
        for name, place in places.items():
            kind = "templates" if name.endswith(".j2") else "values"
            for host in place.hosts:
                text = as_text(kind, reference[host]["gearman_server"][kind][name])
                for reads in place.every_read:
                    assert reads.format(os_values(reference)[key]) in text, (
                        key,
                        name,
                        host,
                        reads,
                    )
    problems = differences(
        rendered[MARKED], reference, changed, frozenset({"gearman_server__os_map"})
    )
    assert not problems, "\n\n".join(problems)


def test_a_difference_nobody_declared_is_reported(rendered: dict[str, Any]) -> None:
    reference = rendered[REFERENCE]
    edited = json.loads(json.dumps(reference))
    unit = edited["mysql"]["gearman_server"]["templates"]
    unit["gearman-job-server.service.j2"] = unit[
        "gearman-job-server.service.j2"
    ].replace("mariadb.service", "mysql.service")
    problems = differences(edited, reference, {})
    assert (
        len(problems) == 1
        and "-Wants=network-online.target mariadb.service" in problems[0]
    )
    # Declared but not rendered: the map says mysql.service and the unit still says mariadb.
    declared = {"mysql_service": ("mariadb.service", "mysql.service")}
    assert differences(reference, reference, declared)


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_each_system_has_a_complete_map_entry(
    rendered: dict[str, Any], system: str
) -> None:
    key = SYSTEMS[system].map_key
    # The lookup falls back to the defaults for a system without an entry: a missing
    # entry would pass silently.
    assert key in gearman_os_map(), f"gearman_server__os_map has no entry {key}"
    assert set(gearman_os_map()[key]) <= set(gearman_os_defaults()), key
    values = os_values(rendered[system])
    assert set(values) == set(gearman_os_defaults())
    missing = sorted(name for name, value in values.items() if value in (None, ""))
    assert not missing, f"{key} has no value for {missing}"
    worker = role_yaml("gearjob_worker", "vars/main.yml")
    for table in ("_gearjob_worker_os_packages", "_gearjob_worker_nologin_shells"):
        assert SYSTEMS[system].facts()["os_family"] in worker[table], table
    worker_values = rendered[system]["memory"]["gearjob_worker"]["values"]
    # Python 3.10 has no tomllib: tomli comes from the system, not from a package index.
    needs_tomli = tuple(int(p) for p in SYSTEMS[system].python.split(".")[:2]) < (3, 11)
    assert worker_values["_gearjob_worker_needs_tomli"] is needs_tomli
    assert worker_values["_gearjob_worker_system_packages"] == [
        "python3",
        "python3-venv",
    ] + (["python3-tomli"] if needs_tomli else [])
    assert worker_values["_gearjob_worker_nologin"] == "/usr/sbin/nologin"
    assert worker_values["_gearjob_worker_wanted"] == ["1", "2"]


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_the_package_supports_the_python_of_each_system(system: str) -> None:
    import tomllib  # Python 3.11+, like the one that runs these tests

    project = tomllib.loads(
        (REPO / "worker" / "pyproject.toml").read_text(encoding="utf-8")
    )
    assert SpecifierSet(project["project"]["requires-python"]).contains(
        SYSTEMS[system].python
    )


def support_table() -> dict[str, dict[str, str]]:
    """The "Supported systems" table of docs/testing.md: {"Debian 12": {"gearmand": ..., "Python": ...}}."""
    text = (REPO / "docs/testing.md").read_text(encoding="utf-8")
    section = text.split("\n## Supported systems\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    header, body = rows[0], rows[2:]
    return {
        re.sub(r" \(.*\)$", "", row[0]): dict(zip(header, row, strict=True))
        for row in body
    }


def test_the_readme_table_lists_the_maps_values() -> None:
    table = support_table()
    names = {system: info.title for system, info in SYSTEMS.items()}
    assert set(table) == set(names.values())
    for system, name in names.items():
        assert (
            table[name]["gearmand"]
            == gearman_os_map()[SYSTEMS[system].map_key]["gearmand_version"]
        ), name
        assert table[name]["Python"] == SYSTEMS[system].python.rsplit(".", 1)[0], name
