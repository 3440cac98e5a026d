"""Job functions the worker tests register (importable with tests/jobs on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def hello_world(name: str) -> str:
    return "Hello " + name


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def identity(value: Any) -> Any:
    return value


def length(value: str) -> int:
    return len(value)


def big(size: int) -> str:
    return "x" * size


def each_type(kind: str) -> Any:
    values: dict[str, Any] = {
        "str": "text é ☃",
        "int": 42,
        "float": 1.5,
        "true": True,
        "false": False,
        "none": None,
        "list": [1, "two", None],
        "dict": {"a": 1, "b": [True, None]},
        "bytes": b"\x00\xffraw",
    }
    return values[kind]


def failing(message: str = "boom") -> None:
    raise ValueError(message)


def unserializable() -> Any:
    return {1, 2, 3}


def exits() -> None:
    sys.exit(3)


def slow(seconds: float, started: str | None = None) -> dict[str, Any]:
    """Sleep; when `started` names a file, create it first (the test waits for it)."""
    if started:
        Path(started).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}


def stubborn(seconds: float) -> str:
    """Swallows every exception (the worker's timeout too) until `seconds` have passed."""
    end = time.monotonic() + seconds
    caught = 0
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except Exception:
            caught += 1
    return f"caught {caught}"


def touch(path: str) -> str:
    """A job with a visible side effect: tests check it did (not) run."""
    Path(path).write_text("ran")
    return path


not_callable = 42


def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Append what it got as a JSON line to $GEARJOB_TEST_RECORD and return it (the fuzz
    tests compare it with what the workload should have given)."""
    got = {"args": list(args), "kwargs": kwargs}
    with open(os.environ["GEARJOB_TEST_RECORD"], "a", encoding="ascii") as fh:
        fh.write(json.dumps(got) + "\n")
    return got
