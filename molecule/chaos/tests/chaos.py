"""Helpers of the chaos tests: docker commands from the controller, a submitter of known job
sets on a host, run counts from the jobs' logs, the drain, and the rows of the table."""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# wait_until and new_tag: the helpers of the stack and cluster tests.
sys.path.append(str(Path(__file__).resolve().parents[2] / "stack" / "tests"))

from gearjob_workers import new_tag, wait_until

__all__ = ["new_tag", "wait_until"]

PYTHON = "/opt/gearjob/bin/python"
LOGS = "/var/lib/gearjob/chaos"
SERVER_UNIT = "gearman-job-server"
WORKER_UNIT = "gearjob-worker@{}.service"
RECORD = "chaos_record"
POISON = "chaos_poison"
#: Jobs per fault; the issue's full run is N >= 1000 (README.md, "The chaos scenario").
N = int(os.environ.get("GEARJOB_CHAOS_N", "1000"))
#: Seconds each job sleeps, so that the faults hit running jobs.
JOB_SECONDS = float(os.environ.get("GEARJOB_CHAOS_JOB_SECONDS", "0.01"))


def docker(
    *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}{result.stdout}"
        )
    return result


def sh(container: str, command: str, check: bool = True, timeout: float = 180) -> str:
    """Run a shell command in a container; its stdout."""
    return docker(
        "exec", container, "sh", "-c", command, check=check, timeout=timeout
    ).stdout


def address(container: str) -> str:
    return f"{container}:4730"


# -- job servers ------------------------------------------------------------------------------


def server_pid(container: str) -> int:
    return int(
        sh(container, f"systemctl show --property MainPID --value {SERVER_UNIT}")
    )


def functions(container: str) -> dict[str, tuple[int, int, int]] | None:
    """function -> (total, running, workers) of the local gearmand, None if it does not answer."""
    cmd = docker(
        "exec", container, "gearadmin", "-h", "127.0.0.1", "--status", check=False
    )
    if cmd.returncode != 0 or not cmd.stdout.rstrip().endswith("."):
        return None
    found = {}
    for line in cmd.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 4:
            found[fields[0]] = (int(fields[1]), int(fields[2]), int(fields[3]))
    return found


def pending(container: str, function: str = RECORD) -> int | None:
    """Queued plus running jobs of ``function`` on a server, None if it does not answer."""
    known = functions(container)
    if known is None:
        return None
    return known.get(function, (0, 0, 0))[0]


def wait_running(container: str, function: str = RECORD) -> None:
    """Wait until a worker runs a job of ``function`` on the server."""
    wait_until(
        f"a job of {function} to run on {container}",
        lambda: (functions(container) or {}).get(function, (0, 0, 0))[1] >= 1,
        limit=20,
    )


def workers_registered(container: str, count: int) -> bool:
    known = functions(container) or {}
    return known.get(RECORD, (0, 0, 0))[2] == count


def kill_server(container: str) -> int:
    """kill -9 gearmand (systemd restarts it); the PID it had."""
    pid = server_pid(container)
    sh(container, f"kill -9 {pid}")
    return pid


def wait_server(container: str, before: int | None = None, limit: float = 90) -> None:
    """Wait until gearmand answers (a new process when ``before`` is given)."""
    wait_until(
        f"gearmand on {container} to answer",
        lambda: (
            (before is None or server_pid(container) not in (0, before))
            and functions(container) is not None
        ),
        limit,
    )


# -- workers ---------------------------------------------------------------------------------


def worker_pids(container: str, count: int) -> list[int]:
    units = " ".join(WORKER_UNIT.format(i) for i in range(1, count + 1))
    out = sh(container, f"systemctl show --property MainPID --value {units}")
    return [int(line) for line in out.split()]


def kill_worker(container: str, instance: int) -> int:
    """kill -9 one worker instance (systemd restarts it); the PID it had (0: none)."""
    pid = worker_pids(container, instance)[instance - 1]
    if pid:
        sh(container, f"kill -9 {pid}", check=False)
    return pid


