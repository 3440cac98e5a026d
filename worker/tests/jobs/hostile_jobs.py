"""Jobs that misbehave towards their worker (tests of what a job cannot do to it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_INTERRUPTS: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CancelledError": asyncio.CancelledError,
}


def interrupt(kind: str) -> None:
    """Raise a BaseException that is not an Exception."""
    raise _INTERRUPTS[kind]("raised by the job")


def fork(marker: str) -> int:
    """The classic fork: the child writes its pid to `marker` and calls sys.exit(0)."""
    pid = os.fork()
    if pid == 0:
        Path(marker).write_text(str(os.getpid()))
        sys.exit(0)
    return pid  # not waited for, as such jobs often do


def take_alarm() -> str:
    """Replace the SIGALRM handler with one that does nothing."""
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    return "taken"


def unstoppable(seconds: float, started: str | None = None) -> str:
    """Swallows every exception, BaseExceptions too, until `seconds` have passed."""
    if started:
        Path(started).write_text(str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(BaseException):  # the point of this job
            time.sleep(0.05)
    return "done"


def echo(*args: Any) -> list[Any]:
    return list(args)
