"""Shared testinfra helpers for the Molecule scenarios (loaded with ``-p gearjob_testinfra``).

Gives every scenario:

* ``gearman_vars``: the gearman_server role variables as the host got them (role
  defaults overlaid with the scenario's inventory variables);
* ``gearman_persistence``: the kill -9 persistence check of a persistent queue;
* ``gearman_scheduled``: a scheduled job across a kill -9 of gearmand;
* ``group``: the testinfra hosts of an inventory group;
* the journal of gearman-job-server attached to every failed test's report, and the
  journals a scenario names with :func:`attach_journals` (its conftest's one place for it);
* a summary of the measured figures at the end of the run (also appended to
  the file named by ``$GEARJOB_MOLECULE_REPORT`` when it is set).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "gearman_server"
SERVICE = "gearman-job-server"

_FIGURES: list[str] = []


def role_defaults() -> dict[str, Any]:
    """Keys and values of roles/gearman_server/defaults/main.yml."""
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()) or {}


def role_internal_vars() -> dict[str, Any]:
    """roles/gearman_server/vars/main.yml (per-OS lookup maps and derived names)."""
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text()) or {}


@pytest.fixture
def gearman_vars(host: Any) -> dict[str, Any]:
    """The role variables of this host: defaults, then its inventory variables."""
    merged = role_defaults()
    inventory = host.ansible.get_variables()
    merged.update({k: v for k, v in inventory.items() if k.startswith("gearman_server_")})
    templated = [k for k, v in merged.items() if "{{" in json.dumps(v) and k in inventory]
    if templated:
        pytest.fail(f"the tests need literal values, but {templated} are Jinja templates")
    return merged


def journal(host: Any, lines: int = 60) -> str:
    cmd = host.run(f"journalctl --unit {SERVICE} --lines {lines} --no-pager")
    return cmd.stdout + cmd.stderr


def main_pid(host: Any) -> int:
    return int(host.check_output(f"systemctl show --property MainPID --value {SERVICE}"))


def listening(host: Any, port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port``."""
    out = host.check_output("ss -Hltn")
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, sport = fields[3].rpartition(":")
        if sport == str(port):
            found.add(address.strip("[]").replace("*", "0.0.0.0"))
    return found


def params(host: Any) -> list[str]:
    """The PARAMS of /etc/default/gearman-job-server, as gearmand gets them."""
    text = host.file("/etc/default/gearman-job-server").content_string
    match = re.search(r'^PARAMS="([^"]*)"$', text, re.MULTILINE)
    assert match, f"no PARAMS line in /etc/default/gearman-job-server:\n{text}"
    return match.group(1).split()


def wait_until(what: str, check: Callable[[], bool], limit: float = 60.0) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {limit:.0f} s")
        time.sleep(0.5)


def wait_for_restart(host: Any, before: int, port: int) -> None:
    """Wait until systemd replaced gearmand ``before`` and the new one answers on ``port``."""
    wait_until(
        "systemd to restart gearmand",
        lambda: main_pid(host) not in (0, before)
        and host.run(f"gearadmin -h 127.0.0.1 -p {port} --status").rc == 0,
    )


def status(host: Any, function: str, port: int) -> tuple[int, int, int] | None:
    """(total, running, workers) of ``function`` from gearadmin --status, None if unknown."""
    out = host.check_output(f"gearadmin -h 127.0.0.1 -p {port} --status")
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == function and len(fields) == 4:
            return int(fields[1]), int(fields[2]), int(fields[3])
    return None


