"""The worker daemon as a real subprocess (`python -m gearjob worker`) against real gearmand."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import (
    JOBS,
    RawClient,
    envelope,
    queued,
    subprocess_env,
    wait_for,
    workers_for,
    write_config,
)

from gearjob import Client, JobFailed, payload

pytest_plugins = ["daemon_fixtures"]


def start_slow_job(
    client: RawClient, tmp_path: Path, seconds: float, *, background: bool = False
) -> None:
    """Submit the slow job and wait until the worker runs it."""
    started = tmp_path / "started"
    started.unlink(missing_ok=True)
    workload = envelope("slow", seconds, str(started))
    if background:
        client.submit_background("slow", workload)
    else:
        client.submit("slow", workload)
    wait_for(started.exists, what="the job to start")


def run(server: Any, function: str, workload: bytes, **kw: Any) -> tuple[str, bytes]:
    with RawClient(server.address, **kw) as client:
        return client.run(function, workload)


# ----------------------------------------------------------------------------- results


def test_islandora_client_gets_strings_as_is_and_other_values_as_json(gearmand, start_worker):
    start_worker(gearmand)
    assert run(gearmand, "hello", envelope("hello", "Danny")) == ("WORK_COMPLETE", b"Hello Danny")
    expected = {
        "str": "text é ☃".encode(),
        "int": b"42",
        "float": b"1.5",
        "true": b"true",
        "none": b"",
        "list": b'[1,"two",null]',
        "dict": b'{"a":1,"b":[true,null]}',
        "bytes": b"\x00\xffraw",
    }
    with RawClient(gearmand.address) as client:
        for kind, data in expected.items():
            assert client.run("each_type", envelope("each_type", kind)) == ("WORK_COMPLETE", data)


def test_gearjob_client_gets_every_result_as_json(gearmand, start_worker):
    start_worker(gearmand)
    with RawClient(gearmand.address, exceptions=True) as client:
        expected = {
            "str": "text é ☃",
            "int": 42,
            "none": None,
            "list": [1, "two", None],
            "dict": {"a": 1, "b": [True, None]},
            "false": False,
        }
        for kind, value in expected.items():
            cmd, data = client.run("each_type", envelope("each_type", kind, gearjob=True))
            assert cmd == "WORK_COMPLETE", (kind, data)
            assert data.isascii()
            assert payload.decode_result(data) == value
        # bytes have no JSON form: the job fails and says why
        cmd, data = client.run("each_type", envelope("each_type", "bytes", gearjob=True))
        assert cmd == "WORK_EXCEPTION"
        assert "bytes" in payload.decode_exception(data)[1]


def test_object_args_become_keyword_arguments(gearmand, start_worker):
    start_worker(gearmand)
    workload = json.dumps({"func": "echo", "args": {"a": 1, "b": ["x"]}}).encode()
    cmd, data = run(gearmand, "echo", workload)
    assert cmd == "WORK_COMPLETE"
    assert json.loads(data) == {"args": [], "kwargs": {"a": 1, "b": ["x"]}}


def test_unicode_round_trip_escaped_and_raw(gearmand, start_worker):
    start_worker(gearmand)
    name = "Dänny ☃ 𝄞 \u0000 end"
    escaped = json.dumps({"func": "hello", "args": [name]}).encode()  # \uXXXX, surrogates
    raw = json.dumps({"func": "hello", "args": [name]}, ensure_ascii=False).encode()
    assert b"\\ud834\\udd1e" in escaped
    for workload in (escaped, raw):
        assert run(gearmand, "hello", workload) == (
            "WORK_COMPLETE",
            ("Hello " + name).encode(),
        )


def test_ten_megabyte_payload_and_result(gearmand, start_worker):
    start_worker(gearmand)
    size = 10 * 1024 * 1024
    text = "é" * (size // 2)  # 10 MiB of UTF-8
    assert run(gearmand, "length", envelope("length", text)) == (
        "WORK_COMPLETE",
        str(size // 2).encode(),
    )
    cmd, data = run(gearmand, "big", envelope("big", size))
    assert cmd == "WORK_COMPLETE"
    assert len(data) == size
    assert data == b"x" * size


# ----------------------------------------------------------------------------- failures


def test_raising_job_fails_for_every_kind_of_client_and_the_worker_goes_on(gearmand, start_worker):
    worker = start_worker(gearmand)
    # Islandora/PHP-style workload: WORK_FAIL (gearmand turns nothing else into a hang)
    assert run(gearmand, "failing", envelope("failing", "boom")) == ("WORK_FAIL", b"")
    # gearjob client with the exceptions option: the exception's type and message
    cmd, data = run(gearmand, "failing", envelope("failing", "bang", gearjob=True), exceptions=True)
    assert cmd == "WORK_EXCEPTION"
    assert payload.decode_exception(data) == ("ValueError", "bang")
    # gearjob workload, client without the option: gearmand turns it into WORK_FAIL
    assert run(gearmand, "failing", envelope("failing", "x", gearjob=True)) == ("WORK_FAIL", b"")
    assert run(gearmand, "hello", envelope("hello", "again")) == ("WORK_COMPLETE", b"Hello again")
    log = worker.log()
    assert "job failing H:" in log and "ValueError: bang" in log
    assert "Traceback" in log and "sample_jobs.py" in log  # the traceback, on the same line
    assert not [line for line in log.splitlines() if line.startswith("  File")]
    assert "answered ERROR" not in log  # gearmand's JOB_NOT_FOUND after WORK_EXCEPTION is expected


def test_sys_exit_and_unserializable_results_fail_the_job_not_the_worker(gearmand, start_worker):
    worker = start_worker(gearmand)
    with RawClient(gearmand.address, exceptions=True) as client:
        cmd, data = client.run("exits", envelope("exits", gearjob=True))
        assert (cmd, payload.decode_exception(data)) == ("WORK_EXCEPTION", ("SystemExit", "3"))
        cmd, data = client.run("unserializable", envelope("unserializable", gearjob=True))
        assert cmd == "WORK_EXCEPTION"
        exc_type, message = payload.decode_exception(data)
        assert exc_type == "gearjob.errors.PayloadError"
        assert "job unserializable: result (set) cannot be sent" in message
        assert client.run("hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
    assert worker.proc is not None and worker.proc.poll() is None


BAD_WORKLOADS = [
    (b"not json", "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid UTF-8"),
    (b"[1, 2]", "is a JSON array"),
    (b'"just a string"', "is a JSON string"),
    (b'{"args": 5}', '"args" is a JSON number'),
    (b"[" * 3000 + b"]" * 3000, "nested deeper than 100 levels"),
    (b'{"args": ["a", "b", "c"]}', "do not fit hello_world(name"),
    (b'{"args": {"nope": 1}}', "{'nope': 1} do not fit hello_world"),
    (b'{"func": "echo", "args": ["Danny"]}', "names another job in its envelope: func = 'echo'"),
]


def test_bad_workloads_fail_with_a_clear_message_and_the_worker_goes_on(gearmand, start_worker):
    worker = start_worker(gearmand)
    with RawClient(gearmand.address) as client:
        for workload, message in BAD_WORKLOADS:
            assert client.run("hello", workload) == ("WORK_FAIL", b""), workload[:40]
            assert message in worker.wait_log("failed"), message
            assert client.run("hello", envelope("hello", "ok")) == ("WORK_COMPLETE", b"Hello ok")
    # the same failures reach a gearjob client as exceptions with the message
    with RawClient(gearmand.address, exceptions=True) as client:
        cmd, data = client.run("hello", b'{"args": ["a", "b"], "gearjob": 1}')
        assert cmd == "WORK_EXCEPTION"
        exc_type, message = payload.decode_exception(data)
        assert exc_type == "gearjob.worker.BadArguments"
        assert "do not fit hello_world" in message


def test_a_job_is_never_run_with_another_jobs_envelope(gearmand, start_worker, tmp_path):
    start_worker(gearmand)
    marker = tmp_path / "ran"
    assert run(gearmand, "touch", envelope("hello", str(marker))) == ("WORK_FAIL", b"")
    assert not marker.exists()
    assert run(gearmand, "touch", envelope("touch", str(marker))) == (
        "WORK_COMPLETE",
        str(marker).encode(),
    )
    assert marker.exists()


def test_oversize_workload_fails_that_job_and_the_worker_keeps_serving(
    gearmand_factory, start_worker, tmp_path
):
    # --job-retries 0 retries forever: a worker that dropped its connection on the oversize
    # job would get it back again and again
    server = gearmand_factory("--job-retries=0")
    config = write_config(tmp_path / "worker.toml", [str(server)], JOBS, max_packet_size=65536)
    worker = start_worker(extra=["--config", str(config)], jobs=None)
    big = "x" * 300_000
    with RawClient(server.address) as client:  # Islandora's PHP client: WORK_FAIL only
        assert client.run("length", envelope("length", big)) == ("WORK_FAIL", b"")
        assert client.run("length", envelope("length", "abc")) == ("WORK_COMPLETE", b"3")
    with Client([server.address], timeout=15) as client:
        with pytest.raises(JobFailed) as info:
            client.submit("length", big)
        assert client.submit("length", "abcd") == 4
    assert info.value.exc_type == "gearjob.errors.PayloadError"
    assert re.search(
        r"job length was not run: its packet is 3000\d\d bytes, more than this worker's "
        r"max_packet_size of 65536 bytes; raise max_packet_size",
        info.value.message,
    ), info.value.message
    log = worker.log()
    assert log.count("was not run: its packet is") == 2, log
    assert "connection lost" not in log and "connected to" in log and "reconnected" not in log
    assert worker.proc is not None and worker.proc.poll() is None
    assert queued(server.address, "length") == 0


def test_unknown_envelope_fields_are_logged_not_fatal(gearmand, start_worker):
    worker = start_worker(gearmand)
    workload = envelope("hello", "Danny", priority="high", trace_id="abc")
    assert run(gearmand, "hello", workload) == ("WORK_COMPLETE", b"Hello Danny")
    assert "ignoring unknown envelope field(s) priority, trace_id" in worker.log()


def test_unknown_job_name_fails_with_a_clear_message():
    from gearjob.catalog import Catalog
    from gearjob.config import Settings
    from gearjob.registry import Registry
    from gearjob.worker import Worker

    worker = Worker(Settings(), Catalog(Registry()))
    try:
        assert "job gone is not registered on this worker" in str(worker._unknown("gone"))
        assert worker.registry.get("gone") is None
    finally:
        worker.close()


# ----------------------------------------------------------------------------- timeouts


def test_job_timeout_fails_the_job_and_the_worker_goes_on(gearmand, start_worker):
    worker = start_worker(gearmand, extra=["--job-timeout", "0.5"])
    with RawClient(gearmand.address, exceptions=True) as client:
        cmd, data = client.run("slow", envelope("slow", 30, gearjob=True))
        assert cmd == "WORK_EXCEPTION"
        assert payload.decode_exception(data) == (
            "gearjob.errors.JobTimeout",
            "job slow timed out after 0.5 s",
        )
        # a job that swallows the timeout exception still times out
        cmd, data = client.run("stubborn", envelope("stubborn", 1.2, gearjob=True))
        assert cmd == "WORK_EXCEPTION"
        assert payload.decode_exception(data)[0] == "gearjob.errors.JobTimeout"
        assert client.run("hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
    assert run(gearmand, "slow", envelope("slow", 30)) == ("WORK_FAIL", b"")
    assert "job slow H:" in worker.log() and "timed out after 0.5 s" in worker.log()


def test_per_job_timeouts_from_the_config(gearmand, start_worker, tmp_path):
    config = write_config(tmp_path / "worker.toml", [str(gearmand)], JOBS)
    with config.open("a") as fh:
        fh.write("[job_timeouts]\nslow = 0.3\n")
    start_worker(extra=["--config", str(config)], jobs=None)
    with RawClient(gearmand.address, exceptions=True) as client:
        cmd, data = client.run("slow", envelope("slow", 30, gearjob=True))
        assert payload.decode_exception(data)[1] == "job slow timed out after 0.3 s"
        cmd, data = client.run("slow", envelope("slow", 0.01, gearjob=True))
        assert cmd == "WORK_COMPLETE"


# ----------------------------------------------------------------------------- lifecycle


def test_max_jobs_exits_0_after_n_jobs(gearmand, start_worker):
    worker = start_worker(gearmand, extra=["--max-jobs", "2"])
    with RawClient(gearmand.address) as client:
        assert client.run("hello", envelope("hello", "1"))[0] == "WORK_COMPLETE"
        assert client.run("failing", envelope("failing"))[0] == "WORK_FAIL"
    assert worker.wait() == 0
    assert "worker exiting: 2 job(s) done (max_jobs 2)" in worker.log()


def test_sigterm_while_idle_exits_0(gearmand, start_worker):
    worker = start_worker(gearmand)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert "worker exiting: SIGTERM" in worker.log()


def test_sigterm_during_a_job_finishes_it_sends_the_result_and_exits_0(
    gearmand, start_worker, tmp_path
):
    worker = start_worker(gearmand)
    with RawClient(gearmand.address) as client:
        start_slow_job(client, tmp_path, 1.0)
        worker.send(signal.SIGTERM)
        cmd, data = client.result()
    assert cmd == "WORK_COMPLETE"
    assert json.loads(data)["pid"] == worker.pid
    assert worker.wait() == 0
    assert queued(gearmand.address, "slow") == 0


def test_second_sigterm_exits_at_once_and_the_server_requeues_the_job(
    gearmand, start_worker, tmp_path
):
    worker = start_worker(gearmand)
    with RawClient(gearmand.address) as client:
        start_slow_job(client, tmp_path, 60, background=True)
        worker.send(signal.SIGTERM)
        time.sleep(0.3)  # two signals at once would be delivered as one
        worker.send(signal.SIGTERM)
        assert worker.wait() == 128 + signal.SIGTERM
    assert "exiting at once on SIGTERM: job slow H:" in worker.log()
    wait_for(lambda: queued(gearmand.address, "slow") == 1, what="the job back in the queue")


def test_job_file_names_the_running_job_also_after_a_kill(gearmand, start_worker, tmp_path):
    job_file = tmp_path / "job"
    worker = start_worker(gearmand, env=subprocess_env(GEARJOB_JOB_FILE=str(job_file)))
    assert job_file.read_text().strip() == "idle"
    assert run(gearmand, "hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
    # written right after the result went out
    wait_for(lambda: job_file.read_text().strip() == "idle", what="idle in the job file")
    with RawClient(gearmand.address) as client:
        start_slow_job(client, tmp_path, 60, background=True)
        record = job_file.read_text()
        assert record.splitlines()[0].startswith("running slow H:")
        assert len(record) == 512  # one fixed-size record (a line, then spaces)
        worker.send(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
    assert job_file.read_text() == record  # what the unit's ExecStopPost reads


def test_sigint_exits_at_once_with_130(gearmand, start_worker):
    worker = start_worker(gearmand)
    worker.send(signal.SIGINT)
    assert worker.wait() == 130


def test_sighup_registers_a_new_job_between_jobs_and_keeps_the_old_config_when_invalid(
    gearmand, start_worker, tmp_path
):
    config = tmp_path / "worker.toml"
    write_config(config, [str(gearmand)], {"hello": JOBS["hello"], "slow": JOBS["slow"]})
    worker = start_worker(extra=["--config", str(config)], jobs=None)
    assert workers_for(gearmand.address, "reverse") == 0
    with RawClient(gearmand.address) as client:
        # a job runs while the config changes: it completes, then the worker reloads
        start_slow_job(client, tmp_path, 0.5)
        write_config(
            config,
            [str(gearmand)],
            {"hello": JOBS["hello"], "slow": JOBS["slow"], "reverse": "extra_jobs:reverse"},
        )
        worker.send(signal.SIGHUP)
        assert client.result()[0] == "WORK_COMPLETE"
        worker.wait_log("reloaded: 3 job")
        assert client.run("reverse", envelope("reverse", "hello")) == ("WORK_COMPLETE", b"olleh")

        config.write_text("servers = [\n")  # invalid TOML
        worker.send(signal.SIGHUP)
        worker.wait_log("reload failed, keeping the previous configuration")
        write_config(config, [str(gearmand)], {"hello": "no_such_module_abc:f"})
        worker.send(signal.SIGHUP)
        log = worker.wait_log("reload failed", count=2)
        assert "no_such_module_abc" in log
        assert client.run("reverse", envelope("reverse", "abc")) == ("WORK_COMPLETE", b"cba")
    assert "added: reverse" in log


def test_reconnects_when_gearmand_restarts_under_an_idle_worker(gearmand, start_worker):
    worker = start_worker(gearmand)
    gearmand.stop()
    worker.wait_log("connection lost")
    gearmand.start()
    worker.wait_log(r"reconnected to 127\.0\.0\.1:\d+ after \d+\.\d s")
    wait_for(lambda: workers_for(gearmand.address, "hello") == 1, what="re-registration")
    assert run(gearmand, "hello", envelope("hello", "back")) == ("WORK_COMPLETE", b"Hello back")


def test_reconnects_when_gearmand_restarts_under_a_busy_worker(gearmand, start_worker, tmp_path):
    worker = start_worker(gearmand)
    client = RawClient(gearmand.address)
    try:
        start_slow_job(client, tmp_path, 0.5)
        gearmand.kill()
        gearmand.start()
    finally:
        client.close()
    worker.wait_log("reconnected to")
    assert run(gearmand, "hello", envelope("hello", "busy")) == ("WORK_COMPLETE", b"Hello busy")
    assert worker.proc is not None and worker.proc.poll() is None


def test_serves_two_servers_and_survives_one_going_away(gearmand_factory, start_worker):
    one, two = gearmand_factory(), gearmand_factory()
    worker = start_worker(one, two)
    wait_for(lambda: workers_for(two.address, "hello") == 1, what="registration on both")
    assert run(one, "hello", envelope("hello", "one")) == ("WORK_COMPLETE", b"Hello one")
    assert run(two, "hello", envelope("hello", "two")) == ("WORK_COMPLETE", b"Hello two")
    two.stop()
    worker.wait_log("connection lost")
    assert run(one, "hello", envelope("hello", "still")) == ("WORK_COMPLETE", b"Hello still")
    two.start()
    worker.wait_log(f"reconnected to {two}")
    assert run(two, "hello", envelope("hello", "back")) == ("WORK_COMPLETE", b"Hello back")
    # jobs queued on both servers while the worker is busy are all served
    with RawClient(one.address) as c1, RawClient(two.address) as c2:
        handles = [c1.submit("slow", envelope("slow", 0.01)) for _ in range(3)]
        handles += [c2.submit("slow", envelope("slow", 0.01)) for _ in range(3)]
        results = [c1.result()[0] for _ in range(3)] + [c2.result()[0] for _ in range(3)]
    assert len(set(handles)) >= 3
    assert results == ["WORK_COMPLETE"] * 6


def test_starts_without_servers_and_connects_when_one_appears(gearmand, start_worker):
    gearmand.stop()
    worker = start_worker(gearmand, ready=False)
    worker.wait_log("cannot connect")
    gearmand.start()
    worker.wait_ready()
    assert run(gearmand, "hello", envelope("hello", "late")) == ("WORK_COMPLETE", b"Hello late")


def test_connects_to_a_second_server_that_appears_after_the_first(gearmand_factory, start_worker):
    one, two = gearmand_factory(), gearmand_factory()
    two.stop()
    worker = start_worker(one, two)
    worker.wait_log("cannot connect")
    assert run(one, "hello", envelope("hello", "first")) == ("WORK_COMPLETE", b"Hello first")
    two.start()
    worker.wait_log(f"connected to {two}")
    assert run(two, "hello", envelope("hello", "second")) == ("WORK_COMPLETE", b"Hello second")
    assert run(one, "hello", envelope("hello", "again")) == ("WORK_COMPLETE", b"Hello again")


# ----------------------------------------------------------------------------- logging, memory


def test_log_each_job_logs_a_line_per_job_with_handle_duration_and_timestamp(
    gearmand, start_worker
):
    worker = start_worker(gearmand, extra=["--log-each-job"])
    run(gearmand, "hello", envelope("hello", "x"))
    line = next(ln for ln in worker.wait_log("done in").splitlines() if "done in" in ln)
    assert line.startswith(time.strftime("%Y-"))
    assert " INFO gearjob.worker: job hello H:" in line
    assert line.endswith(" s")


def test_by_default_success_is_summarised_and_failures_and_slow_jobs_are_logged(
    gearmand, start_worker, tmp_path
):
    config = write_config(tmp_path / "worker.toml", [str(gearmand)], JOBS, slow_job=0.2)
    worker = start_worker(extra=["--config", str(config)], jobs=None)
    for name in ("a", "b", "c"):
        assert run(gearmand, "hello", envelope("hello", name))[0] == "WORK_COMPLETE"
    assert run(gearmand, "failing", envelope("failing", "bad"))[0] == "WORK_FAIL"
    assert run(gearmand, "slow", envelope("slow", 0.3))[0] == "WORK_COMPLETE"
    log = worker.wait_log(r"job failing H:\S+ failed")
    assert re.search(r"WARNING gearjob.worker: job slow H:\S+ was slow: done in 0\.3\d\d s", log)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    log = worker.log()
    assert " done in " not in log.replace("was slow: done in", "")  # no line per success
    assert re.search(r"INFO gearjob.worker: summary: job hello in the last \d+ s: 3 ok; ", log)
    assert "summary: job failing in the last" in log and ": 0 ok, 1 failed;" in log
    assert re.search(r"summary: job slow in the last \d+ s: 1 ok; 0\.3\d\d s mean", log)


def test_a_timed_out_job_is_logged_and_counted_as_timed_out(gearmand, start_worker):
    worker = start_worker(gearmand, extra=["--job-timeout", "0.3"])
    assert run(gearmand, "slow", envelope("slow", 30)) == ("WORK_FAIL", b"")
    log = worker.wait_log(r"ERROR gearjob.worker: job slow H:\S+ failed: job slow timed out")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert "summary: job slow in the last" in worker.log()
    assert ": 0 ok, 1 timed out;" in worker.log(), log


def test_under_journald_lines_have_priorities_and_no_timestamps(gearmand, start_worker, tmp_path):
    log_path = tmp_path / "worker0.log"
    log_path.touch()
    st = os.stat(log_path)
    env = subprocess_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    worker = start_worker(gearmand, env=env)
    run(gearmand, "failing", envelope("failing"))
    log = worker.wait_log("failed")
    lines = log.splitlines()
    assert lines and all(line.startswith("<") for line in lines), log
    assert any(line.startswith("<6>INFO gearjob.worker: worker ready") for line in lines)
    assert any(line.startswith("<3>ERROR gearjob.worker: job failing H:") for line in lines)


def test_idle_worker_uses_less_than_30_mb(gearmand, start_worker):
    worker = start_worker(gearmand)
    run(gearmand, "hello", envelope("hello", "x"))
    status = Path(f"/proc/{worker.pid}/status").read_text()
    rss_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
    assert rss_kb < 30 * 1024, f"idle worker RSS {rss_kb} kB"


def test_sighup_follows_a_changed_server_list(gearmand_factory, start_worker, tmp_path):
    one, two = gearmand_factory(), gearmand_factory()
    config = tmp_path / "worker.toml"
    write_config(config, [str(one)], {"hello": JOBS["hello"]})
    worker = start_worker(extra=["--config", str(config)], jobs=None)
    write_config(config, [str(one), str(two)], {"hello": JOBS["hello"]})
    worker.send(signal.SIGHUP)
    wait_for(lambda: workers_for(two.address, "hello") == 1, what="registration on the new server")
    assert run(two, "hello", envelope("hello", "new")) == ("WORK_COMPLETE", b"Hello new")
    write_config(config, [str(two)], {"hello": JOBS["hello"]})
    worker.send(signal.SIGHUP)
    wait_for(lambda: workers_for(one.address, "hello") == 0, what="leaving the old server")
    assert f"server {one} is no longer configured" in worker.log()
    assert run(two, "hello", envelope("hello", "still")) == ("WORK_COMPLETE", b"Hello still")


def test_a_server_that_does_not_answer_does_not_hold_up_the_others(
    gearmand, start_worker, tmp_path
):
    # a listening socket whose accept queue is full: connects to it hang (SYNs are dropped)
    with socket.socket() as silent, socket.socket() as filler:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        filler.connect(silent.getsockname())
        hanging = f"127.0.0.1:{silent.getsockname()[1]}"
        config = tmp_path / "worker.toml"
        write_config(config, [hanging, str(gearmand)], {"hello": JOBS["hello"]}, connect_timeout=60)
        worker = start_worker(extra=["--config", str(config)], jobs=None)
        assert run(gearmand, "hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
        assert "connect timed out" not in worker.log()  # still trying, in the background
        assert "idle, 1/2 servers" in worker.log()
        write_config(
            config, [hanging, str(gearmand)], {"hello": JOBS["hello"]}, connect_timeout=0.3
        )
        impatient = start_worker(extra=["--config", str(config)], jobs=None)
        impatient.wait_log(f"{hanging}: cannot connect: connect timed out after 0.3 s")
