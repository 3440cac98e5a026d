"""Fixtures of the worker daemon and CLI tests; test modules load them with
``pytest_plugins = ["daemon_fixtures"]`` (and never import this module themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import StartWorker, WorkerPool


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """start_worker(*servers, extra=[...], jobs=JOBS, env=None, ready=True) -> WorkerProcess;
    every worker it started is stopped at teardown."""
    pool = WorkerPool(tmp_path)
    try:
        yield pool.start
    finally:
        pool.stop_all()
