"""gearjob's client as a benchmark peer (its worker is the real `gearjob worker` daemon).

gearjob_peer.py fg|bg|batch HOST PORT FUNCTION N
"""

from __future__ import annotations

import sys
import time

from common import report

from gearjob import Client


def main() -> int:
    mode, host, port, function, count = sys.argv[1:6]
    n = int(count)
    latencies: list[float] = []
    failed = 0
    with Client([f"{host}:{port}"], timeout=600) as client:
        start = time.perf_counter()
        if mode == "fg":
            for _ in range(n):
                t0 = time.perf_counter()
                client.submit(function, "x")
                latencies.append(time.perf_counter() - t0)
        elif mode == "bg":
            for _ in range(n):
                t0 = time.perf_counter()
                client.submit_background(function, "x", unique=False)
                latencies.append(time.perf_counter() - t0)
        elif mode == "batch":
            results = client.run_batch([{"job_name": function, "args": ["x"]}] * n)
            failed = sum(1 for r in results if not r.ok)
            latencies = [time.perf_counter() - start]
        else:
            raise SystemExit(f"unknown mode {mode}")
        report(n, time.perf_counter() - start, latencies, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
