"""What every benchmark peer shares: the workload and the report format."""

from __future__ import annotations

import json

# The Islandora Job envelope, as a PHP client would send it.
PAYLOAD = '{"func":"bench_echo","args":["x"],"site":null,"uid":null}'


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def report(jobs: int, seconds: float, latencies: list[float], failed: int) -> None:
    print(
        json.dumps(
            {
                "jobs": jobs,
                "seconds": round(seconds, 6),
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 4),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 4),
                "failed": failed,
            }
        ),
        flush=True,
    )
