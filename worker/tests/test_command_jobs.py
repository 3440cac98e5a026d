"""Command jobs and raw Python jobs against a real gearmand and worker subprocesses:
`gearman -w -- CMD` semantics, time limits, output limits, function lists that change."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from daemon_helpers import RawClient, run_cli, subprocess_env, wait_for, workers_for
from test_interop import gearman_tool, needs_gearman_tool, needs_php

from gearjob.command import CommandFailed, CommandRunner, CommandSpec
from gearjob.errors import JobTimeout
from gearjob.runners import Job

pytest_plugins = ["daemon_fixtures"]

#: every byte value, NUL and invalid UTF-8 included
ALL_BYTES = bytes(range(256)) + b"\x00\xff\xfe\xc3\x28 tail\n\x00"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_worker(start_worker, gearmand, *extra: str, **kw):
    return start_worker(gearmand, jobs=None, extra=list(extra), **kw)


def write_commands(path: Path, gearmand, groups: str, **top: object) -> Path:
    lines = [f'servers = ["{gearmand}"]'] + [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    path.write_text("\n".join(lines) + "\n" + groups)
    return path


def script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------- gearman -w semantics


def test_workload_and_result_pass_byte_for_byte(gearmand, start_worker):
    command_worker(start_worker, gearmand, "--exec", "cat", "-f", "cat")
    with RawClient(gearmand.address) as client:
        assert client.run("cat", ALL_BYTES) == ("WORK_COMPLETE", ALL_BYTES)
        assert client.run("cat", b"") == ("WORK_COMPLETE", b"")
        big = os.urandom(3 * 1024 * 1024)  # more than a pipe holds, both ways
        assert client.run("cat", big, timeout=30) == ("WORK_COMPLETE", big)


def test_workloads_around_the_pipe_sizes_while_output_streams_first(gearmand, start_worker):
    # workloads up to PIPE_BUF are written at once, larger ones fed as the command reads;
    # this command writes 200000 bytes (more than its stdout pipe holds) before it reads
    line = "sh -c 'head -c 200000 /dev/zero | tr \"\\0\" y; cat'"
    command_worker(start_worker, gearmand, "--exec", line, "-f", "late_reader")
    head = b"y" * 200_000
    with RawClient(gearmand.address) as client:
        for size in (4095, 4096, 4097, 65536, 65537, 1_000_000):
            workload = os.urandom(size)
            assert client.run("late_reader", workload, timeout=30) == (
                "WORK_COMPLETE",
                head + workload,
            ), size


def test_a_command_that_exits_without_reading_its_workload(gearmand, start_worker):
    worker = command_worker(start_worker, gearmand, "--exec", "echo early", "-f", "early")
    with RawClient(gearmand.address) as client:
        for size in (0, 10, 4096, 4097, 3 * 1024 * 1024):  # small: one write; large: fed
            assert client.run("early", b"x" * size, timeout=30) == ("WORK_COMPLETE", b"early\n")
    assert "Broken pipe" not in worker.log()


def test_commands_get_sigpipe_at_its_default(gearmand, start_worker):
    # Python ignores SIGPIPE; a command must not inherit that (`yes` would then complain)
    worker = command_worker(start_worker, gearmand, "--exec", "sh -c 'yes | head -c 4'", "-f", "y")
    with RawClient(gearmand.address) as client:
        assert client.run("y", b"") == ("WORK_COMPLETE", b"y\ny\n")
    assert "Broken pipe" not in worker.log()


def test_exit_status_and_signals_fail_the_job_and_the_worker_goes_on(gearmand, start_worker):
    worker = command_worker(
        start_worker,
        gearmand,
        "--exec",
        'sh -c \'read code; [ "$code" = kill ] && kill -9 $$; exit "$code"\'',
        "-f",
        "status",
    )
    with RawClient(gearmand.address) as client:
        assert client.run("status", b"0\n") == ("WORK_COMPLETE", b"")
        assert client.run("status", b"3\n") == ("WORK_FAIL", b"")
        assert client.run("status", b"kill\n") == ("WORK_FAIL", b"")
        assert client.run("status", b"0\n") == ("WORK_COMPLETE", b"")
    log = worker.log()
    assert "exited with status 3" in log
    assert "was killed by SIGKILL" in log


def test_environment_names_the_job(gearmand, start_worker):
    line = 'sh -c \'printf "%s|%s|%s" "$GEARJOB_FUNCTION" "$GEARJOB_HANDLE" "$GEARJOB_UNIQUE"\''
    command_worker(start_worker, gearmand, "--exec", line, "-f", "env_job")
    with RawClient(gearmand.address) as client:
        handle = client.submit("env_job", b"", unique=b"my-unique-id")
        cmd, data = client.result()
    assert cmd == "WORK_COMPLETE"
    assert data.decode() == f"env_job|{handle}|my-unique-id"


def test_stderr_is_logged_tagged_and_bounded(gearmand, start_worker):
    worker = command_worker(
        start_worker,
        gearmand,
        "--exec",
        "sh -c 'echo first line >&2; head -c 100000 /dev/zero | tr \"\\0\" x >&2; echo ok'",
        "-f",
        "noisy",
    )
    with RawClient(gearmand.address) as client:
        handle = client.submit("noisy", b"x")
        assert client.result() == ("WORK_COMPLETE", b"ok\n")
    log = worker.wait_log(rf"job noisy {handle} stderr: first line")
    stderr_line = next(line for line in log.splitlines() if "stderr: first line" in line)
    assert len(stderr_line) < 10_000
    assert "more byte(s) dropped" in stderr_line


def test_a_missing_or_not_executable_command_fails_clearly(gearmand, start_worker, tmp_path):
    not_executable = tmp_path / "job.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    config = write_commands(
        tmp_path / "worker.toml",
        gearmand,
        f"""
