"""Fuzzing the worker daemon with bad workloads: a real gearmand and a real worker subprocess.

Every example goes to the ``record`` job, which appends the arguments it got to a file.
An independent model of the envelope (:func:`expected_call`) says which arguments a workload
must give, or that it must fail. The worker must run the job with exactly those arguments,
or not run it at all and fail it with a message naming the job: WORK_EXCEPTION for a
gearjob client, WORK_FAIL (and a log line) for an Islandora/PHP-style client. It must serve
every example with the same process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import GearmanServer, free_port
from daemon_helpers import (
    JOBS,
    MAX_DEPTH,
    RECORD,
    RawClient,
    WorkerProcess,
    expected_call,
    job_flags,
    subprocess_env,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gearjob import payload
from gearjob.protocol import Cmd

ENVELOPE_KEYS = {"func", "args", "site", "uid", "gearjob"}
#: how a workload that asks for JSON results (a gearjob client's) may start
GEARJOB_MARKER = re.compile(rb'\{"gearjob":1,')


# -- what is generated ----------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
MISSING: Any = object()


def nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@dataclass(frozen=True)
class Case:
    workload: bytes
    gearjob_client: bool  # submitted with OPTION_REQ "exceptions", as the gearjob client does


@st.composite
def envelopes(draw: st.DrawFn) -> Case:
    gearjob_client = draw(st.booleans())
    envelope: dict[str, Any] = {"gearjob": 1} if gearjob_client else {}
    func = draw(st.sampled_from([RECORD, MISSING, "hello", None, 1, RECORD + " ", "Record"]))
    if func is not MISSING:
        envelope["func"] = func
    args = draw(
        st.one_of(
            st.lists(VALUES, max_size=5),
            st.dictionaries(st.text(max_size=8), VALUES, max_size=4),  # keyword arguments
            SCALARS,  # a wrong type (null: no arguments)
            st.just(MISSING),
            st.integers(1, 50_000).map(lambda n: list(range(n))),  # a huge array
            st.integers(MAX_DEPTH - 5, MAX_DEPTH + 5).map(nested),  # nesting around the limit
        )
    )
    if args is not MISSING:
        envelope["args"] = args
    for key in ("site", "uid"):
        if draw(st.booleans()):
            envelope[key] = draw(VALUES)
    keys = st.text(max_size=6).filter(lambda k: k not in ENVELOPE_KEYS)
    envelope.update(draw(st.dictionaries(keys, VALUES, max_size=2)))  # unknown fields
    text = json.dumps(
        envelope,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    if draw(st.booleans()):
        text = text.replace("/", "\\/")  # PHP's json_encode escapes slashes
    data = text.encode("utf-8")
    mutation = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip", "bad-utf8", "wrap"]))
    if mutation != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        if mutation == "truncate":
            data = data[:at]
        elif mutation == "flip":
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif mutation == "bad-utf8":
            data = (
                data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
            )
        else:
            data = b"[" + data + b"]"
    return Case(data, gearjob_client)


CASES = envelopes() | st.builds(Case, st.binary(max_size=300), st.booleans())


# -- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    server: GearmanServer
    worker: WorkerProcess
    record: Path
    php: RawClient
    gearjob: RawClient

    def runs(self) -> list[Any]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("fuzz")
    server = GearmanServer(tmp, free_port(), [])
    server.start()
    record = tmp / "record.jsonl"
    jobs = {**JOBS, RECORD: "sample_jobs:record"}
    worker = WorkerProcess(
        ["--server", str(server), *job_flags(jobs)],
        tmp / "worker.log",
        env=subprocess_env(GEARJOB_TEST_RECORD=str(record)),
    )
    clients: list[RawClient] = []
    try:
        worker.start()
        worker.wait_ready()
        clients.append(RawClient(server.address))
        clients.append(RawClient(server.address, exceptions=True))
        yield Stack(server, worker, record, *clients)
    finally:
        for client in clients:
            client.close()
        worker.stop()
        server.kill()


def terminal(client: RawClient, handle: str) -> tuple[str, bytes]:
    """The packet that ends job `handle` (WORK_COMPLETE, WORK_EXCEPTION or WORK_FAIL)."""
    while True:
        packet = client.conn.recv(30)
        if packet.cmd in (Cmd.WORK_COMPLETE, Cmd.WORK_EXCEPTION, Cmd.WORK_FAIL):
            got = packet.args[0]
            if packet.cmd is Cmd.WORK_FAIL and not client.exceptions:
                # gearmand 1.1 turns WORK_EXCEPTION into WORK_FAIL for a client that did not
                # ask for exceptions, and keeps the handle's NUL separator in the body (C
                # clients read the handle as a C string and do not see it)
                got = got.removesuffix(b"\0")
            assert got.decode() == handle, packet
            return packet.cmd.name, packet.args[-1] if len(packet.args) > 1 else b""


# -- the properties ---------------------------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=CASES)
@example(case=Case(b'{"args": ["\\ud800", "a\\u0000b"]}', False))  # a lone surrogate, NUL
@example(case=Case(b'{"args": [NaN]}', True))
@example(case=Case(b'{"args": [' + b"7" * 5000 + b"]}", True))  # over the int digit limit
@example(case=Case(b'{"gearjob":1,"args": [' + b"[" * 5000 + b"]" * 5000 + b"]}", True))
@example(case=Case(b'\xef\xbb\xbf{"args": []}', False))  # a byte order mark
@example(case=Case(b'{"args": {"": 1, "not an identifier": 2}}', False))
@example(case=Case(b'{"args": [1], "args": [2], "func": "x", "func": "record"}', False))
@example(case=Case(b'{"gearjob":1,"func":"record","args":"oops"}', True))
@example(case=Case(b"", False))
def test_the_worker_runs_a_job_only_with_its_envelopes_arguments(stack: Stack, case: Case) -> None:
    client = stack.gearjob if case.gearjob_client else stack.php
    before = stack.runs()
    handle = client.submit(RECORD, case.workload)
    cmd, data = terminal(client, handle)
    runs = stack.runs()
    call = expected_call(case.workload)
    if call is not None:
        expected = {"args": call[0], "kwargs": call[1]}
        assert cmd == "WORK_COMPLETE", (cmd, data[:300])
        assert json.loads(data) == expected
        assert runs == [*before, expected]
        return
    assert runs == before, "the job ran although its workload is invalid"
    if case.gearjob_client and GEARJOB_MARKER.match(case.workload):
        assert cmd == "WORK_EXCEPTION", cmd
        exc_type, message = payload.decode_exception(data)
        assert exc_type == "gearjob.errors.PayloadError"
        assert message.startswith(f"workload of job {RECORD}"), message
    else:
        assert cmd == "WORK_FAIL", (cmd, data[:300])
        assert re.search(
            f"job {RECORD} {re.escape(handle)} failed in [0-9.]+ s: workload of job",
            stack.worker.log(),
        )


def test_the_worker_survived_every_example(stack: Stack) -> None:
    """Runs after the fuzz test (same module): one process served everything."""
    assert stack.worker.proc is not None
    pid = stack.worker.pid
    assert stack.php.run("hello", b'{"args": ["still here"]}') == (
        "WORK_COMPLETE",
        b"Hello still here",
    )
    assert stack.worker.proc.poll() is None and stack.worker.pid == pid
    log = stack.worker.log()
    assert "connection lost" not in log and "unexpected error" not in log
