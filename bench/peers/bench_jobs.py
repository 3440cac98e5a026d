"""The job a gearjob worker runs in the benchmark: echo its argument."""

from __future__ import annotations


def echo(value: str) -> str:
    return value
