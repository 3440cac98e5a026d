"""python3-gearman (the library the design card named) as a benchmark peer.

    python3_gearman_peer.py worker HOST PORT FUNCTION
    python3_gearman_peer.py fg|bg|batch HOST PORT FUNCTION N

Client modes print {"jobs", "seconds", "p50_ms", "p99_ms", "failed"} like the C reference.
"""

from __future__ import annotations

import sys
import time

import python3_gearman  # type: ignore[import-not-found]
from common import PAYLOAD, report


def main() -> int:
    mode, host, port, function = sys.argv[1:5]
    server = f"{host}:{port}"
    if mode == "worker":
        worker = python3_gearman.GearmanWorker([server])
        worker.register_task(function, lambda _worker, job: job.data)
        worker.work()
        return 0
    n = int(sys.argv[5])
    client = python3_gearman.GearmanClient([server])
    latencies: list[float] = []
    failed = 0
    start = time.perf_counter()
    if mode in ("fg", "bg"):
        background = mode == "bg"
        for _ in range(n):
            t0 = time.perf_counter()
            request = client.submit_job(
                function, PAYLOAD, background=background, wait_until_complete=not background
            )
            if not background and request.state != python3_gearman.JOB_COMPLETE:
                failed += 1
            latencies.append(time.perf_counter() - t0)
    elif mode == "batch":
        requests = client.submit_multiple_jobs(
            [{"task": function, "data": PAYLOAD} for _ in range(n)], wait_until_complete=True
        )
        elapsed = time.perf_counter() - start
        failed = sum(1 for r in requests if r.state != python3_gearman.JOB_COMPLETE)
        latencies = [elapsed]
    report(n, time.perf_counter() - start, latencies, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
