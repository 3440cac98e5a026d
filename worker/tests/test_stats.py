"""$GEARJOB_METRICS_FILE: a worker's counters for node_exporter's textfile collector."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from daemon_helpers import subprocess_env, wait_for

from gearjob import Client, JobFailed, stats

pytest_plugins = ["daemon_fixtures"]


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
            if found == labels:
                return float(match.group(3))
    return None


def test_render_escapes_labels_and_sorts_functions() -> None:
    text = stats.render('w"1', 1700000000.5, 7, {"b": 1, 'a\\"x': 2})
    assert 'gearjob_worker_jobs_total{worker="w\\"1"} 7' in text.splitlines()
    failed = [line for line in text.splitlines() if line.startswith("gearjob_worker_jobs_failed")]
    assert failed == [
        'gearjob_worker_jobs_failed_total{worker="w\\"1",function="a\\\\\\"x"} 2',
        'gearjob_worker_jobs_failed_total{worker="w\\"1",function="b"} 1',
    ]
    assert 'gearjob_worker_start_time_seconds{worker="w\\"1"} 1700000000.500' in text
    assert text.count("# TYPE ") == 3 and text.endswith("\n")


def test_writer_writes_on_start_on_change_and_on_stop_leaving_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.prom"
    counts = {"jobs": 0, "failed": {}}
    writer = stats.StatsWriter(path, lambda: (counts["jobs"], counts["failed"]), interval=0.05)
    writer.start()
    wait_for(path.exists, what="the first write")
    assert sample(path.read_text(), "gearjob_worker_jobs_total", worker="w") == 0
    counts.update(jobs=3, failed={"f": 1})
    wait_for(lambda: "} 3" in path.read_text(), what="the new count")
    counts.update(jobs=4)
    writer.stop()
    assert sample(path.read_text(), "gearjob_worker_jobs_total", worker="w") == 4
    assert sample(path.read_text(), "gearjob_worker_jobs_failed_total", worker="w", function="f")
    assert [p.name for p in tmp_path.iterdir()] == ["w.prom"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_writer_that_cannot_write_logs_once_and_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = stats.StatsWriter(tmp_path / "missing" / "w.prom", lambda: (1, {}), interval=0.05)
    writer.flush()
    writer.flush()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "cannot write the metrics file" in caplog.records[0].message


def test_no_file_without_the_variable() -> None:
    assert stats.start(lambda: (0, {}), environ={}) is None


def test_worker_counts_its_jobs_and_failures_in_the_file(gearmand, start_worker, tmp_path):
    path = tmp_path / "gearjob-worker@1.prom"
    before = time.time()
    previous = os.umask(0o077)  # the worker unit's umask is 0027: the file stays readable
    try:
        worker = start_worker(gearmand, env=subprocess_env(GEARJOB_METRICS_FILE=str(path)))
    finally:
        os.umask(previous)
    wait_for(path.exists, what="the metrics file")
    assert path.stat().st_mode & 0o777 == 0o644
    with Client([gearmand.address]) as client:
        for name in ["a", "b", "c"]:
            assert client.submit("hello", name) == f"Hello {name}"
        for _ in range(2):
            with pytest.raises(JobFailed):
                client.submit("failing")
    w = "gearjob-worker@1"

    def counted() -> bool:
        return sample(path.read_text(), "gearjob_worker_jobs_total", worker=w) == 5

    wait_for(counted, what="5 jobs in the metrics file")
    text = path.read_text()
    assert sample(text, "gearjob_worker_jobs_failed_total", worker=w, function="failing") == 2
    assert sample(text, "gearjob_worker_jobs_failed_total", worker=w, function="hello") is None
    started = sample(text, "gearjob_worker_start_time_seconds", worker=w)
    assert started is not None and before - 1 <= started <= time.time()
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert sample(path.read_text(), "gearjob_worker_jobs_total", worker=w) == 5
