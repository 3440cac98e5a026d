"""The summary of successful jobs (gearjob.summary): pure bookkeeping, no worker."""

from __future__ import annotations

from gearjob.summary import FAILED, OK, TIMED_OUT, Summary


def test_nothing_is_logged_before_the_period_ends() -> None:
    summary = Summary(start=100.0, interval=60.0)
    assert summary.add("resize", OK, 0.5, now=110.0) == []
    assert summary.add("resize", OK, 1.5, now=159.9) == []
    assert summary.due(159.9) == []


def test_one_line_per_function_with_counts_mean_and_max_then_a_new_period() -> None:
    summary = Summary(start=0.0, interval=60.0)
    summary.add("resize", OK, 0.010, now=1.0)
    summary.add("resize", FAILED, 0.020, now=2.0)
    summary.add("resize", TIMED_OUT, 0.030, now=3.0)
    summary.add("index", OK, 2.0, now=4.0)
    lines = summary.add("index", OK, 4.0, now=60.0)
    assert lines == [
        "summary: job index in the last 60 s: 2 ok; 3.000 s mean, 4.000 s max",
        "summary: job resize in the last 60 s: 1 ok, 1 failed, 1 timed out; "
        "0.020 s mean, 0.030 s max",
    ]
    # the next period starts empty, 60 s later
    assert summary.add("index", OK, 1.0, now=119.0) == []
    assert summary.due(120.0) == [
        "summary: job index in the last 60 s: 1 ok; 1.000 s mean, 1.000 s max"
    ]


def test_an_idle_period_logs_nothing() -> None:
    summary = Summary(start=0.0, interval=60.0)
    assert summary.due(61.0) == []
    assert summary.due(200.0) == []


def test_lines_at_exit_cover_the_partial_period() -> None:
    summary = Summary(start=0.0, interval=60.0)
    summary.add("hello", OK, 0.001, now=5.0)
    assert summary.lines(12.4) == [
        "summary: job hello in the last 12 s: 1 ok; 0.001 s mean, 0.001 s max"
    ]
    assert summary.lines(13.0) == []
