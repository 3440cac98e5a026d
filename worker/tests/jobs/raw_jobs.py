"""Raw jobs of the command-job tests: they get the workload bytes as they are."""

from __future__ import annotations


def raw_reverse(workload: bytes) -> bytes:
    return workload[::-1]


def raw_text(workload: bytes) -> str:
    return f"{len(workload)} bytes"


def raw_bad(workload: bytes) -> int:
    return len(workload)
