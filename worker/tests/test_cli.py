"""The `gearjob` command: help, argument parsing, submit, batch, status, check, exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from daemon_helpers import (
    run_cli,
    subprocess_env,
    write_config,
)

from gearjob import cli
from gearjob.client import Client

pytest_plugins = ["daemon_fixtures"]


@pytest.fixture
def silent_server():
    """host:port of a socket that accepts connections and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def served(gearmand, start_worker):
    """A gearmand with a gearjob worker serving the sample jobs."""
    start_worker(gearmand)
    return gearmand


# ----------------------------------------------------------------------------- parsing, help


def test_help_documents_every_command_and_the_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("worker", "submit", "batch", "status", "jobs", "check", "clear", "metrics"):
        assert command in out
    for line in (
        "0  success",
        "1  a job failed",
        "2  usage error",
        "3  configuration or job registry error",
        "4  a job server is unavailable",
        "5  a job timed out",
    ):
        assert line in out


@pytest.mark.parametrize(
    "command", ["worker", "submit", "batch", "status", "jobs", "check", "clear", "metrics"]
)
def test_every_command_has_help_with_an_example(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  gearjob " + command in out
    assert "exit codes:" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["submit"],
        ["worker", "--max-jobs", "-1"],
        ["worker", "--job-timeout", "x"],
        ["check", "--server", "host:99999"],
        ["--server", "[::1", "check"],
        ["clear"],
        ["clear", "--all", "--function", "x"],
        ["status", "--db", "--no-db"],
        ["metrics", "--listen", "9731"],
        ["metrics", "--listen", "host:99999"],
        # values that used to give a traceback, or to be accepted and fail every job
        ["submit", "--timeout=1e308", "hello"],
        ["worker", "--job-timeout", "1e20"],
        ["submit", "bad name"],
        ["submit", ""],
        ["submit", "a" * 1000],
        ["submit", "--server", "h" * 300 + ":4730", "hello"],
        ["check", "--server", "::1:47301"],
        ["check", "--server", "a:b:c"],
        ["check", "--server", "a:1,b:2"],
        ["check", "--server", "a:\uff14\uff17\uff13\uff10"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_global_options_work_before_and_after_the_command():
    parser = cli.build_parser()
    before = parser.parse_args(["--server", "a:1", "--log-level", "debug", "check"])
    after = parser.parse_args(["check", "--server", "a:1", "--log-level", "debug"])
    assert before.server == after.server == ["a:1"]
    assert before.log_level == after.log_level == "debug"
    assert parser.parse_args(["check"]).server is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-1.5", -1.5),
        ("true", True),
        ("null", None),
        ('{"a": [1]}', {"a": [1]}),
        ('"quoted"', "quoted"),
        ("Danny", "Danny"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("{broken", "{broken"),
        ("", ""),
    ],
)
def test_submit_arguments_are_json_else_strings(text, value):
    assert cli._parse_arg(text) == value


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("gearjob ")


# ----------------------------------------------------------------------------- submit


def test_submit_prints_strings_as_is_and_other_values_as_json(served):
    done = run_cli("submit", "--server", str(served), "hello", "Dänny")
    assert (done.returncode, done.stdout) == (0, "Hello Dänny\n")
    done = run_cli("--server", str(served), "submit", "echo", "1", '{"a": null}', "-2", "x y")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"args": [1, {"a": None}, -2, "x y"], "kwargs": {}}
    done = run_cli("--server", str(served), "submit", "each_type", "none")
    assert (done.returncode, done.stdout) == (0, "null\n")


def test_submit_exit_codes_for_failure_timeouts_and_unavailable_servers(gearmand, start_worker):
    start_worker(gearmand, extra=["--job-timeout", "0.3"])
    server = ["--server", str(gearmand)]
    done = run_cli("submit", *server, "failing", "kaputt")
    assert done.returncode == 1
    assert "failed: ValueError: kaputt" in done.stderr
    done = run_cli("submit", *server, "slow", "30")  # the worker's limit
    assert done.returncode == 5
    assert "timed out after 0.3 s" in done.stderr
    done = run_cli("submit", *server, "--timeout", "0.2", "nobody_serves_this")  # the client's
    assert done.returncode == 5
    assert "did not finish within 0.2 s" in done.stderr
    done = run_cli("submit", "--server", "127.0.0.1:1", "hello", "x")
    assert done.returncode == 4
    assert "127.0.0.1:1" in done.stderr and "refused" in done.stderr


