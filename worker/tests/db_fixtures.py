"""Fixtures of the queue tests: gearmand as a service that ``gearjob clear`` can stop and
start, and throwaway MariaDB and PostgreSQL servers (one each per test session, on free
ports, in temporary directories; never the system services).

Test modules load them with ``pytest_plugins = ["db_fixtures"]``. Run as a program, this
file is the stop/start mechanism the tests write into queue.toml (there is no systemd on
the test machines)::

    python db_fixtures.py start|stop STATE_DIR

STATE_DIR holds ``command.json`` (gearmand's argument list), ``pid`` and the logs.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve()
#: a password that needs escaping everywhere: option files, .pgpass, conninfo
DB_PASSWORD = "p\"w'd\\#: x"


# --------------------------------------------------------------------------- gearmand service


def _alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def service_start(state: Path) -> int:
    """Start gearmand in its own session (like a service manager would) and return."""
    argv = json.loads((state / "command.json").read_text())
    with (state / "gearmand.out").open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (state / "pid").write_text(str(proc.pid))
    return proc.pid


def service_stop(state: Path, timeout: float = 10.0) -> None:
    """SIGTERM gearmand and wait until it is gone (SIGKILL after `timeout`)."""
    try:
        pid = int((state / "pid").read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.02)
    (state / "pid").unlink(missing_ok=True)


@dataclass
class GearmandService:
    """A gearmand on 127.0.0.1:port whose stop/start commands go into queue.toml."""

    state: Path
    port: int

    @property
    def address(self) -> Any:
        from gearjob.config import ServerAddress

        return ServerAddress("127.0.0.1", self.port)

    def __str__(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, action: str) -> list[str]:
        return [sys.executable, str(SCRIPT), action, str(self.state)]

    def start(self) -> None:
        from conftest import answers_version

        service_start(self.state)
        deadline = time.monotonic() + 15
        while not answers_version(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gearmand did not answer on {self}:\n{self.logs()}")
            time.sleep(0.02)

    def stop(self) -> None:
        service_stop(self.state)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:]
            for p in (self.state / "gearmand.log", self.state / "gearmand.out")
            if p.exists()
        )

    def queue_toml(self, path: Path, queue_type: str, section: dict[str, Any] | None) -> Path:
        """Write a queue.toml for this service; `section` is the [type] table."""
        lines = [
            f"type = {json.dumps(queue_type)}",
            f'server = "{self}"',
            'service = ""',
            f"stop_command = {json.dumps(self.command('stop'))}",
            f"start_command = {json.dumps(self.command('start'))}",
            "stop_timeout = 20",
            "start_timeout = 20",
        ]
        if section is not None:
            lines.append(f"[{queue_type}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in section.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


@pytest.fixture
def gearmand_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """gearmand_service(*queue_args) -> a running GearmandService; stopped at teardown."""
    from conftest import GEARMAND, free_port

    services: list[GearmandService] = []

    def make(*queue_args: str) -> GearmandService:
        state = tmp_path_factory.mktemp("gearmand-service")
        port = free_port()
        argv = [
            GEARMAND,
            "-t",
            "1",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--job-retries=3",
            "-l",
            str(state / "gearmand.log"),
            *queue_args,
        ]
        (state / "command.json").write_text(json.dumps(argv))
        service = GearmandService(state, port)
        services.append(service)
        service.start()
        return service

    try:
        yield make
    finally:
        for service in services:
            service.stop()


# --------------------------------------------------------------------------- databases


def _sql_runner(argv: list[str], env: dict[str, str]) -> Callable[[str], str]:
    """admin(sql) runs `argv + [sql]` and returns its output, RuntimeError on failure."""

    def admin(sql: str) -> str:
        done = subprocess.run(
            [*argv, sql], capture_output=True, text=True, timeout=30, env=env, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{Path(argv[0]).name}: {sql}: {done.stderr}")
        return done.stdout

    return admin


def _wait_sql(
    admin: Callable[[str], str], what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait until the database server answers SQL (fail with its log if it exits)."""

    def ready() -> bool:
        try:
            admin("SELECT 1")
        except RuntimeError:
            return False
        return True

    deadline = time.monotonic() + 30
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{text}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Database:
    """A throwaway database server with a `gearman` user whose password is DB_PASSWORD."""

    kind: str
    port: int
    admin: Callable[[str], str]  # run SQL as the administrator, return the output

    def section(self, table: str) -> dict[str, Any]:
        """The [mysql]/[postgres] table of queue.toml."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "gearman",
            "password": DB_PASSWORD,
            "db": "gearman",
            "table": table,
        }

    def gearmand_args(self, table: str) -> list[str]:
        if self.kind == "mysql":
            return [
                "-q",
                "MySQL",
                "--mysql-host=127.0.0.1",
                f"--mysql-port={self.port}",
                "--mysql-user=gearman",
                f"--mysql-password={DB_PASSWORD}",
                "--mysql-db=gearman",
                f"--mysql-table={table}",
            ]
        quoted = DB_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
        conninfo = (
            f"host=127.0.0.1 port={self.port} user=gearman dbname=gearman password='{quoted}'"
        )
        return ["-q", "Postgres", f"--libpq-conninfo={conninfo}", f"--libpq-table={table}"]


def _programs(*names: str) -> list[str] | None:
    found = [
        shutil.which(n) or (f"/usr/sbin/{n}" if os.path.exists(f"/usr/sbin/{n}") else "")
        for n in names
    ]
    return found if all(found) else None


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A MariaDB server on a free port for this test session."""
    from conftest import free_port

    programs = _programs("mariadb-install-db", "mariadbd", "mariadb")
    if programs is None:
        pytest.skip(
            "MariaDB server binaries missing (mariadb-install-db, mariadbd, mariadb): "
            "apt-get install mariadb-server mariadb-client"
        )
    install, server, client = programs
    base = tmp_path_factory.mktemp("mariadb")
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, "--no-defaults", f"--datadir={base / 'data'}", *as_root,
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    sock = base / "mysqld.sock"
    log = base / "error.log"
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={base / 'data'}", f"--socket={sock}",
         f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
         "--innodb-buffer-pool-size=16M", f"--pid-file={base / 'pid'}", f"--log-error={log}",
         *as_root],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    admin = _sql_runner(
        [client, "--no-defaults", f"--socket={sock}", "--user=root", "--batch",
         "--skip-column-names", "--default-character-set=utf8mb4", "--execute"],
        dict(os.environ),
    )  # fmt: skip
    try:
        _wait_sql(admin, "mariadbd", proc, log)
        escaped = DB_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
        admin(
            "CREATE DATABASE gearman; "
            f"CREATE USER 'gearman'@'127.0.0.1' IDENTIFIED BY '{escaped}'; "
            "GRANT ALL ON gearman.* TO 'gearman'@'127.0.0.1'"
        )
        yield Database("mysql", port, admin)
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Database]:
    """A PostgreSQL server on a free port for this test session (run as the postgres
    user when the tests run as root: PostgreSQL refuses to run as root)."""
    from conftest import free_port

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    psql = shutil.which("psql")
    if not bins or not psql:
        pytest.skip(
            "PostgreSQL binaries missing (/usr/lib/postgresql/*/bin/initdb, psql): "
            "apt-get install postgresql postgresql-client"
        )
    user: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    base = Path(tempfile.mkdtemp(prefix="gearjob-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        superuser_password = "admin-" + uuid.uuid4().hex
        (base / "pwfile").write_text(superuser_password + "\n")
        if user:
            for path in (base, base / "pwfile"):
                os.chown(path, user["user"], user["group"])
        subprocess.run(
            [f"{bins[-1]}/initdb", "-D", str(base / "data"), "-U", "postgres", "-E", "UTF8",
             "--auth=scram-sha-256", f"--pwfile={base / 'pwfile'}", "--no-sync",
             "--no-instructions"],
            check=True, capture_output=True, timeout=120, **user,
        )  # fmt: skip
        port = free_port()
        log = base / "postgres.log"
        with log.open("wb") as out:
            if user:
                os.chown(log, user["user"], user["group"])
            proc = subprocess.Popen(
                [f"{bins[-1]}/postgres", "-D", str(base / "data"), "-p", str(port),
                 "-k", str(base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **user,
            )  # fmt: skip
        passfile = base / "admin.pgpass"
        passfile.write_text(f"*:*:*:postgres:{superuser_password}\n")
        passfile.chmod(0o600)
        env = {**os.environ, "PGPASSFILE": str(passfile), "PGCONNECT_TIMEOUT": "5"}

        admin = _sql_runner(
            [psql, "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"],
            env,
        )  # fmt: skip
        _wait_sql(admin, "postgres", proc, log)
        admin(f"CREATE ROLE gearman LOGIN PASSWORD '{DB_PASSWORD.replace(chr(39), chr(39) * 2)}'")
        admin("CREATE DATABASE gearman OWNER gearman")
        yield Database("postgres", port, admin)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    action, state_dir = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        service_start(state_dir)
    elif action == "stop":
        service_stop(state_dir)
    else:
        sys.exit(f"usage: {sys.argv[0]} start|stop STATE_DIR")