[commands.missing]
exec = "/nonexistent/drush router"
functions = ["missing_job"]
[commands.noexec]
exec = "{not_executable}"
functions = ["noexec_job"]
[commands.good]
exec = "echo fine"
functions = ["good_job"]
""",
    )
    worker = command_worker(start_worker, gearmand, "--config", str(config))
    log = worker.log()
    assert "/nonexistent/drush is not found" in log
    assert f"{not_executable} is not executable" in log
    with RawClient(gearmand.address) as client:
        assert client.run("missing_job", b"x") == ("WORK_FAIL", b"")
        assert client.run("noexec_job", b"x") == ("WORK_FAIL", b"")
        assert client.run("good_job", b"x") == ("WORK_COMPLETE", b"fine\n")
    worker.wait_log(r"cannot run the command '/nonexistent/drush router'")


# ------------------------------------------------------------------------ limits


def test_timeout_kills_the_process_group_grandchildren_too(gearmand, start_worker, tmp_path):
    pids = tmp_path / "pids"
    inner = script(tmp_path / "inner.sh", f"sleep 301 &\necho $! >> {pids}\nwait\n")
    outer = script(tmp_path / "outer.sh", f"sleep 300 &\necho $! >> {pids}\n{inner} &\nsleep 302\n")
    worker = command_worker(
        start_worker, gearmand, "--exec", str(outer), "-f", "stuck", "--job-timeout", "1"
    )
    with RawClient(gearmand.address) as client:
        assert client.run("stuck", b"x") == ("WORK_FAIL", b"")
    grandchildren = [int(pid) for pid in pids.read_text().split()]
    assert len(grandchildren) == 2
    wait_for(lambda: not any(map(alive, grandchildren)), 3, "the grandchildren to be killed")
    worker.wait_log(r"job stuck H:\S+ failed: job stuck timed out after 1 s")


def test_a_command_that_closes_its_output_is_still_timed(gearmand, start_worker, tmp_path):
    # its output ended, but it runs on: waited for until the deadline, then killed
    pid_file = tmp_path / "pid"
    line = f"sh -c 'echo $$ > {pid_file}; echo out; exec >&- 2>&-; sleep \"$(cat)\"'"
    worker = command_worker(
        start_worker, gearmand, "--exec", line, "-f", "closer", "--job-timeout", "1"
    )
    with RawClient(gearmand.address) as client:
        assert client.run("closer", b"0.3") == ("WORK_COMPLETE", b"out\n")
        assert client.run("closer", b"300") == ("WORK_FAIL", b"")
        pid = int(pid_file.read_text())
        assert client.run("closer", b"0") == ("WORK_COMPLETE", b"out\n")
    assert not alive(pid)
    worker.wait_log(r"job closer H:\S+ failed: job closer timed out after 1 s")


def test_configured_group_timeout_and_output_limit(gearmand, start_worker, tmp_path):
    config = write_commands(
        tmp_path / "worker.toml",
        gearmand,
        """
