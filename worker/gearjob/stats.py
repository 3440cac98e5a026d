"""A worker's counters as a Prometheus text file, for node_exporter's textfile collector.

With ``$GEARJOB_METRICS_FILE`` set (the gearjob_worker role's unit sets it to
``/var/lib/gearjob/metrics/gearjob-worker@N.prom``), a worker keeps that file up to date
from a thread of its own: when it starts, then at most every second while its counts
change, and when it exits. Each write replaces the file at once (a temporary file renamed
over it), so a reader never sees half a file. Point node_exporter at the directory
(``--collector.textfile.directory=/var/lib/gearjob/metrics``) and Prometheus gets::

    gearjob_worker_jobs_total{worker}                 jobs finished, done or failed
    gearjob_worker_jobs_failed_total{worker,function} jobs that failed, per function
    gearjob_worker_start_time_seconds{worker}         when the worker process started

``worker`` is the file's name without ``.prom``. The counters start at 0 in every new
process (Prometheus's rate() and increase() handle the reset); a changing start time tells
restarts apart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["ENV", "StatsWriter", "render", "start", "write"]

ENV = "GEARJOB_METRICS_FILE"
#: the file is written at most this often (seconds) while the counts change
INTERVAL = 1.0
log = logging.getLogger("gearjob.stats")

Counts = Callable[[], tuple[int, Mapping[str, int]]]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(worker: str, started: float, jobs: int, failed: Mapping[str, int]) -> str:
    """The counters in the Prometheus text format."""
    name = _label(worker)
    lines = [
        "# HELP gearjob_worker_jobs_total Jobs this worker process finished, done or failed.",
        "# TYPE gearjob_worker_jobs_total counter",
        f'gearjob_worker_jobs_total{{worker="{name}"}} {jobs}',
        "# HELP gearjob_worker_jobs_failed_total Jobs of the function that failed.",
        "# TYPE gearjob_worker_jobs_failed_total counter",
        *(
            f'gearjob_worker_jobs_failed_total{{worker="{name}",function="{_label(f)}"}} {n}'
            for f, n in sorted(failed.items())
        ),
        "# HELP gearjob_worker_start_time_seconds When the worker process started (Unix time).",
        "# TYPE gearjob_worker_start_time_seconds gauge",
        f'gearjob_worker_start_time_seconds{{worker="{name}"}} {started:.3f}',
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (node_exporter reads only ``*.prom``). The file
    is readable by every user whatever the umask (node_exporter runs as a user of its own;
    the file holds counts and function names only)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


class StatsWriter(threading.Thread):
    """Writes ``counts()`` to ``path`` when it changes, at most every ``interval`` s."""

    def __init__(self, path: Path, counts: Counts, interval: float = INTERVAL) -> None:
        super().__init__(name="gearjob-stats", daemon=True)
        self.path = path
        self.counts = counts
        self.interval = interval
        self.worker = path.name.removesuffix(".prom")
        self.started = time.time()
        self._stopping = threading.Event()
        self._written: tuple[int, dict[str, int]] | None = None
        self._broken = False

    def flush(self) -> None:
        jobs, failed = self.counts()
        now = (jobs, dict(failed))
        if now == self._written or self._broken:
            return
        try:
            write(self.path, render(self.worker, self.started, jobs, failed))
        except OSError as exc:
            self._broken = True
            log.warning("cannot write the metrics file %s (%s): %s", self.path, ENV, exc)
            return
        self._written = now

    def run(self) -> None:
        self.flush()
        while not self._stopping.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)
        self.flush()


def start(counts: Counts, environ: Mapping[str, str] = os.environ) -> StatsWriter | None:
    """A running StatsWriter for ``$GEARJOB_METRICS_FILE``, or None when it is not set."""
    path = environ.get(ENV)
    if not path:
        return None
    writer = StatsWriter(Path(path), counts)
    writer.start()
    return writer
