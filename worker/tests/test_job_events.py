"""The client side of job events: on_data / on_progress / on_warning of submit() and
run_batch() against a worker subprocess whose jobs use gearjob.current_job()."""

from __future__ import annotations

from typing import Any

import pytest

from gearjob import Client

pytest_plugins = ["daemon_fixtures"]

JOBS = {
    "reporting": "context_jobs:reporting",
    "hello": "sample_jobs:hello_world",
}


@pytest.fixture
def served(gearmand, start_worker):
    start_worker(gearmand, jobs=JOBS)
    return gearmand


def test_batch_callbacks_get_the_index_of_each_job(served):
    events: list[tuple[Any, ...]] = []
    jobs = [{"job_name": "reporting", "args": [i + 1, f"c{i}", f"r{i}"]} for i in range(3)]
    jobs.append({"job_name": "hello", "args": ["x"]})
    with Client([served.address], timeout=30) as client:
        results = client.run_batch(
            jobs,
            on_data=lambda i, chunk: events.append(("data", i, chunk)),
            on_progress=lambda i, n, d: events.append(("status", i, n, d)),
            on_warning=lambda i, text: events.append(("warning", i, text)),
        )
    assert [r.value for r in results] == ["r0", "r1", "r2", "Hello x"]
    for i in range(3):
        mine = [e for e in events if e[1] == i]
        progress = [("status", i, n, i + 1) for n in range(1, i + 2)]
        assert mine == [*progress, ("data", i, f"c{i}".encode()), ("warning", i, "careful")]
    assert not [e for e in events if e[1] == 3]


def test_a_callback_that_raises_abandons_the_wait_and_the_client_goes_on(served):
    class Stop(Exception):
        pass

    def stop(numerator: int, denominator: int) -> None:
        raise Stop(f"{numerator}/{denominator}")

    with Client([served.address], timeout=30) as client:
        with pytest.raises(Stop, match="1/3"):
            client.submit("reporting", 3, on_progress=stop)
        assert client.submit("hello", "again") == "Hello again"
        with pytest.raises(Stop):
            client.run_batch(
                [{"job_name": "reporting", "args": [2]}],
                on_progress=lambda i, n, d: stop(n, d),
            )
        assert client.submit("hello", "still") == "Hello still"


def test_a_callback_that_is_not_callable_is_refused_before_sending(served):
    with Client([served.address]) as client, pytest.raises(TypeError, match="on_data must be"):
        client.submit("hello", "x", on_data="print")


def test_only_the_events_of_the_waited_job_reach_the_callbacks(served):
    """Events of a job abandoned earlier on the same connection are not this job's."""
    seen: list[bytes] = []
    with Client([served.address], timeout=30) as client:
        with pytest.raises(RuntimeError):
            client.submit("reporting", 1, on_data=lambda c: (_ for _ in ()).throw(RuntimeError))
        assert client.submit("reporting", 1, "mine", on_data=seen.append) == "final"
    assert seen == [b"mine"]
