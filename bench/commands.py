"""Command jobs: gearjob's worker (``--exec``) beside the C worker ``gearman -w -- CMD``.

Both run the same trivial command (``cat``: the workload comes back) for the same jobs, in
the same run, in rounds whose order alternates; one raw client (gearjob.protocol) submits
for both, so only the workers differ:

  fg        N sequential foreground jobs through one worker: jobs/s
  drain P   5 x N x P background jobs queued with no worker, then drained by P worker processes
            (timed from the moment all P have registered): jobs/s, for P = 1, 2, 4

It prints each figure (the median of the rounds) and gearjob's ratio to the C worker (the
median of the rounds' own ratios). Run it with ``bench/commands.sh``.

With ``--syscalls`` it counts instead, with ``strace -c``, the system calls per job of one
draining worker process (its own, and with its commands' too: ``strace -f``): the
difference between a drain of 2 x N and of N jobs, over N, so the start does not count.
With ``--instructions``, the same difference for gearjob's worker in user-space instructions
(valgrind's callgrind; the commands are not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import FUNCTION, Stack, callgrind, collected, gearmand, queue, wait_registered

from gearjob.config import ServerAddress
from gearjob.protocol import Cmd, Connection

COMMAND = "cat"
WORKLOAD = b"a trivial job"


def stacks() -> list[Stack]:
    gearman = shutil.which("gearman")
    if gearman is None:
        sys.exit("bench/commands.py: the C gearman tool is missing (apt install gearman-tools)")
    c_worker = [gearman, "-h", "127.0.0.1", "-p", "{port}", "-w", "-f", FUNCTION, "--", COMMAND]
    gearjob_worker = [
        sys.executable,
        "-m",
        "gearjob",
        "worker",
        "--server",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--exec",
        COMMAND,
        "-f",
        FUNCTION,
    ]
    env = {**os.environ, "GEARJOB_CONFIG": os.devnull}
    env.pop("GEARJOB_SERVERS", None)
    return [
        Stack("C gearman -w", c_worker, [], env),
        Stack("gearjob --exec", gearjob_worker, [], env),
    ]


def connect(port: int) -> Connection:
    conn = Connection(ServerAddress("127.0.0.1", port), connect_timeout=5)
    conn.connect()
    return conn


def foreground(stack: Stack, n: int) -> float:
    with gearmand() as port, stack.workers(port, 1):
        conn = connect(port)
        start = time.perf_counter()
        for _ in range(n):
            conn.send(Cmd.SUBMIT_JOB, FUNCTION.encode(), b"", WORKLOAD)
            while True:
                packet = conn.recv(60)
                if packet.cmd is Cmd.WORK_COMPLETE:
                    break
                if packet.cmd is Cmd.WORK_FAIL:
                    raise RuntimeError(f"{stack.name}: a job failed")
        seconds = time.perf_counter() - start
        conn.close()
    return n / seconds


def submit_background(port: int, n: int) -> None:
    conn = connect(port)
    for _ in range(n):
        conn.send(Cmd.SUBMIT_JOB_BG, FUNCTION.encode(), b"", WORKLOAD)
        conn.recv(60)
    conn.close()


def drain(stack: Stack, n: int, processes: int) -> float:
    with gearmand() as port:
        submit_background(port, n)
        with stack.workers(port, processes):
            start = time.perf_counter()
            left = queue(port)[0]
            while queue(port)[0]:
                time.sleep(0.005)
            seconds = time.perf_counter() - start
    if left < n // 2:
        raise RuntimeError(f"{stack.name}: the drain was over before it was timed; use more jobs")
    return left / seconds


def traced_calls(stack: Stack, n: int, *, follow: bool) -> int:
    """System calls (strace -c) of one worker process draining n queued jobs, from its
    start to the end of the drain; with ``follow``, its commands' calls too."""
    with gearmand() as port, tempfile.NamedTemporaryFile(prefix="gearbench-strace.") as out:
        submit_background(port, n)
        flags = ["-f"] if follow else []
        cmd = ["strace", "-c", *flags, "-o", out.name, *stack.worker_cmd_for(port)]
        proc = subprocess.Popen(cmd, env=stack.env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 600
            while queue(port)[0] and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            if queue(port)[0]:
                raise RuntimeError(f"{stack.name}: the drain under strace did not end")
        finally:
            # the worker (strace's child) ends on SIGTERM; strace then prints its table
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for pid in children:
                os.kill(int(pid), signal.SIGTERM)
            proc.wait(60)
        for line in Path(out.name).read_text().splitlines():
            if line.rstrip().endswith(" total"):
                return int(line.split()[3])
    raise RuntimeError(f"{stack.name}: strace printed no total")


def syscalls(stacks_: list[Stack], n: int) -> int:
    """Print the system calls per drained job of each worker, with and without its commands."""
    if shutil.which("strace") is None:
        sys.exit("bench/commands.py: --syscalls needs strace (apt install strace)")
    print(f"system calls per job (strace -c), one process draining {n} jobs ({COMMAND!r})")
    print(f"{'worker':<16} {'own':>8} {'+ commands':>12}")
    for stack in stacks_:
        per_job = []
        for follow in (False, True):
            calls = traced_calls(stack, 2 * n, follow=follow) - traced_calls(
                stack, n, follow=follow
            )
            per_job.append(calls / n)
        print(f"{stack.name:<16} {per_job[0]:>8.1f} {per_job[1]:>12.1f}")
    return 0


def worker_instructions(stack: Stack, n: int) -> int:
    """User-space instructions (callgrind) of one worker draining n queued jobs, from its
    start to its exit."""
    with gearmand() as port:
        submit_background(port, n)
        proc, out = callgrind(stack.worker_cmd_for(port), stack.env)
        try:
            wait_registered(port, [proc], 120, f"{stack.name}: worker under callgrind")
            while queue(port)[0]:
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
        except BaseException:
            proc.kill()
            raise
        return collected(proc, out)


def instructions(stack: Stack, n: int) -> int:
    """Print the instructions per drained job of gearjob's worker."""
    per_job = (worker_instructions(stack, 2 * n) - worker_instructions(stack, n)) / n
    print(f"{stack.name}: {per_job:,.0f} instructions per drained job ({COMMAND!r}, callgrind)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per case (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--processes", default="1,2,4", help="drain process counts")
    parser.add_argument(
        "--syscalls", action="store_true", help="count system calls per job instead (strace)"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count gearjob's worker instructions per job instead (callgrind)",
    )
    args = parser.parse_args()
    c_stack, ours = stacks()
    if args.instructions:
        return instructions(ours, args.jobs)
    if args.syscalls:
        return syscalls([c_stack, ours], args.jobs)
    cases = [("fg", lambda s: foreground(s, args.jobs))]
    for p in (int(x) for x in args.processes.split(",")):
        cases.append((f"drain {p}", lambda s, p=p: drain(s, args.jobs * 5 * p, p)))
    figures: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for case, run in cases:
            order = [c_stack, ours] if r % 2 == 0 else [ours, c_stack]
            for stack in order:
                figures.setdefault(case, {}).setdefault(stack.name, []).append(run(stack))
    print(
        f"command jobs ({COMMAND!r}), {args.jobs} foreground jobs, 5 x {args.jobs} x P to drain, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    print(f"{'case':<10} {c_stack.name:>16} {ours.name:>16}  ratio")
    for case, by_stack in figures.items():
        ratios = [g / c for c, g in zip(by_stack[c_stack.name], by_stack[ours.name], strict=True)]
        c_med = statistics.median(by_stack[c_stack.name])
        g_med = statistics.median(by_stack[ours.name])
        print(f"{case:<10} {c_med:>12.0f} j/s {g_med:>12.0f} j/s  {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
