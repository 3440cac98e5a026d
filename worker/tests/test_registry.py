"""The job registry: sources, precedence, validation, and what `gearjob jobs` / a failing
worker start-up report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_helpers import (
    JOBS_DIR,
    RawClient,
    WorkerProcess,
    envelope,
    run_cli,
    subprocess_env,
    write_config,
)

from gearjob import registry
from gearjob.errors import ConfigError, RegistryError


def make_distribution(site: Path, name: str, entry_points: dict[str, str]) -> Path:
    """An installed distribution (dist-info with entry_points.txt) under `site`."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = ["[gearjob.jobs]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


@pytest.fixture
def jobs_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(JOBS_DIR))


# ----------------------------------------------------------------------------- in-process


def test_later_sources_override_earlier_ones_and_remember_what_they_replaced(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site", "fakejobs", {"ep_only": "pkg.a:f", "shared": "pkg.ep:f"}
    )
    monkeypatch.syspath_prepend(str(site))
    entries = registry.collect(
        {"shared": "pkg.config:f", "cfg_only": "pkg.b:g"},
        "/etc/gearjob/worker.toml",
        ["shared=pkg.flag:f"],
    )
    assert list(entries) == ["cfg_only", "ep_only", "shared"]  # sorted by name
    assert entries["ep_only"].origin == "entry point gearjob.jobs of fakejobs"
    assert entries["cfg_only"].origin == "/etc/gearjob/worker.toml [jobs]"
    shared = entries["shared"]
    assert (shared.target, shared.source, shared.origin) == (
        "pkg.flag:f",
        "flag",
        "--job shared=pkg.flag:f",
    )
    assert shared.overrides == (
        "pkg.ep:f (entry point gearjob.jobs of fakejobs)",
        "pkg.config:f (/etc/gearjob/worker.toml [jobs])",
    )


def test_entry_points_can_be_left_out(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path, "fakejobs", {"x": "a:b"})))
    assert "x" in registry.collect({}, None)
    assert "x" not in registry.collect({}, None, use_entry_points=False)


def test_two_packages_declaring_the_same_job_is_an_error(tmp_path, monkeypatch):
    make_distribution(tmp_path, "one", {"dup": "one.jobs:f"})
    make_distribution(tmp_path, "two", {"dup": "two.jobs:f"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="job 'dup' is declared twice") as info:
        registry.collect({}, None)
    assert "entry point gearjob.jobs of one" in str(info.value)
    assert "entry point gearjob.jobs of two" in str(info.value)


def test_the_same_flag_twice_is_an_error():
    with pytest.raises(RegistryError, match="job 'x' is given twice on the command line"):
        registry.flag_entries(["x=a:b", "x=a:c"])


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("no_equals_sign", "write it as NAME=package.module:function"),
        ("=a:b", "invalid job name ''"),
        ("has space=a:b", "invalid job name 'has space'"),
        ("tab\tname=a:b", "invalid job name"),
        ("x" * 256 + "=a:b", "1-255 characters"),
        ("ok=module_without_function", "invalid target 'module_without_function'"),
        ("ok=a.b:c d", "invalid target"),
        ("ok=a..b:c", "invalid target"),
        ("ok=", "invalid target ''"),
    ],
)
def test_invalid_flags_name_the_entry(flag, message):
    with pytest.raises(RegistryError) as info:
        registry.parse_job_flag(flag)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_valid_names_and_targets():
    for name in ("my_module_hello_world", "islandora:derive/tn", "a.b-c+d@e", "_x", "9"):
        registry.validate_name(name, "test")
    assert registry.parse_job_flag(" x = pkg.mod:Class.method ") == ("x", "pkg.mod:Class.method")


def test_config_entries_are_validated_and_name_the_file():
    with pytest.raises(
        RegistryError, match=r"invalid job name 'bad name' \(from w.toml \[jobs\]\)"
    ):
        registry.config_entries({"bad name": "a:b"}, "w.toml")
    with pytest.raises(RegistryError, match=r"invalid target 42 for job 'x' \(from w.toml"):
        registry.config_entries({"x": 42}, "w.toml")


@pytest.mark.usefixtures("jobs_on_path")
@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("sample_jobs:missing", "module 'sample_jobs' has no attribute 'missing'"),
        ("sample_jobs:not_callable", "'sample_jobs:not_callable' is a int, not a function"),
        ("broken_jobs:f", "raised RuntimeError: broken_jobs cannot be imported"),
    ],
)
def test_load_imports_every_entry_and_names_the_bad_one(target, message):
    entries = registry.collect({"good": "sample_jobs:hello_world", "bad": target}, "w.toml")
    with pytest.raises(RegistryError) as info:
        registry.load(entries)
    assert message in str(info.value)
    assert f"job 'bad' = '{target}' (from w.toml [jobs])" in str(info.value)


