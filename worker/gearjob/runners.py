"""Job kinds: what runs when the worker is handed a job, behind one small interface.

The worker loop does not know which kind of job it runs: it looks the function name up in
its catalog (:mod:`gearjob.catalog`), builds a :class:`Job` and calls the runner's
:meth:`Runner.run`, which returns the result bytes (WORK_COMPLETE) or raises (WORK_FAIL).

* :class:`PythonRunner`: a Python function called with the arguments of the Islandora Job
  JSON envelope ``{"func", "args", "site", "uid"}``; the result is encoded for the client.
* :class:`RawRunner`: a Python function that gets the workload bytes as they are and returns
  bytes or str: any producer (the C ``gearman`` tool, PHP strings, Perl, Go) is served.
* :class:`~gearjob.command.CommandRunner`: an executable, with the semantics of
  ``gearman -w -- CMD`` (workload on stdin, stdout is the result).

Python jobs run through ``timed``, the worker's time limit (SIGALRM in the main thread);
commands keep their own deadline and kill their process group when it passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from gearjob import jobguard, payload
from gearjob.errors import GearjobError, PayloadError

log = logging.getLogger("gearjob.worker")

#: the unknown envelope fields logged so far, bounded for the whole process (jobguard)
_EXTRA_FIELDS = jobguard.ExtraFields()

#: timed(call, limit, job) runs call() under the worker's time limit of ``limit`` seconds
Timed = Callable[[Callable[[], Any], float, "Job"], Any]


class Job:
    """One job as a runner sees it. ``json_results`` is set by a runner that found a
    gearjob client's envelope: a failure then goes back as WORK_EXCEPTION too."""

    __slots__ = ("handle", "json_results", "limit", "name", "unique", "workload")

    def __init__(
        self, name: str, handle: str, unique: bytes, workload: bytes, limit: float
    ) -> None:
        self.name = name
        self.handle = handle
        self.unique = unique
        self.workload = workload
        self.limit = limit  #: seconds, 0 = no limit
        self.json_results = False


class Runner(Protocol):
    """What the worker calls; ``timeout`` (seconds) overrides the worker's job_timeout."""

    kind: str
    timeout: float | None

    def run(self, job: Job, timed: Timed) -> bytes:
        """The result bytes, or raise: the job fails."""
        ...  # pragma: no cover

    def describe(self) -> str:
        """What runs, for ``gearjob jobs`` and the logs."""
        ...  # pragma: no cover


class BadArguments(GearjobError):
    """The job's arguments do not fit its function's signature."""


# gearjob clients see this type's name in WORK_EXCEPTION: it keeps its public home
BadArguments.__module__ = "gearjob.worker"


class PythonRunner:
    """A Python function fed from the JSON envelope."""

    kind = "python"
    timeout: float | None = None

    def __init__(self, func: Callable[..., Any], target: str) -> None:
        self.func = func
        self.target = target

    def describe(self) -> str:
        return self.target

    def run(self, job: Job, timed: Timed) -> bytes:
        request = payload.decode_request(job.name, job.workload)
        job.json_results = request.json_results
        if request.extra:
            _EXTRA_FIELDS.log(job.name, job.handle, request.extra)
        func, args, kwargs = self.func, request.args, request.kwargs

        def call() -> Any:
            try:
                return func(*args, **kwargs)
            except TypeError as exc:
                raise _argument_mismatch(func, args, kwargs) or exc from None

        value = timed(call, job.limit, job)
        try:
            return payload.encode_result(value, json_results=request.json_results)
        except PayloadError as exc:
            raise PayloadError(f"job {job.name}: {exc}") from None


class RawRunner:
    """A Python function that takes the workload bytes and returns bytes or str."""

    kind = "raw"
    timeout: float | None = None

    def __init__(self, func: Callable[[bytes], Any], target: str) -> None:
        self.func = func
        self.target = target

    def describe(self) -> str:
        return f"{self.target} (raw)"

    def run(self, job: Job, timed: Timed) -> bytes:
        func, workload = self.func, job.workload
        value = timed(lambda: func(workload), job.limit, job)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if value is None:
            return b""
        raise PayloadError(
            f"raw job {job.name} ({self.target}) returned a {type(value).__name__}; a raw "
            "job returns bytes or str (or None for an empty result)"
        )


def _argument_mismatch(
    func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> BadArguments | None:
    """After a TypeError: explain it when the arguments do not fit the signature."""
    import inspect

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(func, "__qualname__", repr(func))
        return BadArguments(
            f"arguments {_preview(args, kwargs)} do not fit {name}{signature}: {exc}"
        )
    return None


def _preview(args: list[Any], kwargs: dict[str, Any]) -> str:
    text = repr(kwargs) if kwargs and not args else repr(args)
    return text if len(text) <= 200 else text[:200] + "..."
