"""The gearjob benchmark: gearjob beside the C reference (libgearman) and python3-gearman.

Each case runs against its own fresh gearmand (`-t 1`, on a free loopback port), in two views:

clients: every client talks to the same workers, gearjob's daemon. A deployment runs gearjob's
    worker whatever submits the jobs (Drupal through PHP's libgearman, Python code, the CLI), so
    this compares the clients:
  a) N sequential foreground jobs through one worker: jobs/s, p50/p99 latency per job
  c) an N-job foreground batch through two workers: jobs/s

stacks: each implementation end to end, its own client and its own worker(s), as a project
    choosing one of them would run it:
  a) N sequential foreground jobs through one worker
  b) N background jobs submitted with no worker running (submit jobs/s, p50/p99 submit latency),
     then drained by one worker (drain jobs/s, timed from the moment the worker has registered,
     so that its start-up is not counted)
  c) an N-job foreground batch through two workers

The cases run in rounds (--rounds, default 5): in each round every case runs for the three
implementations back to back, in an order that rotates from round to round. The table shows the
median of the rounds; each ratio is the median of the rounds' own ratios (the runs of one case in
one round are seconds apart). A load, or a machine that is faster or slower for a while, then
hits every implementation alike instead of the one that happened to run at the time.

It prints a table, gearjob's ratios to the others with the project's targets, and the resident
memory of an idle gearjob worker. Run it with bench/run.sh, which builds the C peer and the
virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gearjob.config import ServerAddress
from gearjob.protocol import server_status

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
FUNCTION = "bench_echo"
GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
COMPILED = "gearjob (mypyc)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gearmand() -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                GEARMAND,
                "-t",
                "1",
                "--listen=127.0.0.1",
                f"--port={port}",
                "--log-file",
                f"{tmp}/gearmand.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    server_status(ServerAddress("127.0.0.1", port), timeout=1)
                    break
                except Exception:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"gearmand did not start on port {port}") from None
                    time.sleep(0.05)
            yield port
        finally:
            proc.kill()
            proc.wait()


def queue(port: int) -> tuple[int, int]:
    """(jobs queued or running, workers) for the benchmark's function."""
    for status in server_status(ServerAddress("127.0.0.1", port), timeout=5):
        if status.function == FUNCTION:
            return status.total, status.workers
    return 0, 0


def wait_registered(port: int, procs: list[Any], seconds: float, what: str) -> None:
    """Wait until gearmand lists as many workers as ``procs``; RuntimeError naming ``what``
    when that takes longer than ``seconds`` or one of the processes has ended."""
    deadline = time.monotonic() + seconds
    while queue(port)[1] < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what} did not register")
        time.sleep(0.02)