def runs(worker: str, tag: str) -> Counter[str]:
    """How often each job id of ``tag`` ran (lines of its log on the worker host)."""
    text = sh(worker, f"cat {LOGS}/{tag}.log 2>/dev/null", check=False)
    return Counter(line.split()[0] for line in text.splitlines() if line.strip())


def run_count(worker: str, tag: str) -> int:
    out = sh(worker, f"cat {LOGS}/{tag}.log 2>/dev/null | wc -l", check=False)
    return int(out.strip() or 0)


# -- submitting ------------------------------------------------------------------------------

# Runs on a host with gearjob: submits the job ids of each batch as background jobs, from
# a few threads with one long-lived Client each; a submission that fails is retried (the
# same unique key) until it is acknowledged with a handle or the patience runs out. After
# each batch it prints {"acked": [...], "errors": N, "last_error": "..."} and, before the
# next one, waits for a line on stdin.
_SUBMITTER = r"""
import json, sys, threading, time
from gearjob import Client, GearjobError

spec = json.loads(sys.argv[1])
clients = [Client(spec["servers"], timeout=10, connect_timeout=2) for _ in range(spec["threads"])]
for number, (first, count) in enumerate(spec["batches"]):
    if number:
        sys.stdin.readline()
    acked, errors, last = [], [0], [""]
    lock = threading.Lock()
    deadline = time.monotonic() + spec["patience"]

    def submit(client, ids):
        for job_id in ids:
            while True:
                try:
                    client.submit_background(
                        spec["function"], spec["tag"], job_id, spec["seconds"],
                        unique=f"{spec['tag']}-{job_id}",
                    )
                except GearjobError as exc:
                    with lock:
                        errors[0] += 1
                        last[0] = f"{type(exc).__name__}: {exc}"
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                else:
                    with lock:
                        acked.append(job_id)
                    break

    ids = list(range(first, first + count))
    threads = [
        threading.Thread(target=submit, args=(c, ids[i :: len(clients)]))
        for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"acked": sorted(acked), "errors": errors[0], "last_error": last[0]}),
          flush=True)
"""


