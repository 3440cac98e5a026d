"""Fixtures of the worker daemon and CLI tests; test modules load them with
``pytest_plugins = ["daemon_fixtures"]`` (and never import this module themselves)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_helpers import StartWorker, WorkerPool, WorkerProcess, subprocess_env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """start_worker(*servers, extra=[...], jobs=JOBS, env=None, ready=True) -> WorkerProcess;
    every worker it started is stopped at teardown."""
    pool = WorkerPool(tmp_path)
    try:
        yield pool.start
    finally:
        pool.stop_all()


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Callable[..., tuple[WorkerProcess, str]]]:
    """exporter(*args) -> (process, base URL) of `gearjob metrics --listen 127.0.0.1:0 ...`."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> tuple[WorkerProcess, str]:
        proc = WorkerProcess(
            ["--listen", "127.0.0.1:0", *args],
            tmp_path / f"metrics{len(started)}.log",
            env=subprocess_env(),
            command="metrics",
        )
        started.append(proc)
        proc.start()
        log = proc.wait_log(r"serving metrics on http://127\.0\.0\.1:\d+/metrics")
        found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", log)
        assert found is not None, log
        port = found.group(1)
        return proc, f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