@pytest.mark.usefixtures("jobs_on_path")
def test_load_resolves_functions_and_dotted_attributes():
    reg = registry.build(
        {"hello": "sample_jobs:hello_world", "cwd": "sample_jobs:Path.cwd", "join": "os.path:join"},
        None,
    )
    assert reg.names() == ["cwd", "hello", "join"]
    assert "hello" in reg and "nope" not in reg
    assert reg.functions["hello"]("Danny") == "Hello Danny"
    assert reg.functions["cwd"]() == Path.cwd()
    assert reg.functions["join"]("a", "b") == "a/b"


# ----------------------------------------------------------------------------- CLI


def test_gearjob_jobs_lists_entries_with_their_origin(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "fakejobs",
        {"ep_hello": "sample_jobs:hello_world", "shared": "sample_jobs:echo"},
    )
    config = write_config(
        tmp_path / "worker.toml", ["127.0.0.1:1"], {"shared": "sample_jobs:length"}
    )
    env = subprocess_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    args = ["jobs", "--config", str(config), "--job", "flagged=extra_jobs:reverse"]
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["jobs"]}
    assert rows["ep_hello"]["origin"] == "entry point gearjob.jobs of fakejobs"
    assert rows["flagged"]["origin"] == "--job flagged=extra_jobs:reverse"
    assert rows["shared"]["target"] == "sample_jobs:length"
    assert rows["shared"]["origin"] == f"{config} [jobs]"
    assert rows["shared"]["overrides"] == [
        "sample_jobs:echo (entry point gearjob.jobs of fakejobs)"
    ]
    assert all(row["error"] is None for row in rows.values())

    text = run_cli(*args, env=env)
    assert text.returncode == 0
    assert f"shared    sample_jobs:length  (from {config} [jobs]; overrides sample_jobs:echo" in (
        text.stdout
    )


def test_gearjob_jobs_exits_3_and_shows_every_bad_entry(tmp_path):
    done = run_cli(
        "jobs",
        "--server",
        "127.0.0.1:1",
        "--job",
        "ok=sample_jobs:hello_world",
        "--job",
        "bad=sample_jobs:missing",
        "--job",
        "worse=no_such_module_xyz:f",
    )
    assert done.returncode == 3
    assert "ERROR: module 'sample_jobs' has no attribute 'missing'" in done.stdout
    assert "ERROR: cannot import module 'no_such_module_xyz'" in done.stdout
    assert "2 job registry error(s); a worker would not start" in done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--job", "bad=no_such_module_xyz:f"], "from --job bad=no_such_module_xyz:f"),
        (["--job", "bad=sample_jobs:not_callable"], "is a int, not a function"),
        (["--job", "bad=broken_jobs:f"], "RuntimeError: broken_jobs cannot be imported"),
        (["--job", "bad name=sample_jobs:hello_world"], "invalid job name 'bad name'"),
        (["--job", "x=sample_jobs:echo", "--job", "x=sample_jobs:length"], "given twice"),
        (["--job", "nodelimiter"], "NAME=package.module:function"),
    ],
)
def test_worker_exits_3_naming_the_bad_entry(flags, message, tmp_path):
    worker = WorkerProcess(["--server", "127.0.0.1:1", *flags], tmp_path / "w.log").start()
    assert worker.wait() == 3
    assert message in worker.log()


def test_worker_exits_3_naming_the_config_file(tmp_path):
    config = write_config(tmp_path / "worker.toml", ["127.0.0.1:1"], {"x": "sample_jobs:nope"})
    worker = WorkerProcess(["--config", str(config)], tmp_path / "w.log").start()
    assert worker.wait() == 3
    assert f"job 'x' = 'sample_jobs:nope' (from {config} [jobs])" in worker.log()
    missing = WorkerProcess(["--config", str(tmp_path / "nope.toml")], tmp_path / "m.log").start()
    assert missing.wait() == 3
    assert "nope.toml does not exist" in missing.log()


def test_worker_serves_a_job_from_an_entry_point(gearmand, tmp_path):
    site = make_distribution(tmp_path / "site", "fakejobs", {"ep_hello": "sample_jobs:hello_world"})
    env = subprocess_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    worker = WorkerProcess(["--server", str(gearmand)], tmp_path / "w.log", env=env).start()
    try:
        worker.wait_ready()
        with RawClient(gearmand.address) as client:
            assert client.run("ep_hello", envelope("ep_hello", "EP")) == (
                "WORK_COMPLETE",
                b"Hello EP",
            )
    finally:
        worker.stop()