class Stack:
    def __init__(self, name: str, worker: list[str], client: list[str], env: dict[str, str]):
        self.name, self.worker_cmd, self.client_cmd, self.env = name, worker, client, env

    @contextmanager
    def workers(self, port: int, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
        procs = [
            subprocess.Popen(
                [*self.worker_cmd_for(port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        try:
            wait_registered(port, procs, 20, f"{self.name}: {count} workers")
            yield procs
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()

    def worker_cmd_for(self, port: int) -> list[str]:
        return [a.replace("{port}", str(port)) for a in self.worker_cmd]

    def client(self, mode: str, port: int, n: int) -> dict[str, float]:
        out = subprocess.run(
            [*self.client_cmd, mode, "127.0.0.1", str(port), FUNCTION, str(n)],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        ).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        if result["failed"]:
            raise RuntimeError(f"{self.name} {mode}: {result['failed']} jobs failed")
        return result


def case_fg(stack: Stack, worker: Stack, n: int) -> dict[str, float]:
    """a) sequential foreground jobs through one worker."""
    with gearmand() as port, worker.workers(port, 1):
        r = stack.client("fg", port, n)
    return {"fg_jobs_s": n / r["seconds"], "fg_p50_ms": r["p50_ms"], "fg_p99_ms": r["p99_ms"]}


def case_bg(stack: Stack, worker: Stack, n: int) -> dict[str, float]:
    """b) background submissions with no worker, then the drain by one worker."""
    with gearmand() as port:
        r = stack.client("bg", port, n)
        figures = {
            "bg_submit_jobs_s": n / r["seconds"],
            "bg_p50_ms": r["p50_ms"],
            "bg_p99_ms": r["p99_ms"],
        }
        if queue(port)[0] != n:
            raise RuntimeError(f"{stack.name}: {queue(port)[0]} of {n} background jobs queued")
        with worker.workers(port, 1):
            # timed from the worker's registration: its start-up (an interpreter, imports) is
            # not part of the job rate
            start = time.perf_counter()
            left = queue(port)[0]
            while queue(port)[0]:
                time.sleep(0.005)
            if left < n // 2:
                raise RuntimeError(
                    f"{stack.name}: the drain was over before it was timed; use more jobs"
                )
            figures["bg_drain_jobs_s"] = left / (time.perf_counter() - start)
    return figures


def case_batch(stack: Stack, worker: Stack, n: int) -> dict[str, float]:
    """c) one foreground batch through two workers."""
    with gearmand() as port, worker.workers(port, 2):
        r = stack.client("batch", port, n)
    return {"batch_jobs_s": n / r["seconds"]}


# (view, case): in the "clients" view every client uses gearjob's workers, in the "stacks" view
# each implementation its own.
CASES = [
    ("clients", case_fg),
    ("clients", case_batch),
    ("stacks", case_fg),
    ("stacks", case_bg),
    ("stacks", case_batch),
]


Samples = dict[str, dict[str, dict[str, list[float]]]]  # [view][stack name][figure] per round


def run_rounds(stacks: list[Stack], common_worker: Stack, n: int, rounds: int) -> Samples:
    """Every case for every stack, `rounds` times, in a rotating order: each figure as the
    list of its rounds, samples[view][stack name][figure]."""
    samples: Samples = {}
    for r in range(rounds):
        order = stacks[r % len(stacks) :] + stacks[: r % len(stacks)]
        for view, case in CASES:
            for stack in order:
                print(
                    f"round {r + 1}/{rounds}: {view} {case.__name__} {stack.name} ({n} jobs)",
                    file=sys.stderr,
                    flush=True,
                )
                worker = common_worker if view == "clients" else stack
                figures = samples.setdefault(view, {}).setdefault(stack.name, {})
                for key, value in case(stack, worker, n).items():
                    figures.setdefault(key, []).append(value)
    return samples


def medians(samples: Samples) -> dict[str, dict[str, dict[str, float]]]:
    return {
        view: {
            name: {key: statistics.median(values) for key, values in figures.items()}
            for name, figures in by_stack.items()
        }
        for view, by_stack in samples.items()
    }


def ratio(samples: Samples, view: str, key: str, other: str, name: str = "gearjob") -> float:
    """``name``'s figure over ``other``'s: the median of the rounds' own ratios. Both runs of
    a round ran minutes apart at most, so a machine that is faster or slower for a while
    moves both; the ratio of two medians could pair a fast round with a slow one."""
    ours, theirs = samples[view][name][key], samples[view][other][key]
    return statistics.median(g / o for g, o in zip(ours, theirs, strict=True))


def gearjob_stack(name: str, python: str, env: dict[str, str]) -> Stack:
    """gearjob's worker daemon and client (bench/peers/gearjob_peer.py) under ``python``."""
    worker = [python, "-m", "gearjob", "worker", "--server", "127.0.0.1:{port}"]
    worker += ["--job", f"{FUNCTION}=bench_jobs:echo", "--log-level", "warning"]
    return Stack(name, worker, [python, str(PEERS / "gearjob_peer.py")], env)


def idle_worker_rss_mb(stack: Stack) -> float:
    with gearmand() as port, stack.workers(port, 1) as procs:
        time.sleep(1)
        for line in Path(f"/proc/{procs[0].pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def callgrind(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd`` under valgrind's callgrind; (process, its output file)."""
    fd, out = tempfile.mkstemp(prefix="gearbench-cg.")
    os.close(fd)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def collected(proc: subprocess.Popen[str], out: str) -> int:
    """The user-space instructions callgrind counted in a finished process."""
    err = proc.communicate(timeout=300)[1]
    Path(out).unlink(missing_ok=True)
    for line in err.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    raise RuntimeError(f"callgrind printed no count: {err[-500:]}")


def worker_instructions(stack: Stack, driver: Stack, mode: str, n: int) -> int:
    """Instructions of ``stack``'s worker while ``driver``'s client runs n jobs (fg) or n
    queued background jobs are drained (bg)."""
    with gearmand() as port:
        if mode == "bg":
            driver.client("bg", port, n)
        proc, out = callgrind(stack.worker_cmd_for(port), stack.env)
        try:
            wait_registered(port, [proc], 120, f"{stack.name}: worker under callgrind")
            if mode == "fg":
                driver.client("fg", port, n)
            else:
                while queue(port)[0]:
                    time.sleep(0.1)
            time.sleep(0.5)
            # every peer exits on it (libgearman's worker ignores SIGINT under valgrind)
            proc.send_signal(signal.SIGTERM)
        except BaseException:
            proc.kill()
            raise
        return collected(proc, out)


def client_instructions(stack: Stack, worker: Stack, n: int) -> int:
    with gearmand() as port, worker.workers(port, 1):
        proc, out = callgrind(
            [*stack.client_cmd, "fg", "127.0.0.1", str(port), FUNCTION, str(n)], stack.env
        )
        return collected(proc, out)


def instructions(stacks: list[Stack]) -> dict[str, dict[str, float]]:
    """Instructions per job (callgrind: user space, the same on a busy or idle machine):
    each client's foreground job (on the C worker) and each worker's foreground and drained
    background job (driven by the C client). The difference of a run of 1,300 and one of
    300 jobs, over 1,000: start-up is not counted."""
    c = stacks[0]
    figures: dict[str, dict[str, float]] = {}
    for stack in stacks:
        print(f"instructions: {stack.name}", file=sys.stderr, flush=True)
        client = [client_instructions(stack, c, k) for k in (300, 1300)]
        fg = [worker_instructions(stack, c, "fg", k) for k in (300, 1300)]
        bg = [worker_instructions(stack, c, "bg", k) for k in (300, 1300)]
        figures[stack.name] = {
            key: (runs[1] - runs[0]) / 1000
            for key, runs in (("client_fg", client), ("worker_fg", fg), ("worker_bg", bg))
        }
    # the floor: a worker that does only what every Python worker must (bench/peers)
    minimal = Stack(
        "minimal",
        [
            sys.executable,
            str(PEERS / "minimal_worker.py"),
            "worker",
            "127.0.0.1",
            "{port}",
            FUNCTION,
        ],
        [],
        c.env,
    )
    print("instructions: the minimal Python worker", file=sys.stderr, flush=True)
    fg = [worker_instructions(minimal, c, "fg", k) for k in (300, 1300)]
    bg = [worker_instructions(minimal, c, "bg", k) for k in (300, 1300)]
    figures[minimal.name] = {
        "worker_fg": (fg[1] - fg[0]) / 1000,
        "worker_bg": (bg[1] - bg[0]) / 1000,
    }
    return figures


# (view, label, figure, format)
ROWS = [
    ("clients", "a) fg sequential, jobs/s", "fg_jobs_s", "{:,.0f}"),
    ("clients", "a) fg p50 latency, ms", "fg_p50_ms", "{:.3f}"),
    ("clients", "a) fg p99 latency, ms", "fg_p99_ms", "{:.3f}"),
    ("clients", "c) fg batch (2 workers), jobs/s", "batch_jobs_s", "{:,.0f}"),
    ("stacks", "a) fg sequential, jobs/s", "fg_jobs_s", "{:,.0f}"),
    ("stacks", "a) fg p50 latency, ms", "fg_p50_ms", "{:.3f}"),
    ("stacks", "a) fg p99 latency, ms", "fg_p99_ms", "{:.3f}"),
    ("stacks", "b) bg submit, jobs/s", "bg_submit_jobs_s", "{:,.0f}"),
    ("stacks", "b) bg submit p50, ms", "bg_p50_ms", "{:.3f}"),
    ("stacks", "b) bg submit p99, ms", "bg_p99_ms", "{:.3f}"),
    ("stacks", "b) bg drain (1 worker), jobs/s", "bg_drain_jobs_s", "{:,.0f}"),
    ("stacks", "c) fg batch (2 workers), jobs/s", "batch_jobs_s", "{:,.0f}"),
]
THROUGHPUT = ["fg_jobs_s", "bg_submit_jobs_s", "bg_drain_jobs_s", "batch_jobs_s"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per case (default 20000)")
    parser.add_argument("--c-peer", required=True, help="path of the compiled gearbench binary")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds; the medians are shown (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per job with valgrind's callgrind (a few minutes;\n"
        "the same figures on a busy machine as on an idle one)",
    )
    parser.add_argument(
        "--cpus",
        help="run every process (gearmand, clients, workers) on these CPUs only, e.g. 1 or\n"
        "0,1: with one CPU the figures are the CPU cost per job, without the wake-ups\n"
        "from one CPU to another (see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--compiled-python",
        metavar="PYTHON",
        help=f"also measure {COMPILED!r}: gearjob as installed for this interpreter\n"
        "(bench/compiled.sh builds one with mypyc and passes it here)",
    )
    args = parser.parse_args()
    if args.cpus:
        # children (gearmand, the peers) inherit the affinity
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})

    env = dict(os.environ, PYTHONPATH=f"{PEERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    python = sys.executable
    stacks = [
        Stack(
            "C libgearman",
            [args.c_peer, "worker", "127.0.0.1", "{port}", FUNCTION],
            [args.c_peer],
            env,
        ),
        gearjob_stack("gearjob", python, env),
        Stack(
            "python3-gearman",
            [
                python,
                str(PEERS / "python3_gearman_peer.py"),
                "worker",
                "127.0.0.1",
                "{port}",
                FUNCTION,
            ],
            [python, str(PEERS / "python3_gearman_peer.py")],
            env,
        ),
    ]
    if args.compiled_python:
        stacks.append(gearjob_stack(COMPILED, args.compiled_python, env))
    load_before = os.getloadavg()[0]
    samples = run_rounds(stacks, stacks[1], args.jobs, args.rounds)
    results = medians(samples)
    rss = idle_worker_rss_mb(stacks[1])
    load_after = os.getloadavg()[0]
    counts = instructions(stacks) if args.instructions else None

    names = [s.name for s in stacks]
    print(
        f"\nN = {args.jobs:,} jobs per case, median of {args.rounds} round(s), gearmand -t 1 on "
        f"loopback, {os.cpu_count()} cores"
        f"{f' (every process on CPU {args.cpus})' if args.cpus else ''}, load average "
        f"{load_before:.1f} before, "
        f"{load_after:.1f} after\n"
    )
    print("clients: every client on gearjob's worker(s); stacks: each with its own worker(s)\n")
    print("| view | case | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for view, label, key, fmt in ROWS:
        print(
            f"| {view} | {label} | "
            + " | ".join(fmt.format(results[view][n][key]) for n in names)
            + " |"
        )

    compiled = COMPILED in names
    print("\nRatios: the median of the rounds' own ratios.\n")
    extra = f" {COMPILED} / C |" if compiled else ""
    print(f"| view | ratio (jobs/s) | gearjob / C | gearjob / python3-gearman |{extra}")
    print("|---|---|---:|---:|" + ("---:|" if compiled else ""))
    ratios: dict[tuple[str, str], tuple[float, float]] = {}
    for view, label, key, _ in ROWS:
        if key in THROUGHPUT:
            ratios[view, key] = (
                ratio(samples, view, key, "C libgearman"),
                ratio(samples, view, key, "python3-gearman"),
            )
            c, p = ratios[view, key]
            cc = ratio(samples, view, key, "C libgearman", COMPILED) if compiled else None
            print(f"| {view} | {label} | {c:.2f}x | {p:.2f}x |" + (f" {cc:.2f}x |" if cc else ""))
    checks = [
        ("a) fg sequential, clients: >= 0.9x C", ratios["clients", "fg_jobs_s"][0] >= 0.9),
        ("c) fg batch, clients: > 1.0x C", ratios["clients", "batch_jobs_s"][0] > 1.0),
        (
            "every case, stacks: >= 1.6x python3-gearman",
            all(ratios["stacks", k][1] >= 1.6 for k in THROUGHPUT),
        ),
        (f"idle gearjob worker RSS {rss:.1f} MB < 30 MB", rss < 30),
    ]
    if counts is not None:
        print("\nInstructions per job (callgrind, user space; thousands):\n")
        print("| per job | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for key, label in (
            ("client_fg", "client, foreground job"),
            ("worker_fg", "worker, foreground job"),
            ("worker_bg", "worker, drained background job"),
        ):
            print(
                f"| {label} | " + " | ".join(f"{counts[n][key] / 1000:,.1f}" for n in names) + " |"
            )
        floor = counts["minimal"]
        print(
            "\nThe least a Python worker does per job (bench/peers/minimal_worker.py: parse, "
            f"call, reply; no checks): {floor['worker_fg'] / 1000:,.1f}k instructions per "
            f"foreground job, {floor['worker_bg'] / 1000:,.1f}k per drained background job."
        )
    print()
    for label, ok in checks:
        print(f"{'met ' if ok else 'MISSED'} {label}")
    if args.json:
        print(
            json.dumps(
                {
                    "jobs": args.jobs,
                    "rounds": args.rounds,
                    "results": results,
                    "rounds_figures": samples,
                    "ratios": {f"{view}/{key}": list(r) for (view, key), r in ratios.items()},
                    "idle_worker_rss_mb": rss,
                }
            )
        )
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
