"""The host_files filters: one command reads a role's files, a task is skipped only when its
file is already exactly what the task would leave (the probe runs here, on this machine)."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN = Path(__file__).resolve().parents[3] / "plugins/filter/host_files.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("host_files", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


host_files = load()
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def probe(*paths: Path) -> str:
    argv = host_files.host_files_probe([str(p) for p in paths])
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_the_filters_are_registered() -> None:
    assert set(host_files.FilterModule().filters()) == {
        "host_files_probe",
        "host_file_is",
        "host_file_exists",
        "host_units",
        "host_packages",
        "host_unit_is_up",
        "host_user_is",
        "host_group_is",
    }


def test_a_file_is_the_same_only_with_its_content_owner_group_and_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "worker.toml"
    path.write_text("a = 1\n")
    path.chmod(0o640)
    out = probe(path)
    same = {"owner": OWNER, "group": GROUP, "mode": "0640"}
    assert host_files.host_file_is(out, str(path), content="a = 1\n", **same)
    assert not host_files.host_file_is(out, str(path), content="a = 2\n", **same)
    assert not host_files.host_file_is(out, str(path), content="a = 1", **same)
    assert not host_files.host_file_is(
        out, str(path), content="a = 1\n", **{**same, "mode": "0644"}
    )
    assert not host_files.host_file_is(
        out, str(path), content="a = 1\n", **{**same, "owner": "x"}
    )
    assert not host_files.host_file_is(
        out, str(path), content="a = 1\n", **{**same, "group": "x"}
    )
    # A symbolic mode, or no content to compare, is never "the same": the task runs.
    assert not host_files.host_file_is(
        out, str(path), content="a = 1\n", **{**same, "mode": "u=rw"}
    )
    assert not host_files.host_file_is(out, str(path), **same)
    assert not host_files.host_file_is(out, str(path), state="directory", **same)


def test_bytes_that_are_not_utf8_compare_as_the_file_lookup_reads_them(
    tmp_path: Path,
) -> None:
    # Ansible's file lookup decodes with surrogateescape (a key or certificate of one's own
    # PKI need not be UTF-8): the same bytes are the same file.
    path = tmp_path / "host.key"
    path.write_bytes(b"key \xff\xfe\n")
    path.chmod(0o640)
    out = probe(path)
    read = path.read_bytes().decode("utf-8", "surrogateescape")
    same = {"owner": OWNER, "group": GROUP, "mode": "0640"}
    assert host_files.host_file_is(out, str(path), content=read, **same)
    assert not host_files.host_file_is(out, str(path), content="key \n", **same)


def test_directories_links_and_missing_paths(tmp_path: Path) -> None:
    folder = tmp_path / "conf.d"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    link = tmp_path / "gearjob"
    link.symlink_to("/opt/gearjob/bin/gearjob")
    missing = tmp_path / "gone"
    out = probe(folder, link, missing)
    assert host_files.host_file_is(
        out, str(folder), state="directory", owner=OWNER, mode="0755"
    )
    assert not host_files.host_file_is(out, str(folder), state="directory", mode="0750")
    assert host_files.host_file_is(
        out, str(link), state="link", src="/opt/gearjob/bin/gearjob"
    )
    assert not host_files.host_file_is(out, str(link), state="link", src="/elsewhere")
    assert host_files.host_file_is(out, str(missing), state="absent")
    assert host_files.host_file_exists(out, str(link)) and host_files.host_file_exists(
        out, str(folder)
    )
    assert not host_files.host_file_exists(out, str(missing))
    assert not host_files.host_file_exists(out, str(tmp_path / "not-read"))
    assert not host_files.host_file_is(out, str(missing), content="")
    assert not host_files.host_file_is(out, str(folder), state="absent")
    # A path the probe did not read is not known to be anything.
    assert not host_files.host_file_is(out, str(tmp_path / "other"), state="absent")


def test_odd_names_survive_the_probe(tmp_path: Path) -> None:
    path = tmp_path / "name with spaces and $HOME"
    path.write_text("x\n")
    out = probe(path)
    assert host_files.host_file_is(out, str(path), content="x\n", owner=OWNER)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="absolute paths"):
        host_files.host_files_probe(["relative/path"])
    with pytest.raises(ValueError, match="absolute paths"):
        host_files.host_files_probe("/a/string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state is file, directory, link or absent"):
        host_files.host_file_is("/x\t-\n", "/x", state="present")


def test_units_and_accounts_come_from_the_same_command() -> None:
    me = pwd.getpwuid(os.getuid())
    argv = host_files.host_files_probe(
        ["/"], users=[me.pw_name], groups=[GROUP, "no-such-group-x"]
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert host_files.host_group_is(out, GROUP)
    assert not host_files.host_group_is(out, "no-such-group-x")
    assert host_files.host_user_is(
        out,
        me.pw_name,
        group=GROUP,
        home=me.pw_dir,
        shell=me.pw_shell,
        comment=me.pw_gecos,
    )
    assert not host_files.host_user_is(out, me.pw_name, shell="/bin/false-x")
    assert not host_files.host_user_is(out, "no-such-user-x")


def test_installed_packages_and_their_versions() -> None:
    out = (
        "package\tgearman-job-server\tinstalled\t1.1.20+ds-1+b1\n"
        "package\tgearman-tools\tconfig-files\t1.1.20+ds-1+b1\n"
        "/etc\td\troot\troot\t755\n"
    )
    assert host_files.host_packages(out) == {"gearman-job-server": "1.1.20+ds-1+b1"}
    argv = host_files.host_files_probe(
        [], packages=["gearman-job-server", "libc6:amd64"]
    )
    assert argv[-2:] == ["package:gearman-job-server", "package:libc6:amd64"]
    with pytest.raises(ValueError, match="packages is a list of names"):
        host_files.host_files_probe([], packages=["-x"])


def test_unit_blocks_are_parsed_by_id() -> None:
    out = (
        "/etc\td\troot\troot\t755\n"
        "unit\tId=gearjob-workers.target\nunit\tActiveState=active\nunit\tSubState=active\n"
        "unit\tUnitFileState=enabled\nunit\t\n"
        "unit\tActiveState=active\nunit\tSubState=running\nunit\tUnitFileState=enabled\n"
        "unit\tId=gearjob-worker@1.service\n"
    )
    assert host_files.host_units(out) == {
        "gearjob-workers.target": {
            "Id": "gearjob-workers.target",
            "ActiveState": "active",
            "SubState": "active",
            "UnitFileState": "enabled",
        },
        "gearjob-worker@1.service": {
            "Id": "gearjob-worker@1.service",
            "ActiveState": "active",
            "SubState": "running",
            "UnitFileState": "enabled",
        },
    }
    assert host_files.host_unit_is_up(out, "gearjob-worker@1.service")
    assert not host_files.host_unit_is_up(
        out.replace("=enabled", "=disabled"), "gearjob-worker@1.service"
    )
    assert not host_files.host_unit_is_up(out, "gearjob-worker@2.service")
    with pytest.raises(ValueError, match="units is a list of names"):
        host_files.host_files_probe(["/"], units=["a b; rm -rf /"])