def test_submit_background_prints_the_handle(served):
    done = run_cli(
        "submit", "--server", str(served), "--background", "--priority", "low", "hello", "bg"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("H:")


def test_client_commands_read_the_client_config(served, tmp_path):
    config = write_config(tmp_path / "client.toml", [str(served)], {})
    done = run_cli("submit", "--config", str(config), "hello", "config")
    assert (done.returncode, done.stdout) == (0, "Hello config\n")
    env = subprocess_env(GEARJOB_CONFIG=str(config))
    assert run_cli("submit", "hello", "env", env=env).stdout == "Hello env\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('servers = ["127.0.0.1:1"]\ncolour = "blue"\n')
    done = run_cli("submit", "--config", str(bad), "hello", "x")
    assert done.returncode == 3
    assert "unknown key 'colour'" in done.stderr


# ----------------------------------------------------------------------------- batch


def test_batch_prints_a_line_per_job_in_order_and_exits_1_if_one_failed(served, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"job_name": "hello", "args": ["a"]}\n'
        "\n"
        '{"job_name": "failing", "args": ["b"]}\n'
        '{"job_name": "each_type", "args": ["dict"]}\n'
    )
    done = run_cli("batch", "--server", str(served), str(jobs))
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["line"], x["job_name"], x["ok"]) for x in lines] == [
        (1, "hello", True),
        (3, "failing", False),
        (4, "each_type", True),
    ]
    assert lines[0]["result"] == "Hello a"
    assert "ValueError: b" in lines[1]["error"]
    assert lines[2]["result"] == {"a": 1, "b": [True, None]}
    assert "3 job(s), 2 ok, 1 failed" in done.stderr
    assert "\r[" not in done.stderr  # no progress bar when stderr is not a terminal


def test_batch_from_stdin_all_ok_exits_0(served):
    stdin = "".join(json.dumps({"job_name": "hello", "args": [str(i)]}) + "\n" for i in range(20))
    done = run_cli("batch", "--server", str(served), "-", stdin=stdin)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line)["result"] for line in done.stdout.splitlines()]
    assert results == [f"Hello {i}" for i in range(20)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "stdin line 2: not valid JSON"),
        ("[1]", "stdin line 2: a JSON list"),
        ('{"args": []}', 'stdin line 2: missing or empty "job_name"'),
        ('{"job_name": "x", "args": "a"}', 'stdin line 2: "args" must be a list'),
        ('{"job_name": "x", "argz": []}', "stdin line 2: unknown key(s) argz"),
        ('{"job_name": "bad name"}', "stdin line 2: job name 'bad name' is invalid"),
    ],
)
def test_batch_bad_lines_exit_2_naming_the_line(line, message):
    stdin = '{"job_name": "hello", "args": ["a"]}\n' + line + "\n"
    done = run_cli("batch", "--server", "127.0.0.1:1", "-", stdin=stdin)
    assert done.returncode == 2
    assert message in done.stderr


def test_batch_missing_file_exits_2(tmp_path):
    done = run_cli("batch", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert "cannot read batch file" in done.stderr


def test_batch_shows_a_progress_bar_on_a_terminal(served, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join('{"job_name": "hello", "args": ["p"]}\n' for _ in range(5)))
    master, slave = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gearjob", "batch", "--server", str(served), str(jobs)],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=subprocess_env(),
            timeout=30,
            check=False,
        )
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"\r[" in err and b"5/5 done, 0 failed" in err


# ----------------------------------------------------------------------------- status, check


def test_status_shows_queued_running_waiting_and_workers(served, gearmand_factory):
    other = gearmand_factory()
    with Client([other.address]) as client:
        for i in range(3):
            client.submit_background("nobody_serves_this", i)
    done = run_cli("status", "--server", str(served), "--server", str(other), "--no-db")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS", "WAITING"]
    assert [str(served), "hello", "0", "0", "1", "0"] in rows
    assert [str(other), "nobody_serves_this", "3", "0", "0", "3"] in rows
    assert "total: 3 queued (3 waiting for a worker), 0 running on 2 of 2 server(s)" in done.stdout


def test_status_json_and_an_unreachable_server_exits_4_listing_the_others(served):
    done = run_cli("status", "--json", "--server", str(served), "--server", "127.0.0.1:1")
    assert done.returncode == 4
    report = json.loads(done.stdout)
    assert set(report) == {"servers", "totals", "persistent_queue"}
    hello = next(f for f in report["servers"][0]["functions"] if f["function"] == "hello")
    assert hello == {"function": "hello", "queued": 0, "running": 0, "workers": 1, "waiting": 0}
    assert report["servers"][0]["ok"] is True
    assert report["servers"][1] == {
        "server": "127.0.0.1:1",
        "ok": False,
        "error": "127.0.0.1:1: connection refused",
    }
    assert report["totals"] == {"queued": 0, "running": 0, "waiting": 0}
    assert report["persistent_queue"] is None

    done = run_cli("status", "--server", "127.0.0.1:1", "--server", str(served))
    assert done.returncode == 4
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["127.0.0.1:1", "UNAVAILABLE"] in rows
    assert [str(served), "hello", "0", "0", "1", "0"] in rows
    assert "gearjob: 127.0.0.1:1 unavailable: connection refused" in done.stderr
    assert "on 1 of 2 server(s)" in done.stdout


