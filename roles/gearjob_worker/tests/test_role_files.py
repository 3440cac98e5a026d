"""Checks of the gearjob_worker and gearjob_client roles that need no host, and of the
controller's wheel builder (files/build_wheels.py) with real `pip wheel` builds.

    .venv-ansible/bin/pytest -q roles/gearjob_worker/tests
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2]
REPO = ROLES.parent
BUILDER = ROLES / "gearjob_worker" / "files" / "build_wheels.py"
ROLE_NAMES = ["gearjob_worker", "gearjob_client"]


def load(role: str, relative: str) -> Any:
    return yaml.safe_load((ROLES / role / relative).read_text(encoding="utf-8"))


def options(role: str) -> dict[str, Any]:
    spec: dict[str, Any] = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]
    return dict(spec["options"])


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_and_argument_spec_have_the_same_keys(role: str) -> None:
    defaults, spec = set(load(role, "defaults/main.yml")), set(options(role))
    assert defaults - spec == set(), "in defaults/main.yml but not in meta/argument_specs.yml"
    assert spec - defaults == set(), "in meta/argument_specs.yml but not in defaults/main.yml"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_option_is_typed_and_described(role: str) -> None:
    for name, spec in options(role).items():
        assert spec.get("type") in {"str", "int", "float", "bool", "list", "dict", "path"}, name
        assert spec.get("description"), name
        if spec["type"] == "list":
            assert spec.get("elements"), name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_documented_in_prose_above_it(role: str) -> None:
    lines = (ROLES / role / "defaults/main.yml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^([a-z_]+):", line)
        if match:
            assert lines[number - 1].startswith("# "), f"{match.group(1)} has no comment above it"
            assert match.group(1).startswith(role + "_"), match.group(1)


def test_internal_variables_are_marked_internal() -> None:
    for name in load("gearjob_worker", "vars/main.yml"):
        assert name.startswith("_gearjob_worker_"), name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_main_reads_as_preflight_install_configure_run(role: str) -> None:
    steps = [task["ansible.builtin.import_tasks"] for task in load(role, "tasks/main.yml")]
    # files.yml (gearjob_client): one read of the role's files on the host, for the steps after it.
    steps = [step for step in steps if step != "files.yml"]
    expected = ["preflight.yml", "install.yml", "configure.yml", "run.yml"]
    assert steps == expected[: len(steps)] and len(steps) >= 3


@pytest.mark.parametrize(
    "template",
    sorted(
        p
        for role in ROLE_NAMES
        for p in (ROLES / role / "templates").glob("*.j2")
        if p.name != "servers.json.j2"  # a lookup template, not a file on the hosts
    ),
    ids=lambda p: p.name,
)
def test_files_on_the_hosts_start_with_the_managed_comment(template: Path) -> None:
    assert template.read_text(encoding="utf-8").startswith("{{ ansible_managed | comment }}")


def test_unit_has_the_settings_a_worker_pool_needs() -> None:
    unit = (ROLES / "gearjob_worker/templates/gearjob-worker@.service.j2").read_text()
    for setting in (
        "Type=notify",
        "Restart=always",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=",
        "PartOf={{ _gearjob_worker_target }}",
        "Environment=GEARJOB_JOB_FILE=%t/gearjob-worker/%i/job",
        "RuntimeDirectory=gearjob-worker/%i",
        "Environment=GEARJOB_METRICS_FILE=%S/gearjob/metrics/gearjob-worker@%i.prom",
        "StateDirectory=gearjob gearjob/metrics",
        (
            "ExecStopPost=+/usr/bin/python3 -I /usr/local/lib/gearjob-worker-stopped.py "
            "%t/gearjob-worker/%i/job"
        ),
        "MemoryMax={{ gearjob_worker_memory_max }}",
        "TasksMax={{ gearjob_worker_tasks_max }}",
        "UMask={{ gearjob_worker_umask }}",
        "ProtectProc=invisible",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ):
        assert setting in unit, setting


def stopped(tmp_path: Path, job_file: Path, result: str = "signal") -> str:
    """Run the ExecStopPost script on ``job_file`` as systemd would; what it prints."""
    script = tmp_path / "stopped.py"
    template = (ROLES / "gearjob_worker/templates/gearjob-worker-stopped.py.j2").read_text()
    script.write_text(template.split("\n", 1)[1])  # without the ansible_managed line
    env = {"SERVICE_RESULT": result, "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(job_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=True,
    )
    return done.stdout


def test_stop_script_names_the_job_and_trusts_no_file_the_job_could_replace(
    tmp_path: Path,
) -> None:
    job = tmp_path / "job"
    job.write_text("running resize H:jobs1:41\n".ljust(512))
    assert stopped(tmp_path, job) == (
        "<4>worker process ended (signal: killed KILL) while running job resize H:jobs1:41; "
        "gearmand gives the job to another worker, up to its --job-retries tries\n"
    )
    assert stopped(tmp_path, job, result="success") == ""
    job.write_text("idle\n")
    assert stopped(tmp_path, job) == ""
    # a symbolic link to a file only root may read: not followed
    secret = tmp_path / "secret"
    secret.write_text("running stolen-secret\n")
    link = tmp_path / "link"
    link.symlink_to(secret)
    assert stopped(tmp_path, link) == ""
    # a FIFO nobody writes to: not waited on
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert stopped(tmp_path, fifo) == ""
    # a huge file with control characters: one bounded, printable line
    job.write_text("running x\x1b[2J" + "y" * 100_000 + "\n")
    line = stopped(tmp_path, job)
    assert len(line) < 700 and "\x1b" not in line and "x?[2J" in line


# --------------------------------------------------------------------------- build_wheels.py


def build(cache: Path, *paths: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--cache", str(cache), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.fixture
def project(tmp_path: Path) -> Path:
    source = tmp_path / "jobs"
    shutil.copytree(
        REPO / "examples" / "jobs",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    return source


def test_same_sources_reuse_the_cached_wheel(tmp_path: Path, project: Path) -> None:
    cache = tmp_path / "cache"
    first = build(cache, project)
    assert first["built"] == [str(project)]
    [wheel] = first["wheels"]
    assert Path(wheel).name == "gearjob_example_jobs-1.0.0-py3-none-any.whl"
    assert zipfile.ZipFile(wheel).read("my_module/jobs.py")
    # Build output and caches in the tree do not count as a change.
    (project / "my_module" / "__pycache__").mkdir()
    (project / "my_module" / "__pycache__" / "jobs.cpython-311.pyc").write_bytes(b"x")
    second = build(cache, project)
    assert second == {"wheels": [wheel], "built": [], "digest": first["digest"]}
    # The tree itself is left without build output.
    assert not (project / "build").exists()


def test_changed_sources_give_a_new_wheel_and_drop_the_old(tmp_path: Path, project: Path) -> None:
    cache = tmp_path / "cache"
    first = build(cache, project)
    [old] = first["wheels"]
    jobs = project / "my_module" / "jobs.py"
    jobs.write_text(jobs.read_text() + "\n\ndef extra() -> int:\n    return 1\n")
    again = build(cache, project)
    assert again["built"] == [str(project)]
    # The digest the roles compare with the host's install stamp follows the wheels.
    assert again["digest"] != first["digest"]
    [new] = again["wheels"]
    assert new != old and not Path(old).exists()
    assert b"def extra()" in zipfile.ZipFile(new).read("my_module/jobs.py")


def test_wheels_are_reproducible(tmp_path: Path, project: Path) -> None:
    [one] = build(tmp_path / "a", project)["wheels"]
    [two] = build(tmp_path / "b", project)["wheels"]
    assert Path(one).read_bytes() == Path(two).read_bytes()


def test_wheel_files_pass_through_and_missing_paths_are_named(
    tmp_path: Path, project: Path
) -> None:
    built = build(tmp_path / "cache", project)
    [wheel] = built["wheels"]
    assert build(tmp_path / "other", Path(wheel)) == {
        "wheels": [wheel],
        "built": [],
        "digest": built["digest"],
    }
    missing = tmp_path / "nope"
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--cache", str(tmp_path), str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert str(missing) in result.stderr and "gearjob_worker_packages" in result.stderr