class Submitter:
    """The submitter above, running on ``container`` under ``docker exec -i``."""

    def __init__(
        self,
        container: str,
        servers: list[str],
        tag: str,
        batches: list[tuple[int, int]],
        *,
        seconds: float = JOB_SECONDS,
        patience: float = 120,
        threads: int = 4,
        function: str = RECORD,
    ) -> None:
        spec = {
            "servers": servers,
            "tag": tag,
            "batches": batches,
            "seconds": seconds,
            "patience": patience,
            "threads": threads,
            "function": function,
        }
        self.limit = patience + 60
        self.proc = subprocess.Popen(
            [
                "docker",
                "exec",
                "-i",
                container,
                PYTHON,
                "-c",
                _SUBMITTER,
                json.dumps(spec),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: list[int] = []
        self.errors = 0
        self.last_error = ""

    def batch(self) -> list[int]:
        """Wait for the current batch; the ids it acknowledged."""
        assert self.proc.stdout is not None
        # Never hang: the submitter gives up after its patience, this waits a minute more.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.limit)
        if not ready:
            self.proc.kill()
            raise AssertionError(
                f"the submitter did not finish within {self.limit:.0f} s"
            )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"the submitter died: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        report = json.loads(line)
        self.acked += report["acked"]
        self.errors += report["errors"]
        self.last_error = report["last_error"] or self.last_error
        return list(report["acked"])

    def go(self) -> None:
        """Start the next batch."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def submit(
    container: str, servers: list[str], tag: str, count: int, **kwargs: Any
) -> list[int]:
    """Submit job ids 0..count-1 in one batch; the acknowledged ids."""
    submitter = Submitter(container, servers, tag, [(0, count)], **kwargs)
    try:
        return submitter.batch()
    finally:
        submitter.close()


# Runs on a host with gearjob: one foreground job, its outcome as JSON.
_FOREGROUND = r"""
import json, sys, time
from gearjob import Client, GearjobError

server, tag, seconds, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
started = time.monotonic()
try:
    with Client([server], timeout=timeout, connect_timeout=2) as client:
        value = client.submit("chaos_record", tag, 0, seconds)
    outcome = {"ok": True, "value": value}
except GearjobError as exc:
    outcome = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
outcome["elapsed"] = time.monotonic() - started
print(json.dumps(outcome), flush=True)
"""


def foreground(
    container: str, server: str, tag: str, seconds: float, timeout: float
) -> Any:
    """Start one foreground job on ``container``; a Popen whose stdout is the outcome."""
    return subprocess.Popen(
        [
            "docker",
            "exec",
            container,
            PYTHON,
            "-c",
            _FOREGROUND,
            server,
            tag,
            str(seconds),
            str(timeout),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- network cut -----------------------------------------------------------------------------

CUT_TABLE = "gearjob_chaos"


def ip_of(container: str) -> str:
    out = docker(
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        container,
    ).stdout
    return out.split()[0]


def cut(server: str, peer: str) -> None:
    """Drop every packet between ``server`` and ``peer``, in an nftables table of its own on
    ``server`` (the role's firewall table is left alone)."""
    ip = ip_of(peer)
    rules = (
        f"table inet {CUT_TABLE} {{\n"
        "  chain input { type filter hook input priority -10; policy accept;\n"
        f"    ip saddr {ip} drop\n  }}\n"
        "  chain output { type filter hook output priority -10; policy accept;\n"
        f"    ip daddr {ip} drop\n  }}\n"
        "}\n"
    )
    sh(server, f"printf %s {shlex.quote(rules)} | nft -f -")


def heal(server: str) -> None:
    sh(server, f"nft delete table inet {CUT_TABLE} 2>/dev/null || true", check=False)


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """Container names (= inventory names) of the scenario's hosts."""

    servers: dict[str, str]  # queue type -> container
    worker: str
    instances: int

    def addresses(self, *types: str) -> list[str]:
        return [f"{self.servers[t]}:4730" for t in (types or self.servers)]

    def settle(self) -> None:
        """Wait until every worker instance is registered with every job server."""
        for server in self.servers.values():
            wait_until(
                f"{self.instances} workers registered with {server}",
                lambda server=server: workers_registered(server, self.instances),
                limit=90,
            )


# -- the table -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table ("-" where a count does not apply)."""

    fault: str
    submitted: int
    ran: int | str
    lost: int | str
    duplicates: int | str
    note: str = ""


@dataclass
class Outcome:
    """Runs of one tag's job ids against the ids the servers acknowledged."""

    acked: list[int]
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> list[int]:
        return [i for i in self.acked if self.counts[str(i)] == 0]

    @property
    def ran(self) -> int:
        return sum(1 for i in self.acked if self.counts[str(i)] > 0)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def row(self, fault: str, note: str = "") -> Row:
        return Row(
            fault, len(self.acked), self.ran, len(self.lost), self.duplicates, note
        )


def drain(
    worker: str, servers: list[str], tag: str, acked: list[int], limit: float = 240
) -> Outcome:
    """Wait until every acknowledged id ran and the servers hold no job of the scenario (so
    late reruns are counted too); the runs. Never fails: the caller asserts."""
    outcome = Outcome(acked)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        outcome.counts = runs(worker, tag)
        if not outcome.lost and all(pending(s) == 0 for s in servers):
            break
        time.sleep(0.5)
    time.sleep(1)
    outcome.counts = runs(worker, tag)
    return outcome


def table(rows: list[Row]) -> list[str]:
    head = ("fault", "submitted", "ran", "lost", "duplicates", "note")
    cells = [head] + [
        (r.fault, str(r.submitted), str(r.ran), str(r.lost), str(r.duplicates), r.note)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for number, c in enumerate(cells):
        lines.append(
            "  ".join(
                (v.ljust(w) if i in (0, 5) else v.rjust(w))
                for i, (v, w) in enumerate(zip(c, widths))
            ).rstrip()
        )
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