def test_status_gives_up_on_a_silent_server_after_the_timeout(served, silent_server):
    done = run_cli("status", "--timeout", "0.3", "--server", silent_server, "--server", str(served))
    assert done.returncode == 4
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [silent_server, "UNAVAILABLE"] in rows
    assert [str(served), "hello", "0", "0", "1", "0"] in rows
    assert f"gearjob: {silent_server} unavailable: " in done.stderr


def test_status_shows_the_persistent_queue_of_a_queue_config(gearmand_factory, tmp_path):
    path = tmp_path / "q.sqlite3"
    server = gearmand_factory("-q", "libsqlite3", f"--libsqlite3-db={path}")
    with Client([server.address]) as client:
        client.submit_background("fn_a", 1)
        client.submit_background("fn_a", 2)
        client.submit_background("fn_a", 3, delay=600)  # scheduled: not due yet
    config = tmp_path / "queue.toml"
    config.write_text(f'type = "sqlite"\nserver = "{server}"\n[sqlite]\npath = "{path}"\n')
    done = run_cli("status", "--server", str(server), "--queue-config", str(config))
    assert done.returncode == 0, done.stderr
    tail = done.stdout.split("\n\n", 1)[1]
    assert tail.splitlines() == [
        f"persistent queue of {server} (sqlite {path}, table gearman_queue): 3 row(s)",
        "FUNCTION  ROWS  SCHEDULED",
        "fn_a         3          1",
    ]
    config.write_text('type = "memory"\n')
    done = run_cli("status", "--server", str(server), "--queue-config", str(config))
    assert "persistent queue of 127.0.0.1:4730: memory (no table" in done.stdout
    config.write_text(f'type = "sqlite"\n[sqlite]\npath = "{tmp_path / "nope"}"\n')
    done = run_cli("status", "--server", str(server), "--queue-config", str(config), "--json")
    assert done.returncode == 4
    persistent = json.loads(done.stdout)["persistent_queue"]
    assert persistent["ok"] is False and "does not exist" in persistent["error"]


def test_status_db_without_a_queue_config_exits_3(tmp_path, monkeypatch, capsys):
    from gearjob import queue

    monkeypatch.setattr(queue, "QUEUE_CONFIG", str(tmp_path / "absent.toml"))
    assert cli.main(["status", "--db", "--server", "127.0.0.1:1"]) == 3
    assert "no queue configuration: " in capsys.readouterr().err


def test_status_skips_an_unreadable_default_queue_config(served, tmp_path, monkeypatch, capsys):
    from gearjob import queue

    broken = tmp_path / "queue.toml"
    broken.write_text("type = ")
    monkeypatch.setattr(queue, "QUEUE_CONFIG", str(broken))
    assert cli.main(["status", "--server", str(served)]) == 0
    captured = capsys.readouterr()
    assert "not showing the persistent queue" in captured.err and "not valid TOML" in captured.err
    assert "persistent queue of" not in captured.out
    assert cli.main(["status", "--db", "--server", str(served)]) == 3  # asked for: an error


def test_check_exits_0_when_every_server_answers_and_4_otherwise(gearmand_factory):
    one, two = gearmand_factory(), gearmand_factory()
    done = run_cli("check", "--server", str(one), "--server", str(two))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{one}: ok, gearmand 1.")
    assert lines[1].startswith(f"{two}: ok, gearmand 1.")
    two.stop()
    done = run_cli("check", "--server", str(one), "--server", str(two))
    assert done.returncode == 4
    assert f"{two}: UNAVAILABLE: connection refused" in done.stdout
    assert "1 of 2 server(s) unavailable" in done.stderr


def test_check_reads_the_worker_config_or_with_client_the_client_config(gearmand, tmp_path):
    worker_toml = write_config(tmp_path / "worker.toml", [str(gearmand)], {})
    assert run_cli("check", "--config", str(worker_toml)).returncode == 0
    assert run_cli("check", "--client", "--config", str(worker_toml)).returncode == 0
    env = subprocess_env(GEARJOB_SERVERS="127.0.0.1:1")
    assert run_cli("check", "--config", str(worker_toml), env=env).returncode == 4


def test_log_lines_show_control_characters_escaped() -> None:
    formatter = cli.OneLineFormatter("%(levelname)s %(message)s", journal=True)
    record = logging.LogRecord(
        "gearjob.worker", logging.ERROR, __file__, 1, "job %s failed", ("a\rb\x1b[2J\tc\nd",), None
    )
    assert formatter.format(record) == "<3>ERROR job a\\x0db\\x1b[2J\tc | d failed"