[commands.limited]
exec = "sh -c 'head -c \\"$(cat)\\" /dev/zero'"
functions = ["zeros"]
max_output = 1000
timeout = 0.5
[commands.slow]
exec = "sleep 5"
functions = ["slow_cmd"]
timeout = 0.5
""",
        job_timeout=60,
    )
    worker = command_worker(start_worker, gearmand, "--config", str(config))
    with RawClient(gearmand.address) as client:
        assert client.run("zeros", b"1000") == ("WORK_COMPLETE", b"\0" * 1000)
        assert client.run("zeros", b"5000000") == ("WORK_FAIL", b"")
        assert client.run("slow_cmd", b"x") == ("WORK_FAIL", b"")
        assert client.run("zeros", b"10") == ("WORK_COMPLETE", b"\0" * 10)
    log = worker.log()
    assert "wrote more than max_output = 1000 bytes to stdout and was killed" in log
    assert "job slow_cmd timed out after 0.5 s" in log


def test_sigterm_lets_the_running_command_finish_and_send_its_result(
    gearmand, start_worker, tmp_path
):
    started = tmp_path / "started"
    worker = command_worker(
        start_worker,
        gearmand,
        "--exec",
        f"sh -c 'touch {started}; sleep 1; echo done'",
        "-f",
        "wait_job",
    )
    with RawClient(gearmand.address) as client:
        client.submit("wait_job", b"x")
        wait_for(started.exists, what="the command to start")
        worker.send(signal.SIGTERM)
        assert client.result() == ("WORK_COMPLETE", b"done\n")
    assert worker.wait() == 0


def test_exit_at_once_kills_the_command_too(gearmand, start_worker, tmp_path):
    pid_file = tmp_path / "pid"
    worker = command_worker(
        start_worker,
        gearmand,
        "--exec",
        f"sh -c 'echo $$ > {pid_file}; exec sleep 300'",
        "-f",
        "wait_job",
    )
    with RawClient(gearmand.address) as client:
        client.submit("wait_job", b"x")
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
        pid = int(pid_file.read_text())
        worker.send(signal.SIGINT)  # (as a second SIGTERM does) exit at once
        assert worker.wait() == 130
    wait_for(lambda: not alive(pid), what="the command to be killed")


# ------------------------------------------------------------ function lists


def test_reload_adds_and_removes_functions_while_a_job_runs(gearmand, start_worker, tmp_path):
    names = tmp_path / "functions"
    names.write_text("slow_one\nold_one\n")
    started = tmp_path / "started"
    line = (
        f"sh -c 'if [ \"$GEARJOB_FUNCTION\" = slow_one ]; then touch {started}; sleep 1; fi; cat'"
    )
    worker = command_worker(
        start_worker, gearmand, "--exec", line, "--functions-from", f"cat {names}"
    )
    address = gearmand.address
    assert workers_for(address, "old_one") == 1
    with RawClient(address) as client:
        client.submit("slow_one", b"in flight")
        wait_for(started.exists, what="the slow job to start")
        names.write_text("slow_one\n\nnew_one\n")
        worker.send(signal.SIGHUP)
        assert client.result() == ("WORK_COMPLETE", b"in flight")
        wait_for(lambda: workers_for(address, "new_one") == 1, what="new_one registered")
        wait_for(lambda: workers_for(address, "old_one") == 0, what="old_one unregistered")
        assert client.run("new_one", b"hello") == ("WORK_COMPLETE", b"hello")
    worker.wait_log(r"reloaded: 2 job\(s\); added: new_one; removed: old_one")


def test_refresh_interval_picks_changes_up_without_a_signal(gearmand, start_worker, tmp_path):
    names = tmp_path / "functions"
    names.write_text("first\n")
    worker = command_worker(
        start_worker,
        gearmand,
        "--exec",
        "cat",
        "--functions-from",
        f"cat {names}",
        "--refresh-interval",
        "0.5",
    )
    names.write_text("first\nsecond\n")
    wait_for(lambda: workers_for(gearmand.address, "second") == 1, what="second registered")
    names.write_text("second\n")
    wait_for(lambda: workers_for(gearmand.address, "first") == 0, what="first unregistered")
    with RawClient(gearmand.address) as client:
        assert client.run("second", b"2") == ("WORK_COMPLETE", b"2")
    worker.wait_log(r"function list changed: added: none; removed: first")


def test_failing_or_garbage_list_command_keeps_the_last_good_list(gearmand, start_worker, tmp_path):
    names = tmp_path / "functions"
    names.write_bytes(b"kept_one\n")
    lister = script(tmp_path / "list.sh", f"[ -e {tmp_path}/broken ] && exit 7\ncat {names}\n")
    worker = command_worker(
        start_worker, gearmand, "--exec", "cat", "--functions-from", str(lister)
    )
    address = gearmand.address
    (tmp_path / "broken").touch()
    worker.send(signal.SIGHUP)
    worker.wait_log(r"list command .* exited with status 7; keeping the last good list \(1 ")
    (tmp_path / "broken").unlink()
    names.write_bytes(b"\xff\xfe not utf-8\n")
    worker.send(signal.SIGHUP)
    worker.wait_log(r"printed bytes that are not UTF-8 .*; keeping the last good list")
    names.write_bytes(b"PHP Notice: something\n")
    worker.send(signal.SIGHUP)
    worker.wait_log(r"printed no valid function name; keeping the last good list")
    assert workers_for(address, "kept_one") == 1
    with RawClient(address) as client:
        assert client.run("kept_one", b"k") == ("WORK_COMPLETE", b"k")
    names.write_bytes(b"kept_one\nnot a name!\nadded_one\n")
    worker.send(signal.SIGHUP)
    wait_for(lambda: workers_for(address, "added_one") == 1, what="added_one registered")
    assert "skipping invalid job name 'not a name!'" in worker.log()
    assert workers_for(address, "kept_one") == 1


def test_a_list_command_failing_at_start_leaves_the_other_jobs_served(
    gearmand, start_worker, tmp_path
):
    worker = start_worker(
        gearmand,
        extra=["--exec", "cat", "--functions-from", "false"],
        jobs={"hello": "sample_jobs:hello_world"},
    )
    assert "keeping the last good list (none function(s))" in worker.log()
    with RawClient(gearmand.address) as client:
        assert client.run("hello", b'{"args":["Danny"]}') == ("WORK_COMPLETE", b"Hello Danny")


# ----------------------------------------------------------- configuration, listing


def test_several_groups_beside_python_jobs(gearmand, start_worker, tmp_path):
    workdir = tmp_path / "site"
    workdir.mkdir()
    config = write_commands(
        tmp_path / "worker.toml",
        gearmand,
        f"""