def record_figure(line: str) -> None:
    _FIGURES.append(line)
    report = os.environ.get("GEARJOB_MOLECULE_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def gearjob_usable() -> bool:
    """True once the gearjob package has a worker command (worker/gearjob/cli.py)."""
    cli = REPO / "worker" / "gearjob" / "cli.py"
    return cli.is_file() and "worker" in cli.read_text(encoding="utf-8")


@dataclass
class Worker:
    """A worker that appends every payload it gets to ``output`` on the host."""

    host: Any
    function: str
    port: int
    output: str
    unit: str

    def start(self, count: int) -> None:
        if gearjob_usable():
            command = self._gearjob_command()
        else:
            # TODO: drop this branch once the gearjob worker is always available.
            command = (
                f"gearman -w -h 127.0.0.1 -p {self.port} -f {self.function} -c {count} "
                f"-- sh -c 'cat >> {self.output}; echo >> {self.output}'"
            )
        self.host.run_test(f"systemctl reset-failed {self.unit}")
        self.host.check_output(
            f"systemd-run --unit {self.unit} --property Type=exec /bin/sh -c {shlex.quote(command)}"
        )

    def stop(self) -> None:
        self.host.run(f"systemctl stop {self.unit}")
        self.host.run(f"systemctl reset-failed {self.unit}")

    def _gearjob_command(self) -> str:
        venv = "/opt/gearjob-test"
        if not self.host.file(f"{venv}/bin/gearjob").exists:
            self._install_gearjob(venv)
        module = f"{venv}/jobs/persistence_jobs.py"
        self.host.check_output(f"mkdir -p {venv}/jobs")
        code = (
            "import time\n"
            "def record(*args, **kwargs):\n"
            f"    with open({self.output!r}, 'a', encoding='utf-8') as out:\n"
            "        out.write(repr(time.time()) + ' ' + repr(args) + '\\n')\n"
        )
        self.host.check_output(f"printf %s {shlex.quote(code)} > {module}")
        return (
            f"PYTHONPATH={venv}/jobs {venv}/bin/gearjob worker --server 127.0.0.1:{self.port} "
            f"--job {self.function}=persistence_jobs:record"
        )

    def _install_gearjob(self, venv: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 str(REPO / "worker"), "-w", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("gearjob-*.whl"))
            self.host.ansible(
                "ansible.builtin.copy", f"src={wheel} dest=/var/tmp/{wheel.name} mode=0644",
                check=False, become=False,
            )
        self.host.check_output(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null"
        )
        self.host.check_output(f"python3 -m venv {venv}")
        self.host.check_output(f"{venv}/bin/pip install --quiet --no-deps /var/tmp/{wheel.name}")


@dataclass
class Persistence:
    """Submit jobs with no worker, kill -9 gearmand, check the queue, drain it."""

    host: Any
    port: int

    def run(self, count_rows: Callable[[str], int], jobs: int = 200) -> dict[str, int]:
        host = self.host
        function = f"persist_{uuid.uuid4().hex[:10]}"
        output = f"/var/tmp/{function}.out"
        worker = Worker(host, function, self.port, output, unit=f"{function}-worker")
        assert count_rows(function) == 0

        payloads = "\n".join(
            json.dumps({"func": function, "args": [f"job-{i}"]}, separators=(",", ":"))
            for i in range(jobs)
        )
        host.check_output(
            f"printf '%s\\n' {shlex.quote(payloads)} "
            f"| gearman -h 127.0.0.1 -p {self.port} -f {function} -b -N"
        )
        assert status(host, function, self.port) == (jobs, 0, 0)
        assert count_rows(function) == jobs

        before = main_pid(host)
        host.check_output(f"kill -9 {before}")
        wait_for_restart(host, before, self.port)
        survived = status(host, function, self.port)
        assert survived is not None, "the queued function is gone after kill -9"
        assert survived == (jobs, 0, 0)
        rows_after_kill = count_rows(function)
        assert rows_after_kill == jobs

        try:
            worker.start(jobs)

            def ran() -> int:
                out = host.run(f"test -f {output} && grep -c . {output}")
                return int(out.stdout.strip() or 0)

            wait_until(f"the worker to run {jobs} jobs", lambda: ran() >= jobs, limit=120)
            wait_until(
                "the queue to be empty",
                lambda: (status(host, function, self.port) or (0, 0, 0))[0] == 0,
            )
        finally:
            worker.stop()
        done = ran()
        distinct = int(host.check_output(f"grep -o 'job-[0-9]*' {output} | sort -u | wc -l"))
        rows_left = count_rows(function)
        host.run(f"rm -f {output}")
        figures = {
            "submitted": jobs,
            "survived_kill": survived[0],
            "rows_after_kill": rows_after_kill,
            "ran": done,
            "distinct_ran": distinct,
            "rows_left": rows_left,
        }
        record_figure(
            f"persistence[{os.environ.get('MOLECULE_SCENARIO_NAME', '?')}]: "
            + " ".join(f"{k}={v}" for k, v in figures.items())
            + f" worker={'gearjob' if gearjob_usable() else 'gearman-tools'}"
        )
        assert done == jobs
        assert distinct == jobs
        assert rows_left == 0
        return figures


@pytest.fixture
def gearman_persistence(host: Any, gearman_vars: dict[str, Any]) -> Persistence:
    return Persistence(host, int(gearman_vars["gearman_server_port"]))


@dataclass
class Scheduled:
    """A job scheduled ``delay`` seconds ahead (gearjob submit --at), kill -9 of gearmand
    before its time, and when the job then runs (a gearjob worker is up all along)."""

    host: Any
    port: int

    def run(self, count_rows: Callable[[str], int], *, on_time: bool, delay: int = 20) -> float:
        host = self.host
        function = f"sched_{uuid.uuid4().hex[:10]}"
        output = f"/var/tmp/{function}.out"
        worker = Worker(host, function, self.port, output, unit=f"{function}-worker")
        from datetime import datetime, timezone

        try:
            worker.start(1)
            epoch = int(time.time()) + delay
            at = datetime.fromtimestamp(epoch, timezone.utc).isoformat()
            host.check_output(
                f"/opt/gearjob-test/bin/gearjob submit --server 127.0.0.1:{self.port} "
                f"--background --at {at} {function} x"
            )
            assert count_rows(function) == 1
            before = main_pid(host)
            host.check_output(f"kill -9 {before}")
            killed_at = time.time()
            wait_for_restart(host, before, self.port)
            if on_time:  # (PostgreSQL: the worker may have run it already, see below)
                assert count_rows(function) == 1, "the scheduled job's row is gone after kill -9"
            wait_until(
                "the scheduled job to run",
                lambda: host.run(f"test -s {output}").rc == 0,
                limit=delay + 30,
            )
            ran_at = float(host.check_output(f"head -n 1 {output}").split()[0])
        finally:
            worker.stop()
            host.run(f"rm -f {output}")
        record_figure(
            f"scheduled[{os.environ.get('MOLECULE_SCENARIO_NAME', '?')}]: due {delay} s after "
            f"the submit, kill -9 of gearmand, ran {ran_at - epoch:+.2f} s from its time"
        )
        assert ran_at > killed_at, "the job ran before gearmand was killed"
        if on_time:
            assert epoch <= ran_at <= epoch + 3, ran_at - epoch
        else:  # gearmand 1.1's PostgreSQL queue reloads rows without when_to_run: at once
            assert ran_at < epoch, ran_at - epoch
        return ran_at - epoch


@pytest.fixture
def gearman_scheduled(host: Any, gearman_vars: dict[str, Any]) -> Scheduled:
    return Scheduled(host, int(gearman_vars["gearman_server_port"]))


@pytest.fixture(scope="session")
def group(request: pytest.FixtureRequest) -> Callable[[str], list[Any]]:
    """group(name) -> the testinfra hosts of an inventory group, in inventory order."""
    import testinfra

    inventory = request.config.option.ansible_inventory

    def hosts(name: str) -> list[Any]:
        return list(testinfra.get_hosts([f"ansible://{name}"], ansible_inventory=inventory))

    return hosts


@dataclass(frozen=True)
class Journal:
    """A journal to attach to a failed test: where it is, how to run a shell command there
    (the command's output), and journalctl's unit arguments."""

    where: str
    run: Callable[[str], str]
    units: str
    lines: int = 60


JournalSource = Callable[[pytest.Item], Iterable[Journal]]
_JOURNAL_SOURCES: list[JournalSource] = []


def attach_journals(source: JournalSource) -> JournalSource:
    """Register ``source(item)``, the journals to attach when ``item`` fails (a decorator
    for a scenario's conftest)."""
    _JOURNAL_SOURCES.append(source)
    return source


# Prints how a TCP connection to HOST PORT went: "connected" (then, when a third argument is
# given, the first bytes the server sent within 2 s), "refused", "timeout" or "error ...".
_CONNECT = """
import socket, sys
try:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
except OSError as exc:
    print("error", exc)
else:
    first = b""
    if len(sys.argv) > 3:
        sock.settimeout(2)
        try:
            first = sock.recv(512)
        except OSError:
            pass
    sock.close()
    print("connected" + (" " + repr(first) if len(sys.argv) > 3 else ""))
"""


def tcp_connect(client: Any, server: Any, port: int, first_bytes: bool = False) -> str:
    """How a TCP connection from the testinfra host ``client`` to ``server`` (by its inventory
    name) went, as printed by _CONNECT."""
    args = [_CONNECT, server.backend.host, port] + (["read"] if first_bytes else [])
    return client.check_output("python3 -c " + " ".join(shlex.quote(str(a)) for a in args))


def firewall_admits(server: Any, ip: str) -> bool:
    """Whether the gearman_server firewall's set of allowed addresses holds ``ip`` (asked with
    nft get element: nft merges neighbouring addresses into ranges)."""
    family = "ipv6" if ":" in ip else "ipv4"
    return server.run(f"nft get element inet gearjob allowed_{family} '{{ {ip} }}'").rc == 0


def host_runner(host: Any) -> Callable[[str], str]:
    """Run a shell command on a testinfra host: its stdout and stderr."""

    def run(command: str) -> str:
        cmd = host.run(command)
        return str(cmd.stdout + cmd.stderr)

    return run


def group_journals(group: str, units: str, lines: int = 60) -> JournalSource:
    """A source of the journals of ``units`` on every host of an inventory group, for the
    tests that use the ``group`` fixture: ``attach_journals(group_journals(...))``."""

    def source(item: pytest.Item) -> Iterator[Journal]:
        hosts = getattr(item, "funcargs", {}).get("group")
        if hosts is None:
            return
        for member in hosts(group):
            yield Journal(member.backend.host, host_runner(member), units, lines)

    source.__name__ = group
    return source


@attach_journals
def _server_journal(item: pytest.Item) -> Iterator[Journal]:
    host = getattr(item, "funcargs", {}).get("host")
    if host is not None:
        yield Journal(host.backend.host, host_runner(host), f"--unit {SERVICE}")


def journal_sections(item: pytest.Item) -> list[tuple[str, str]]:
    """The report sections of every registered journal of ``item``: a host that is gone
    gives a line saying so instead of its journal."""
    sections = []
    for source in _JOURNAL_SOURCES:
        try:
            journals = list(source(item))
        except Exception as exc:  # an inventory or a host may be gone
            sections.append((f"journals of {source.__name__}", f"(cannot list them: {exc})"))
            continue
        for found in journals:
            command = f"journalctl {found.units} --lines {found.lines} --no-pager"
            try:
                text = found.run(command)
            except Exception as exc:  # the host itself may be gone
                text = f"(cannot read the journal: {exc})"
            sections.append((f"journalctl {found.units} ({found.where})", text))
    return sections


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        report.sections.extend(journal_sections(item))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("gearjob figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
