"""The part of the stack benchmark that runs inside the provisioned container.

bench/stack.py copies this file with bench/run.py, bench/peers/ and the compiled C peer
(gearbench) into the container and runs it there with the workers' Python
(/opt/gearjob/bin/python), once per measurement:

  stack_agent.py queue --jobs N --fg-jobs M --workers W --rounds R
      on the provisioned gearmand (127.0.0.1:4730) and its current queue type, R rounds of:
      N background jobs submitted by the C client with every worker stopped, drained by the W
      provisioned gearjob-worker@ units; N more, drained by W C workers (the order alternates
      from round to round); M sequential foreground jobs through the W units, by the C client
      and by the gearjob client, and M through W C workers by the C client (the C pair, beside
      the gearjob pair: gearjob's client on its units). Then the resident memory of the units, idle.
  stack_agent.py batch --jobs N --ms MS --workers W --rounds R
      an N-job foreground batch of stackbench_burn (MS ms of CPU each) through 1 unit, then
      through W units (alternating order), R rounds
  stack_agent.py variants --jobs N --workers W
      N background jobs drained by W workers started as transient units (systemd-run) with the
      provisioned worker.toml, five times: Type=notify or Type=exec, log level info (a summary
      line a minute) or warning (failures only), and Type=notify at info with --log-each-job
      (a journal line per job, the old default)
  stack_agent.py rss
      the resident memory of the running units

Each prints one JSON object on its last line of stdout (medians of the rounds); progress goes
to stderr. The drains are timed as bench/run.py times them: from the moment gearmand lists
every worker, with the jobs still queued at that moment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from run import FUNCTION, Stack, queue

from gearjob import Client

HERE = Path(__file__).resolve().parent
PORT = 4730
BURN = "stackbench_burn"
UNIT = "gearjob-worker@{}.service"
CONFIG = "/etc/gearjob/worker.toml"
ENV = dict(os.environ, PYTHONPATH=str(HERE / "peers"))
C_PEER = str(HERE / "gearbench")
C = Stack("C libgearman", [C_PEER, "worker", "127.0.0.1", "{port}", FUNCTION], [C_PEER], ENV)
GEARJOB_CLIENT = Stack(
    "gearjob", [], [sys.executable, str(HERE / "peers" / "gearjob_peer.py")], ENV
)


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def units(count: int) -> list[str]:
    return [UNIT.format(i) for i in range(1, count + 1)]


def wait_workers(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while queue(PORT)[1] != count:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"expected {count} worker(s) of {FUNCTION}, gearmand lists {queue(PORT)[1]}"
            )
        time.sleep(0.02)


def stop_units() -> None:
    subprocess.run(["systemctl", "stop", UNIT.format("*")], check=True)
    wait_workers(0)


@contextmanager
def provisioned(count: int) -> Iterator[None]:
    """gearjob-worker@1..count running and registered (all others stopped); stopped after."""
    stop_units()
    # fast drains start the units more often than StartLimitBurst allows (5 in 10 s)
    subprocess.run(["systemctl", "reset-failed", *units(count)], capture_output=True, check=False)
    subprocess.run(["systemctl", "start", "--no-block", *units(count)], check=True)
    try:
        wait_workers(count)
        yield
    finally:
        stop_units()


def timed_drain(workers: AbstractContextManager[object], n: int) -> float:
    """jobs/s of the drain of the queued jobs by ``workers``, from their registration."""
    with workers:
        start = time.perf_counter()
        left = queue(PORT)[0]
        while queue(PORT)[0]:
            time.sleep(0.005)
        seconds = time.perf_counter() - start
    if left < n // 2:
        raise RuntimeError("the drain was over before it was timed; use more jobs")
    return left / seconds


def submit(n: int) -> float:
    if queue(PORT)[0]:
        raise RuntimeError(f"{queue(PORT)[0]} job(s) of {FUNCTION} queued before the submission")
    r = C.client("bg", PORT, n)
    if queue(PORT)[0] != n:
        raise RuntimeError(f"{queue(PORT)[0]} of {n} background jobs queued")
    return n / r["seconds"]


def rss() -> dict[str, float]:
    """VmRSS of each running unit's main process (MB) and the units' cgroup memory."""
    out: dict[str, float] = {}
    running = subprocess.run(
        ["systemctl", "list-units", "--plain", "--no-legend", "--state=running", UNIT.format("*")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for unit in [line.split()[0] for line in running if line.strip()]:
        props = subprocess.run(
            ["systemctl", "show", "--property", "MainPID,MemoryCurrent", "--value", unit],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(props) < 2 or props[0] == "0":
            continue
        for line in Path(f"/proc/{props[0]}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[f"{unit}_rss_mb"] = int(line.split()[1]) / 1024
        if props[1].isdigit():
            out[f"{unit}_cgroup_mb"] = int(props[1]) / 2**20
    return out


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def measure_queue(n: int, fg_jobs: int, workers: int, rounds: int) -> dict[str, float]:
    samples = []
    for r in range(rounds):
        figures: dict[str, float] = {}
        drains = [
            ("gearjob", lambda: provisioned(workers)),
            ("c", lambda: C.workers(PORT, workers)),
        ]
        for name, start in drains if r % 2 == 0 else drains[::-1]:
            stop_units()
            say(f"round {r + 1}/{rounds}: {n} background jobs, drained by {workers} {name} workers")
            figures[f"submit_{name}_jobs_s"] = submit(n)
            figures[f"drain_{name}_jobs_s"] = timed_drain(start(), n)
        # the foreground cases: the C client and the gearjob client on the units, then the C
        # pair (C client, C workers), the reference for the gearjob pair; one after the other
        fg_cases = [
            ("c", C, lambda: provisioned(workers)),
            ("gearjob", GEARJOB_CLIENT, lambda: provisioned(workers)),
            ("cpair", C, lambda: C.workers(PORT, workers)),
        ]
        for key, stack, start in fg_cases if r % 2 == 0 else fg_cases[::-1]:
            stop_units()
            with start():
                say(f"round {r + 1}/{rounds}: {fg_jobs} fg jobs, {key} ({stack.name} client)")
                out = stack.client("fg", PORT, fg_jobs)
            figures[f"fg_{key}_jobs_s"] = fg_jobs / out["seconds"]
            figures[f"fg_{key}_p50_ms"] = out["p50_ms"]
            figures[f"fg_{key}_p99_ms"] = out["p99_ms"]
        # the rounds' own ratios (their median below): the two runs of a round are seconds apart
        figures["fg_pair_ratio"] = figures["fg_gearjob_jobs_s"] / figures["fg_cpair_jobs_s"]
        samples.append(figures)
    result = median_of(samples)
    submits = [s[k] for s in samples for k in ("submit_gearjob_jobs_s", "submit_c_jobs_s")]
    result["submit_jobs_s"] = statistics.median(submits)
    with provisioned(workers):
        time.sleep(1)
        idle = rss()
    result["rss_mb"] = max(v for k, v in idle.items() if k.endswith("_rss_mb"))
    return result


# The per-job costs a unit may add, each taken away in turn: (label, unit properties, worker
# flags). gearjob-worker@.service is Type=notify (STATUS from a thread, at most twice a second)
# and logs at info: a summary line per function a minute; --log-each-job adds a journal line
# per job (the default before log_each_job existed).
NOTIFY = ["Type=notify", "NotifyAccess=main"]
VARIANTS = [
    ("notify_info", NOTIFY, ["--log-level", "info"]),
    ("notify_info_each_job", NOTIFY, ["--log-level", "info", "--log-each-job"]),
    ("exec_info", ["Type=exec"], ["--log-level", "info"]),
    ("notify_warning", NOTIFY, ["--log-level", "warning"]),
    ("exec_warning", ["Type=exec"], ["--log-level", "warning"]),
]


@contextmanager
def transient(count: int, properties: list[str], flags: list[str]) -> Iterator[None]:
    """``count`` workers with the provisioned configuration as transient units (systemd-run),
    without the hardening of gearjob-worker@.service, with ``properties`` and ``flags``."""
    names = [f"gearjob-stackbench-{i}" for i in range(1, count + 1)]
    props = [arg for p in ["User=gearjob", *properties] for arg in ("-p", p)]
    cmd = [str(Path(sys.executable).parent / "gearjob"), "worker", "--config", CONFIG, *flags]
    for name in names:
        subprocess.run(
            ["systemd-run", "--quiet", "--no-block", "--unit", name, *props, *cmd], check=True
        )
    try:
        wait_workers(count)
        yield
    finally:
        subprocess.run(["systemctl", "stop", *names], check=False)
        subprocess.run(["systemctl", "reset-failed", *names], capture_output=True, check=False)
        wait_workers(0)


def measure_variants(n: int, workers: int) -> dict[str, float]:
    figures = {}
    for label, properties, flags in VARIANTS:
        stop_units()
        say(f"{n} background jobs, drained by {workers} transient units: {label}")
        submit(n)
        figures[f"drain_{label}_jobs_s"] = timed_drain(transient(workers, properties, flags), n)
    return figures


def batch_seconds(n: int, ms: float) -> float:
    with Client([f"127.0.0.1:{PORT}"], timeout=600) as client:
        start = time.perf_counter()
        results = client.run_batch([{"job_name": BURN, "args": [ms]}] * n)
        seconds = time.perf_counter() - start
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} {BURN} jobs failed: {failed[0].error}")
    return seconds


def measure_batch(n: int, ms: float, workers: int, rounds: int) -> dict[str, float]:
    samples = []
    for r in range(rounds):
        figures = {}
        for count in (1, workers) if r % 2 == 0 else (workers, 1):
            say(f"round {r + 1}/{rounds}: a batch of {n} x {ms:g} ms of CPU, {count} worker(s)")
            with provisioned(count):
                figures[f"batch_{count}_s"] = batch_seconds(n, ms)
        samples.append(figures)
    result = median_of(samples)
    result["speedup"] = result["batch_1_s"] / result[f"batch_{workers}_s"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("queue")
    q.add_argument("--jobs", type=int, required=True)
    q.add_argument("--fg-jobs", type=int, required=True)
    q.add_argument("--workers", type=int, required=True)
    q.add_argument("--rounds", type=int, required=True)
    b = sub.add_parser("batch")
    b.add_argument("--jobs", type=int, required=True)
    b.add_argument("--ms", type=float, required=True)
    b.add_argument("--workers", type=int, required=True)
    b.add_argument("--rounds", type=int, required=True)
    v = sub.add_parser("variants")
    v.add_argument("--jobs", type=int, required=True)
    v.add_argument("--workers", type=int, required=True)
    sub.add_parser("rss")
    args = parser.parse_args()
    if args.command == "rss":
        print(json.dumps(rss()))
        return 0
    try:
        if args.command == "queue":
            result = measure_queue(args.jobs, args.fg_jobs, args.workers, args.rounds)
        elif args.command == "variants":
            result = measure_variants(args.jobs, args.workers)
        else:
            result = measure_batch(args.jobs, args.ms, args.workers, args.rounds)
    finally:
        # leave the stack as provisioned: every unit running
        subprocess.run(["systemctl", "start", *units(args.workers)], check=False)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