[jobs]
hello = "sample_jobs:hello_world"
[raw_jobs]
reverse = "raw_jobs:raw_reverse"
[commands.pwd]
exec = "pwd"
functions = ["where"]
cwd = "{workdir}"
[commands.shell]
exec = "echo $GREETING | tr a-z A-Z"
shell = true
env = {{ GREETING = "hi there" }}
functions_from = "echo shout"
""",
    )
    command_worker(start_worker, gearmand, "--config", str(config))
    with RawClient(gearmand.address) as client:
        assert client.run("hello", b'{"args":["D"]}') == ("WORK_COMPLETE", b"Hello D")
        assert client.run("reverse", b"\x00ab\xff") == ("WORK_COMPLETE", b"\xffba\x00")
        assert client.run("where", b"x") == ("WORK_COMPLETE", f"{workdir}\n".encode())
        assert client.run("shout", b"x") == ("WORK_COMPLETE", b"HI THERE\n")
    done = run_cli("jobs", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["jobs"]}
    assert rows["where"]["origin"] == f"{config} [commands.pwd]"
    assert rows["where"]["target"] == "command 'pwd'"
    assert rows["shout"]["origin"] == f"{config} [commands.shell] functions_from"
    assert rows["reverse"]["raw"] is True
    text = run_cli("jobs", "--config", str(config)).stdout
    assert "reverse  raw_jobs:raw_reverse (raw)" in text


def test_raw_jobs_serve_any_producer(gearmand, start_worker):
    worker = start_worker(
        gearmand,
        jobs=None,
        extra=["--raw-job", "text=raw_jobs:raw_text", "--raw-job", "bad=raw_jobs:raw_bad"],
    )
    with RawClient(gearmand.address) as client:
        assert client.run("text", b"\x00\xff") == ("WORK_COMPLETE", b"2 bytes")
        assert client.run("bad", b"x") == ("WORK_FAIL", b"")
    worker.wait_log(r"returned a int; a raw job returns bytes or str")


def test_bad_command_configuration_is_refused_with_its_key(gearmand, tmp_path):
    env = subprocess_env()
    for groups, message in (
        ('[commands.a]\nexec = "x"\n', "[commands.a] serves no function"),
        ('[commands.a]\nexec = "x \'unclosed"\nfunctions=["a"]\n', "commands.a.exec"),
        ('[commands.a]\nexec = "x"\nfunctions=["a"]\ntimeout = "1"\n', "commands.a.timeout"),
        ('[commands.a]\nexec = "x"\nfunctions=["a"]\nbogus = 1\n', "'commands.a.bogus'"),
    ):
        config = write_commands(tmp_path / "worker.toml", gearmand, groups)
        done = run_cli("worker", "--config", str(config), env=env, timeout=20)
        assert done.returncode == 3, done.stderr
        assert message in done.stderr
    done = run_cli("worker", "--server", str(gearmand), "-f", "x", env=env)
    assert done.returncode == 3 and "add it" in done.stderr
    done = run_cli("worker", "--server", str(gearmand), "--exec", "cat", env=env)
    assert done.returncode == 3 and "serves no function" in done.stderr


# ------------------------------------------------------------------- interop


@needs_gearman_tool
def test_c_gearman_tool_against_command_jobs(gearmand, start_worker):
    command_worker(start_worker, gearmand, "--exec", "tr a-z A-Z", "-f", "upper", "-f", "fail")
    done = gearman_tool(gearmand.port, "-f", "upper", "Danny", stdin="")
    assert (done.returncode, done.stdout) == (0, "DANNY")
    done = gearman_tool(gearmand.port, "-f", "upper", stdin="from stdin\n")
    assert (done.returncode, done.stdout) == (0, "FROM STDIN\n")


PHP_DO_NORMAL = r"""<?php
$client = new GearmanClient();
$client->addServer("127.0.0.1", (int)$argv[1]);
$client->setTimeout(20000);
$out = [];
foreach ([["upper", "Hello \u{2603}"], ["boom", "x"]] as [$f, $w]) {
    $r = $client->doNormal($f, $w);
    $out[] = [$r, $client->returnCode() == GEARMAN_SUCCESS];
}
echo json_encode($out);
"""


@needs_php
def test_php_do_normal_against_command_jobs(gearmand, start_worker, tmp_path):
    config = write_commands(
        tmp_path / "worker.toml",
        gearmand,
        '[commands.up]\nexec = "tr a-z A-Z"\nfunctions = ["upper"]\n'
        '[commands.boom]\nexec = "false"\nfunctions = ["boom"]\n',
    )
    command_worker(start_worker, gearmand, "--config", str(config))
    php = tmp_path / "client.php"
    php.write_text(PHP_DO_NORMAL)
    done = subprocess.run(
        ["php", str(php), str(gearmand.port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["HELLO \u2603", True], ["", False]]


def test_module_docstring_mentions_every_group_key():
    from gearjob import catalog

    for key in catalog._GROUP_KEYS:
        assert f"{key} =" in (catalog.__doc__ or ""), key


def test_jobs_no_functions_from_does_not_run_the_list_commands(gearmand, tmp_path):
    ran = tmp_path / "ran"
    config = write_commands(
        tmp_path / "worker.toml",
        gearmand,
        f'[commands.site]\nexec = "cat"\nfunctions_from = "touch {ran}"\n',
    )
    done = run_cli("jobs", "--config", str(config), "--no-functions-from")
    assert done.returncode == 0, done.stderr
    assert "(not run)" in done.stdout
    assert not ran.exists()
    done = run_cli("jobs", "--config", str(config))
    assert ran.exists()
    assert done.returncode == 0, done.stderr  # an empty list: a warning, not an error


def test_the_configuration_examples_of_the_docs_are_valid():
    import re

    import tomllib

    from gearjob.catalog import parse_groups
    from gearjob.config import _settings_from

    page = Path(__file__).resolve().parents[2] / "docs" / "command-jobs.md"
    blocks = re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 2
    groups = []
    for block in blocks:
        settings = _settings_from(tomllib.loads(block), "docs/command-jobs.md")
        groups += parse_groups(settings.commands, "docs/command-jobs.md")
    assert {g.name for g in groups} == {"drupal", "thumbnails"}


# ---------------------------------------------- the runner alone (no server, no worker)


def run_command(line: str, workload: bytes = b"", limit: float = 0.0, **spec) -> bytes:
    runner = CommandRunner(CommandSpec(line, **spec), "test")
    return runner.run(Job("f", "H:test:1", b"", workload, limit), lambda *a: None)


def test_without_pidfds_the_exit_is_still_waited_for_within_the_limit(monkeypatch):
    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    closer = "sh -c 'echo out; exec >&- 2>&-; sleep \"$(cat)\"'"
    assert run_command(closer, b"0.2", limit=5) == b"out\n"
    with pytest.raises(JobTimeout, match=r"timed out after 0\.5 s"):
        run_command(closer, b"30", limit=0.5, kill_grace=0.5)


def test_a_program_that_moved_is_looked_up_again(monkeypatch, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    script(first / "moving-job", "echo here\n")
    monkeypatch.setenv("PATH", f"{first}:{second}:{os.environ['PATH']}")
    runner = CommandRunner(CommandSpec("moving-job"), "test")
    job = Job("f", "H:test:1", b"", b"", 0.0)
    assert runner.run(job, lambda *a: None) == b"here\n"
    (first / "moving-job").rename(second / "moving-job")
    assert runner.run(job, lambda *a: None) == b"here\n"
    (second / "moving-job").unlink()
    with pytest.raises(CommandFailed, match="moving-job is not found"):
        runner.run(job, lambda *a: None)


def test_the_working_directory_path_keeps_the_same_semantics(tmp_path):
    (tmp_path / "data").write_bytes(b"in cwd")
    assert run_command("sh -c 'cat data; cat'", b"+stdin", cwd=str(tmp_path)) == b"in cwd+stdin"
    with pytest.raises(CommandFailed, match="exited with status 4"):
        run_command("sh -c 'exit 4'", cwd=str(tmp_path))
    with pytest.raises(JobTimeout):
        run_command("sleep 30", limit=0.3, cwd=str(tmp_path), kill_grace=0.2)
