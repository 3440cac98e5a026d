"""The stack benchmark's jobs, registered through gearjob_worker_jobs by bench/stack.py:

- bench_echo = gearjob_stackbench.jobs:echo, the workload of bench/run.py (the C peer's
  Islandora envelope carries "func": "bench_echo");
- stackbench_burn = gearjob_stackbench.jobs:burn, a CPU-bound job for the 1 vs N workers batch.
"""

from __future__ import annotations

import time


def echo(value: str) -> str:
    return value


def burn(ms: float) -> int:
    """Burn ``ms`` milliseconds of this process's CPU time (not wall time: a busy machine makes
    the job take longer, not do less work) and return the number of work rounds done."""
    ms = float(ms)
    if not 0 < ms <= 10_000:
        raise ValueError(f"ms must be between 0 and 10000, got {ms}")
    end = time.process_time() + ms / 1000
    rounds = 0
    while time.process_time() < end:
        total = 0
        for i in range(2_000):
            total += i * i
        rounds += 1
    return rounds
