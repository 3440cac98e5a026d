"""Jobs that use gearjob.current_job() (importable with tests/jobs on PYTHONPATH)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from gearjob import JobEnded, current_job


def reporting(steps: int, chunk: str = "chunk1;", final: str = "final") -> str:
    """Progress 1..steps of steps, one WORK_DATA chunk and a warning, then the result."""
    job = current_job()
    for step in range(1, steps + 1):
        job.progress(step, steps)
    if chunk:
        job.send_data(chunk)
    job.warn("careful")
    return final


def whoami() -> dict[str, Any]:
    job = current_job()
    return {"function": job.function, "handle": job.handle, "unique": job.unique}


def threaded(threads: int, sends: int) -> int:
    """Every thread sends `sends` WORK_DATA packets of a recognisable shape at once."""
    job = current_job()

    def send(index: int) -> None:
        for n in range(sends):
            job.send_data(f"<{index}:{n}:" + "x" * 2000 + ">")

    workers = [threading.Thread(target=send, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * sends


def leaky(report: str) -> str:
    """Leaves a thread behind that sends after the job ended; it writes what it got."""
    job = current_job()
    started = threading.Event()

    def late() -> None:
        started.set()
        while job.running:
            time.sleep(0.01)
        try:
            job.progress(1, 2)
        except JobEnded as exc:
            Path(report).write_text(f"JobEnded: {exc}")
        else:  # pragma: no cover - the assertion is in the test
            Path(report).write_text("sent")

    threading.Thread(target=late, daemon=True).start()
    started.wait()
    return "done"


def slow_progress(steps: int, pause: float, started: str = "") -> str:
    """Reports progress every `pause` seconds; writes `started` when it begins."""
    job = current_job()
    if started:
        Path(started).write_text(job.handle)
    for step in range(1, steps + 1):
        time.sleep(pause)
        job.progress(step, steps)
    return "ok"


def stamp(path: str) -> float:
    """Writes the time it ran (epoch seconds) to `path` (atomically) and returns it."""
    now = time.time()
    tmp = Path(path + ".tmp")
    tmp.write_text(repr(now))
    tmp.rename(path)
    return now
