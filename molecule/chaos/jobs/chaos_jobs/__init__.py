"""Job functions of the chaos scenario (molecule/chaos).

Every run of a job appends one line to ``$STATE_DIRECTORY/chaos/<tag>.log`` (one
``write()`` with ``O_APPEND``, so the lines of concurrent workers never interleave); the
tests count the lines per job id: an id that never appears was lost, an id that appears
twice ran twice.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

_TAG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _log(tag: str) -> Path:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"tag must match {_TAG.pattern}, got {tag!r}")
    base = os.environ.get("STATE_DIRECTORY", "/var/lib/gearjob").split(":")[0]
    directory = Path(base) / "chaos"
    directory.mkdir(exist_ok=True)
    return directory / f"{tag}.log"


def _append(tag: str, line: str) -> None:
    fd = os.open(_log(tag), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def record(tag: str, job_id: int, seconds: float = 0.0) -> int:
    """Sleep ``seconds``, then record one run of job ``job_id``; return the worker's PID."""
    seconds = float(seconds)
    if not 0 <= seconds <= 60:
        raise ValueError(f"seconds must be between 0 and 60, got {seconds}")
    time.sleep(seconds)
    _append(tag, f"{int(job_id)} {os.getpid()}\n")
    return os.getpid()


def poison(tag: str, job_id: int = 0, seconds: float = 0.0) -> None:
    """Record the attempt, then SIGKILL the worker process running the job (the arguments
    are those of ``record``; only ``tag`` is used)."""
    _append(tag, f"poison {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
