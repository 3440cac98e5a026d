"""Example job functions.

Each function is an ordinary Python function: it takes JSON-compatible arguments and returns a
JSON-compatible value. Raising an exception fails the job; the client sees its type and message.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RECORD_FILE = "my_module.jsonl"


def hello_world(name: str) -> str:
    """Greet someone: the demo's first job."""
    return "Hello " + name


def slow(seconds: float = 1.0, tag: str | None = None) -> int:
    """Sleep for ``seconds`` and return the PID of the worker that ran the job.

    With a ``tag``, write a "start" record (tag and PID) before sleeping and an "end" record
    after, so a test can see which worker is busy with the job while it runs.
    """
    seconds = float(seconds)
    if not 0 <= seconds <= 3600:
        raise ValueError(f"seconds must be between 0 and 3600, got {seconds}")
    if tag is not None:
        _append({"event": "start", "tag": tag, "pid": os.getpid()})
    time.sleep(seconds)
    if tag is not None:
        _append({"event": "end", "tag": tag, "pid": os.getpid()})
    return os.getpid()


def fail(message: str = "this job always fails") -> None:
    """A job that fails: the client gets ValueError and the message."""
    raise ValueError(message)


def record(value: object) -> dict[str, object]:
    """Append the worker's PID and ``value`` to the record file; return what was written."""
    entry = {"event": "record", "value": value, "pid": os.getpid()}
    path = _append(entry)
    return {**entry, "file": str(path)}


def reverse(text: str) -> str:
    """Reverse a string (not in the default registry: used to test registering a new job)."""
    return str(text)[::-1]


def _record_dir() -> Path:
    for variable in ("GEARJOB_EXAMPLE_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(variable)
        if value:
            # systemd may pass several directories separated by ":"; use the first.
            return Path(value.split(":")[0])
    return Path.cwd()


def _append(entry: dict[str, object]) -> Path:
    path = _record_dir() / RECORD_FILE
    line = json.dumps({**entry, "time": time.time()}) + "\n"
    # One write() of a short line with O_APPEND: lines from several workers do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return path
