"""The CLI's commands about single jobs: ``submit`` (with ``--progress``, ``--at``, ``--in``),
``status --handle`` and ``cancel`` (see docs/job-context-and-scheduling.md)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from gearjob.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    _client,
    _fail,
    _parse_arg,
    _print_value,
    _settings,
    _timeout_arg,
)

if TYPE_CHECKING:
    from gearjob.client import Client, JobStatus

#: no job server knows the handle (status --handle, cancel)
EXIT_NO_JOB = 6

CANCEL_HELP = (
    "Removes a queued background job (admin 'cancel job'). Only queued jobs, scheduled\n"
    "ones too: gearmand cannot stop a job a worker is running. Every server is asked\n"
    "which one knows the handle. With a persistent queue the job's row is deleted.\n"
    "Exit 0 when cancelled, 1 when the job is running (not cancelled), 6 when no\n"
    "server knows the handle, 4 when no server can be asked."
)


def add_submit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action="store_true",
        help="draw a progress bar from the job's progress reports (on a terminal)",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        metavar="TIME",
        help="with --background: run the job no earlier than TIME (ISO 8601, e.g. "
        "2026-12-24T18:00; local time unless it has an offset)",
    )
    when.add_argument(
        "--in",
        dest="delay",
        metavar="DURATION",
        help="with --background: run the job after DURATION (90s, 10m, 2h, 1d, 1h30m)",
    )


def add_status_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--handle",
        metavar="HANDLE",
        action="append",
        help="show one job (H:host:N): queued, running with its progress, or unknown "
        "(exit 6); repeatable",
    )


def add_cancel_command(sub: Any, command: Any) -> None:
    p = command(
        sub,
        "cancel",
        "Cancel a queued background job",
        CANCEL_HELP,
        "  gearjob cancel H:gearman1:42",
    )
    p.add_argument("handle", metavar="HANDLE", help="the job handle submit --background printed")


def _schedule(args: argparse.Namespace) -> dict[str, Any]:
    """at= / delay= for submit_background from --at / --in; usage errors exit 2."""
    if args.at is None and args.delay is None:
        return {}
    if not args.background:
        _fail(EXIT_USAGE, "--at and --in schedule background jobs: add --background")
    from gearjob.scheduling import epoch_for, parse_duration, parse_time

    try:
        at = parse_time(args.at) if args.at is not None else None
        delay = parse_duration(args.delay) if args.delay is not None else None
        epoch_for(at, delay)  # a time in the past: exit 2 here
    except ValueError as exc:
        _fail(EXIT_USAGE, str(exc))
    if args.priority != "normal":
        _fail(EXIT_USAGE, "a scheduled job cannot have a priority: gearmand has none for them")
    return {"at": at} if at is not None else {"delay": delay}


class ProgressBar:
    """One line on stderr redrawn from WORK_STATUS, when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.drawn = False

    def update(self, numerator: int, denominator: int) -> None:
        if not self.enabled or denominator <= 0:
            return
        share = min(1.0, numerator / denominator)
        filled = int(self.WIDTH * share)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {numerator}/{denominator} {share:6.1%}")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _write_chunk(chunk: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def _warning(bar: ProgressBar) -> Any:
    def warn(message: str) -> None:
        bar.finish()
        print(f"gearjob: warning from the job: {message}", file=sys.stderr)

    return warn


def cmd_submit(args: argparse.Namespace) -> int:
    settings = _settings(args, "client")
    job_args = [_parse_arg(a) for a in args.args]
    timeout = _timeout_arg(args, settings)
    when = _schedule(args)
    if args.progress and args.background:
        _fail(EXIT_USAGE, "--progress follows a foreground job; drop --background or use "
              "gearjob status --handle HANDLE")  # fmt: skip
    bar = ProgressBar()
    with _client(settings, timeout) as client:
        if args.background:
            handle = client.submit_background(args.job, *job_args, priority=args.priority, **when)
            print(handle)
            return EXIT_OK
        try:
            value = client.submit(
                args.job,
                *job_args,
                timeout=timeout,
                priority=args.priority,
                on_data=_write_chunk,
                on_progress=bar.update if args.progress else None,
                on_warning=_warning(bar),
            )
        finally:
            bar.finish()
    _print_value(value)
    return EXIT_OK


def describe(status: JobStatus) -> dict[str, Any]:
    state = "running" if status.running else "queued" if status.known else "unknown"
    info: dict[str, Any] = {"handle": status.handle, "state": state}
    if status.denominator:
        info["progress"] = [status.numerator, status.denominator]
    return info


def cmd_status_handles(args: argparse.Namespace) -> int:
    import json

    settings = _settings(args, "client")
    found: list[dict[str, Any]] = []
    with _client(settings, args.timeout or ...) as client:
        for handle in args.handle:
            try:
                found.append(describe(client.job_status(handle)))
            except ValueError as exc:
                _fail(EXIT_USAGE, str(exc))
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for info in found:
            line = f"{info['handle']}: {info['state']}"
            if "progress" in info:
                n, d = info["progress"]
                line += f", {n}/{d} ({n / d:.0%})"
            print(line)
    return EXIT_NO_JOB if any(i["state"] == "unknown" for i in found) else EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from gearjob.scheduling import JobNotFound, JobRunning

    settings = _settings(args, "client")
    client: Client
    with _client(settings, ...) as client:
        try:
            client.cancel(args.handle)
        except ValueError as exc:
            _fail(EXIT_USAGE, str(exc))
        except JobRunning as exc:
            _fail(EXIT_FAILED, str(exc))
        except JobNotFound as exc:
            _fail(EXIT_NO_JOB, str(exc))
    print(f"cancelled {args.handle}")
    return EXIT_OK


__all__ = ["EXIT_NO_JOB", "EXIT_UNAVAILABLE", "ProgressBar", "cmd_cancel", "cmd_submit"]
