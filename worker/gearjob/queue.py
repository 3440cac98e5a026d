"""The persistent queue of the local gearmand: read its table, clear it safely.

gearmand keeps every queued job in memory. A persistent queue (SQLite, MySQL/MariaDB or
PostgreSQL) is a copy: gearmand adds a row when a background job is queued, deletes it when
the job is done, and reads the table **only at start-up**. Rows deleted while gearmand runs
are therefore still executed; clearing the queue means: stop gearmand, delete the rows,
start it again (:func:`clear_persistent`). The memory queue cannot lose the jobs of one
function: a restart drops every queued job of every function (:func:`restart_memory`).

The queue configuration, ``/etc/gearjob/queue.toml`` (written by the gearman_server role,
``root:gearman`` mode 0640 because it may hold the database password)::

    type = "sqlite"                  # memory | sqlite | mysql | postgres
    server = "127.0.0.1:4730"        # where the local gearmand answers
    service = "gearman-job-server"   # systemd unit stopped and started around a clear
    # Instead of systemctl, commands (argument lists, no shell) that stop and start it:
    # stop_command = ["supervisorctl", "stop", "gearmand"]
    # start_command = ["supervisorctl", "start", "gearmand"]
    stop_timeout = 60                # seconds for the stop command and for gearmand to go
    start_timeout = 60               # seconds for the start command and until it answers

    [sqlite]
    path = "/var/lib/gearman/queue.sqlite3"
    table = "gearman_queue"          # gearmand's default

    [mysql]                          # MySQL or MariaDB, through the mariadb/mysql client
    host = "127.0.0.1"               # "localhost": the local socket (see socket)
    port = 3306
    # socket = "/run/mysqld/mysqld.sock"
    user = "gearman"
    password = "secret"
    db = "gearman"
    table = "gearman_queue"          # gearmand's default

    [postgres]                       # PostgreSQL, through psql
    host = "127.0.0.1"               # a path starting with "/" is a socket directory
    port = 5432
    user = "gearman"
    password = "secret"
    db = "gearman"
    table = "queue"                  # gearmand's default (--libpq-table)
    # conninfo = "host=db1 sslmode=require"  # instead of host/port/user/db; no password in it

Only the table of ``type`` is read. Table names must match ``[A-Za-z_][A-Za-z0-9_]{0,63}``.
Passwords never appear on a command line: the MySQL client reads a temporary 0600 option
file (``--defaults-extra-file``), psql a temporary 0600 ``PGPASSFILE``. Function names are
compared as hexadecimal UTF-8 bytes in SQL, so no value is ever quoted into a statement.

Table layout gearmand 1.1.20 creates (same columns for all three; measured)::

    unique_key     TEXT / varchar(64)    -- the job's unique key (a UUID when none is given)
    function_name  TEXT / varchar(255)   -- MySQL: a latin1 column
    priority       INTEGER               -- 0 high, 1 normal, 2 low
    data           BLOB / longblob / bytea
    when_to_run    INTEGER               -- epoch jobs; 0 otherwise
    PRIMARY KEY / UNIQUE (unique_key, function_name)
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ServerAddress, _read_file, _Reader
from .conninfo import redact, secrets_in
from .errors import ConfigError, GearjobError

__all__ = [
    "QUEUE_CONFIG",
    "QUEUE_TYPES",
    "Aborted",
    "DatabaseSettings",
    "QueueConfig",
    "QueueDatabaseError",
    "ServiceError",
    "Store",
    "clear_persistent",
    "default_queue_config",
    "load_queue_config",
    "open_store",
    "restart_memory",
    "server_answers",
]

QUEUE_CONFIG = "/etc/gearjob/queue.toml"
QUEUE_TYPES = ("memory", "sqlite", "mysql", "postgres")
DEFAULT_TABLES = {"sqlite": "gearman_queue", "mysql": "gearman_queue", "postgres": "queue"}
DEFAULT_SERVICE = "gearman-job-server"
DB_TIMEOUT = 10.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_UNIT = re.compile(r"[A-Za-z0-9_.:@\\][A-Za-z0-9_.:@\\-]*")
_TOP_KEYS = {
    "type",
    "server",
    "service",
    "stop_command",
    "start_command",
    "stop_timeout",
    "start_timeout",
    *QUEUE_TYPES[1:],
}
_DB_KEYS = {
    "sqlite": {"path", "table"},
    "mysql": {"host", "port", "socket", "user", "password", "db", "table"},
    "postgres": {"host", "port", "user", "password", "db", "conninfo", "table"},
}


class QueueDatabaseError(GearjobError):
    """The queue table cannot be read or changed (database down, no client program, no
    permission, no such table). The message names the database and what to do."""


class ServiceError(GearjobError):
    """Stopping or starting gearmand failed; the message says what was (not) changed."""


class Aborted(GearjobError):
    """The operator declined; nothing was changed."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the persistent queue table lives (one of [sqlite], [mysql], [postgres])."""

    kind: str
    table: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    db: str | None = None
    conninfo: str | None = None

    def describe(self) -> str:
        """``sqlite /var/lib/gearman/queue.sqlite3, table gearman_queue`` and the like."""
        if self.kind == "sqlite":
            where = str(self.path)
        elif self.conninfo:
            where = repr(redact(self.conninfo))
        else:
            host = self.socket or self.host or "localhost"
            port = f":{self.port}" if self.port and not host.startswith("/") else ""
            user = f"{self.user}@" if self.user else ""
            where = f"{user}{host}{port}/{self.db or ''}"
        return f"{self.kind} {where}, table {self.table}"


@dataclass(frozen=True)
class QueueConfig:
    """The local gearmand and its queue (see the module documentation for the file)."""

    type: str
    server: ServerAddress = field(default_factory=lambda: ServerAddress("127.0.0.1"))
    service: str = DEFAULT_SERVICE
    stop_command: tuple[str, ...] = ()
    start_command: tuple[str, ...] = ()
    stop_timeout: float = 60.0
    start_timeout: float = 60.0
    database: DatabaseSettings | None = None
    source: str = "<defaults>"

    @property
    def persistent(self) -> bool:
        return self.database is not None

    def control(self, action: str) -> list[str]:
        """The command that stops or starts gearmand (``action``: "stop" or "start")."""
        command = self.stop_command if action == "stop" else self.start_command
        if command:
            return list(command)
        if not self.service:
            raise ConfigError(
                f"{self.source}: service is empty and there is no {action}_command; set "
                f'service = "{DEFAULT_SERVICE}" or stop_command and start_command'
            )
        return ["systemctl", action, self.service]


def default_queue_config() -> Path | None:
    """``/etc/gearjob/queue.toml`` when it exists, else None."""
    path = Path(QUEUE_CONFIG)
    return path if path.exists() else None


def _identifier(r: _Reader, key: str, value: Any) -> str:
    text = r.string(key, value)
    if not _IDENTIFIER.fullmatch(text):
        raise r.fail(key, value, "expected a table name of letters, digits and _ (at most 64)")
    return text


def _command(r: _Reader, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise r.fail(key, value, 'expected a list of arguments like ["systemctl", "stop", "x"]')
    return tuple(value)


def _database(r: _Reader, kind: str, data: dict[str, Any]) -> DatabaseSettings:
    if kind not in data:
        raise ConfigError(
            f"{r.source}: type = {kind!r} needs a [{kind}] table; see "
            "'gearjob clear --help' for its keys"
        )
    section = r.table(kind, data[kind])
    unknown = sorted(set(section) - _DB_KEYS[kind])
    if unknown:
        raise ConfigError(
            f"{r.source}: unknown key '{kind}.{unknown[0]}'; known keys in [{kind}] are "
            f"{', '.join(sorted(_DB_KEYS[kind]))}"
        )
    values: dict[str, Any] = {}
    for key in ("path", "host", "socket", "user", "db", "conninfo"):
        if key in section:
            values[key] = r.string(f"{kind}.{key}", section[key])
    if "password" in section:
        password = section["password"]
        if not isinstance(password, str) or "\n" in password or "\r" in password:
            raise r.fail(f"{kind}.password", "***", "expected a string on one line")
        values["password"] = password or None
    if "port" in section:
        port = r.integer(f"{kind}.port", section["port"], minimum=1)
        if port > 65535:
            raise r.fail(f"{kind}.port", port, "expected a port from 1 to 65535")
        values["port"] = port
    elif kind != "sqlite":
        values["port"] = 3306 if kind == "mysql" else 5432
    table = section.get("table", DEFAULT_TABLES[kind])
    values["table"] = _identifier(r, f"{kind}.table", table)
    if kind == "sqlite" and "path" not in values:
        raise ConfigError(f"{r.source}: [sqlite] needs path, the database file gearmand uses")
    if kind == "mysql" and "db" not in values:
        raise ConfigError(f"{r.source}: [mysql] needs db, the database gearmand uses")
    conninfo = values.get("conninfo")
    if conninfo:
        _check_conninfo(r.source, conninfo)
    return DatabaseSettings(kind=kind, **values)


def _check_conninfo(source: str, conninfo: str) -> None:
    """ConfigError for a malformed conninfo, or one holding a secret (it would show on
    psql's command line and in gearjob's output)."""
    try:
        found = secrets_in(conninfo)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: postgres.conninfo {redact(conninfo)} cannot be read: {exc}; write it "
            "as key=value pairs (host=db1 dbname=queue) or as postgresql://user@host/db"
        ) from None
    if found:
        raise ConfigError(
            f"{source}: postgres.conninfo must not hold the password (it sets "
            f"{' and '.join(found)}, which would show on psql's command line): "
            f"{redact(conninfo)}; put the password in postgres.password"
        )


def load_queue_config(path: str | os.PathLike[str]) -> QueueConfig:
    """Read a queue configuration file; ConfigError names the file, key and value."""
    source = str(path)
    data = _read_file(Path(path))
    r = _Reader(source)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(_TOP_KEYS))}"
        )
    if "type" not in data:
        raise ConfigError(f"{source}: type is missing; set it to one of {', '.join(QUEUE_TYPES)}")
    kind = data["type"]
    if kind not in QUEUE_TYPES:
        raise r.fail("type", kind, f"expected one of {', '.join(QUEUE_TYPES)}")
    values: dict[str, Any] = {"type": kind, "source": source}
    if "server" in data:
        try:
            values["server"] = ServerAddress.parse(r.string("server", data["server"]))
        except ConfigError as exc:
            raise ConfigError(f"{source}: server: {exc}") from exc
    if "service" in data:
        service = data["service"]
        if not isinstance(service, str) or (service and not _UNIT.fullmatch(service)):
            raise r.fail("service", service, 'expected a systemd unit name or ""')
        values["service"] = service
    for key in ("stop_command", "start_command"):
        if key in data:
            values[key] = _command(r, key, data[key])
    if ("stop_command" in values) != ("start_command" in values):
        raise ConfigError(f"{source}: set both stop_command and start_command, or neither")
    for key in ("stop_timeout", "start_timeout"):
        if key in data:
            values[key] = r.number(key, data[key], allow_zero=False)
    if kind != "memory":
        values["database"] = _database(r, kind, data)
    return QueueConfig(**values)


# --------------------------------------------------------------------------- stores


class Store:
    """The queue table of one database: rows per function, and deleting them."""

    def __init__(self, settings: DatabaseSettings, timeout: float = DB_TIMEOUT) -> None:
        self.settings = settings
        self.table = settings.table
        self.timeout = timeout
        if not _IDENTIFIER.fullmatch(self.table):  # settings built in code, not from a file
            raise ConfigError(f"queue table name {self.table!r} is not a plain identifier")

    def counts(self) -> dict[str, int]:
        """Rows per function name (queued and running background jobs)."""
        raise NotImplementedError

    def delete(self, functions: Collection[str] | None) -> dict[str, int]:
        """Delete the rows of ``functions`` (None: every row) in one transaction; return
        how many rows of each function went."""
        raise NotImplementedError

    def counts_scheduled(self, now: float) -> tuple[dict[str, int], dict[str, int]]:
        """Rows per function, and among them the scheduled jobs not due yet (``when_to_run``
        after ``now``, a UTC epoch), in one query."""
        raise NotImplementedError


class SqliteStore(Store):
    def _connect(self, mode: str) -> Any:
        import sqlite3
        from urllib.parse import quote

        path = str(self.settings.path)
        if not os.path.exists(path):
            raise QueueDatabaseError(
                f"SQLite queue {path} does not exist; gearmand creates it at start-up "
                "(check [sqlite] path)"
            )
        try:
            return sqlite3.connect(
                f"file:{quote(path)}?mode={mode}", uri=True, timeout=self.timeout
            )
        except sqlite3.Error as exc:
            raise QueueDatabaseError(
                f"SQLite queue {path} cannot be opened: {exc}; run as root or as a member of "
                "the gearman group"
            ) from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import sqlite3

        try:
            yield
        except sqlite3.Error as exc:
            raise QueueDatabaseError(
                f"SQLite queue {self.settings.path}, table {self.table}: {exc}"
            ) from exc

    def counts(self) -> dict[str, int]:
        conn = self._connect("ro")
        try:
            with self._errors():
                rows = conn.execute(
                    f"SELECT function_name, COUNT(*) FROM {self.table} GROUP BY function_name"  # noqa: S608
                ).fetchall()
        finally:
            conn.close()
        return {_text(name): int(count) for name, count in rows}

    def counts_scheduled(self, now: float) -> tuple[dict[str, int], dict[str, int]]:
        conn = self._connect("ro")
        try:
            with self._errors():
                rows = conn.execute(
                    "SELECT function_name, COUNT(*), SUM(when_to_run > ?) "  # noqa: S608
                    f"FROM {self.table} GROUP BY function_name",
                    (int(now),),
                ).fetchall()
        finally:
            conn.close()
        counts = {_text(name): int(count) for name, count, _ in rows}
        return counts, {_text(name): int(later or 0) for name, _, later in rows if later}

    def delete(self, functions: Collection[str] | None) -> dict[str, int]:
        conn = self._connect("rw")
        try:
            with self._errors(), conn:
                before = dict(
                    conn.execute(
                        f"SELECT function_name, COUNT(*) FROM {self.table} GROUP BY function_name"  # noqa: S608
                    ).fetchall()
                )
                if functions is None:
                    conn.execute(f"DELETE FROM {self.table}")  # noqa: S608
                    gone = before
                else:
                    gone = {}
                    for name in functions:
                        cursor = conn.execute(
                            f"DELETE FROM {self.table} WHERE function_name = ?",  # noqa: S608
                            (name,),
                        )
                        gone[name] = cursor.rowcount
        finally:
            conn.close()
        return {_text(name): int(count) for name, count in gone.items()}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _hex_list(functions: Collection[str], upper: bool) -> str:
    """Function names as quoted hexadecimal literals of their UTF-8 bytes: ``'666E31'``."""
    items = [name.encode().hex() for name in functions]
    return ", ".join(f"'{h.upper() if upper else h}'" for h in items)


class _ClientStore(Store):
    """A store reached through a database's command line client, output parsed as TSV."""

    #: SQL giving the hexadecimal UTF-8 bytes of function_name
    HEX: str = ""
    #: hexadecimal digits in upper case (MySQL) or lower case (PostgreSQL)
    UPPER = False
    BEGIN = "BEGIN"

    def _run(self, statements: list[str]) -> list[list[str]]:
        """Run the statements in one client session; the result rows, split at tabs."""
        raise NotImplementedError

    def _count_sql(self, where: str = "") -> str:
        return (
            f"SELECT h, COUNT(*) FROM (SELECT {self.HEX} AS h FROM {self.table}{where}) AS x "  # noqa: S608
            "GROUP BY h"
        )

    def _where(self, functions: Collection[str] | None) -> str:
        if functions is None:
            return ""
        return f" WHERE {self.HEX} IN ({_hex_list(functions, self.UPPER) or 'NULL'})"

    @staticmethod
    def _parse(rows: list[list[str]]) -> dict[str, int]:
        result: dict[str, int] = {}
        for row in rows:
            if len(row) != 2 or not row[1].isdigit():
                raise QueueDatabaseError(f"unexpected line from the database client: {row!r}")
            try:
                name = bytes.fromhex(row[0]).decode("utf-8", "replace")
            except ValueError:  # NULL function names
                name = ""
            result[name] = result.get(name, 0) + int(row[1])
        return result

    def counts(self) -> dict[str, int]:
        return self._parse(self._run([self._count_sql()]))

    def counts_scheduled(self, now: float) -> tuple[dict[str, int], dict[str, int]]:
        sql = (
            f"SELECT h, COUNT(*), SUM(CASE WHEN w > {int(now)} THEN 1 ELSE 0 END) FROM "  # noqa: S608
            f"(SELECT {self.HEX} AS h, when_to_run AS w FROM {self.table}) AS x GROUP BY h"
        )
        rows = self._run([sql])
        counts = self._parse([row[:2] for row in rows])
        later = self._parse([[row[0], row[2]] for row in rows if len(row) == 3])
        return counts, {name: n for name, n in later.items() if n}

    def delete(self, functions: Collection[str] | None) -> dict[str, int]:
        where = self._where(functions)
        delete = f"DELETE FROM {self.table}{where}"  # noqa: S608
        gone = self._parse(self._run([self.BEGIN, self._count_sql(where), delete, "COMMIT"]))
        if functions is not None:
            gone = {name: gone.get(name, 0) for name in functions}
        return gone

    def _execute(self, argv: list[str], env: dict[str, str] | None, client: str) -> list[list[str]]:
        try:
            done = _run_program(argv, self.timeout, env)
        except subprocess.TimeoutExpired as exc:
            raise QueueDatabaseError(
                f"{self.settings.describe()}: {client} did not answer within {self.timeout:g} s"
            ) from exc
        if done.returncode != 0:
            message = " ".join(done.stderr.split()) or f"{client} exited with {done.returncode}"
            raise QueueDatabaseError(f"{self.settings.describe()}: {message}")
        return [line.split("\t") for line in done.stdout.splitlines() if line]


def _run_program(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program (argument list, no shell) to its end, output captured as text."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def _secret_file(prefix: str, text: str) -> Iterator[str]:
    """A temporary file only its owner can read (mkstemp creates it 0600), removed after."""
    fd, path = tempfile.mkstemp(prefix=prefix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _client_program(names: Sequence[str], package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise QueueDatabaseError(
        f"none of the programs {', '.join(names)} is installed; the queue table is read "
        f"through it: install {package}"
    )


class MysqlStore(_ClientStore):
    HEX = "HEX(CONVERT(function_name USING utf8mb4))"
    UPPER = True
    BEGIN = "START TRANSACTION"

    def _run(self, statements: list[str]) -> list[list[str]]:
        s = self.settings
        client = _client_program(("mariadb", "mysql"), "mariadb-client (or mysql-client)")
        args = [
            "--batch",
            "--skip-column-names",
            "--default-character-set=utf8mb4",
            f"--connect-timeout={max(1, int(self.timeout))}",
            f"--database={s.db}",
        ]
        if s.user:
            args.append(f"--user={s.user}")
        if s.socket:
            args.append(f"--socket={s.socket}")
        if s.host:
            args.append(f"--host={s.host}")
        if s.port and not s.socket:
            args.append(f"--port={s.port}")
        args += ["--execute", "; ".join(statements)]
        if not s.password:
            return self._execute([client, *args], None, "the MySQL client")
        escaped = s.password.replace("\\", "\\\\").replace('"', '\\"')
        with _secret_file("gearjob-mysql-", f'[client]\npassword="{escaped}"\n') as path:
            # --defaults-extra-file must come first
            argv = [client, f"--defaults-extra-file={path}", *args]
            return self._execute(argv, None, "the MySQL client")


class PostgresStore(_ClientStore):
    HEX = "encode(convert_to(function_name, 'UTF8'), 'hex')"

    def _run(self, statements: list[str]) -> list[list[str]]:
        s = self.settings
        client = _client_program(("psql",), "postgresql-client")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PG") or k in ("PGSSLMODE", "PGSSLROOTCERT", "PGSERVICEFILE")
        }
        env["PGCONNECT_TIMEOUT"] = str(max(2, int(self.timeout)))
        env["PGAPPNAME"] = "gearjob"
        for key, name in (("host", "PGHOST"), ("user", "PGUSER"), ("db", "PGDATABASE")):
            value = getattr(s, key)
            if value:
                env[name] = value
        if s.port:
            env["PGPORT"] = str(s.port)
        argv = [client, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
        if s.conninfo:
            argv += ["-d", s.conninfo]
        for sql in statements:  # one -c each: psql prints only the last result of a -c
            argv += ["-c", sql]
        if not s.password:
            env.pop("PGPASSFILE", None)
            return self._execute(argv, env, "psql")
        escaped = s.password.replace("\\", "\\\\").replace(":", "\\:")
        with _secret_file("gearjob-pgpass-", f"*:*:*:*:{escaped}\n") as path:
            env["PGPASSFILE"] = path
            return self._execute(argv, env, "psql")


def open_store(settings: DatabaseSettings, timeout: float = DB_TIMEOUT) -> Store:
    """The store for a [sqlite], [mysql] or [postgres] table."""
    stores: dict[str, type[Store]] = {
        "sqlite": SqliteStore,
        "mysql": MysqlStore,
        "postgres": PostgresStore,
    }
    return stores[settings.kind](settings, timeout)


# --------------------------------------------------------------------------- clearing

Echo = Callable[[str], None]
Confirm = Callable[[str], bool]


def server_answers(address: ServerAddress, timeout: float = 2.0) -> bool:
    """True when a gearmand at ``address`` answers the admin ``version`` command."""
    from .protocol import admin_command

    try:
        admin_command(address, "version", timeout=timeout)
    except (GearjobError, OSError):
        return False
    return True


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _control(config: QueueConfig, action: str, echo: Echo) -> None:
    argv = config.control(action)
    shown = shlex.join(argv)
    timeout = config.stop_timeout if action == "stop" else config.start_timeout
    echo(f"{'stopping' if action == 'stop' else 'starting'} gearmand at {config.server}: {shown}")
    try:
        done = _run_program(argv, timeout)
    except FileNotFoundError as exc:
        raise ServiceError(f"cannot {action} gearmand: {argv[0]} not found ({shown})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(
            f"cannot {action} gearmand: {shown} did not finish within {timeout:g} s"
        ) from exc
    if done.returncode != 0:
        output = " ".join((done.stderr or done.stdout).split())
        raise ServiceError(
            f"cannot {action} gearmand: {shown} exited with {done.returncode}: {output}"
        )


def _stop(config: QueueConfig, echo: Echo) -> None:
    _control(config, "stop", echo)
    if not _wait(lambda: not server_answers(config.server, 1.0), config.stop_timeout):
        raise ServiceError(
            f"gearmand at {config.server} still answers {config.stop_timeout:g} s after "
            f"{shlex.join(config.control('stop'))}; nothing was deleted"
        )


def _start(config: QueueConfig, echo: Echo) -> None:
    from .errors import ServerUnavailable

    _control(config, "start", echo)
    if not _wait(lambda: server_answers(config.server, 1.0), config.start_timeout):
        raise ServerUnavailable(
            f"{config.server}: gearmand did not answer within {config.start_timeout:g} s of "
            f"{shlex.join(config.control('start'))}; look at its log",
            str(config.server),
        )
    echo(f"gearmand at {config.server} answers again")


def clear_persistent(
    config: QueueConfig,
    functions: Collection[str] | None,
    *,
    echo: Echo,
    confirm: Confirm,
    offline: bool = False,
) -> dict[str, int]:
    """Delete the queued jobs of ``functions`` (None: all) from a persistent queue.

    Shows what will go (rows per function), asks ``confirm``, stops gearmand, deletes the
    rows, starts gearmand and waits until it answers. ``offline``: gearmand must already be
    stopped (refused if it answers) and is left stopped. Returns the rows deleted per
    function. Raises :class:`Aborted` when not confirmed.
    """
    if config.database is None:
        raise ValueError("clear_persistent() needs a persistent queue")
    store = open_store(config.database)
    before = store.counts()
    chosen = before if functions is None else {name: before.get(name, 0) for name in functions}
    echo(f"persistent queue of gearmand at {config.server}: {config.database.describe()}")
    total = sum(chosen.values())
    if not total:
        echo("no rows to delete: gearmand is left alone")
        return dict.fromkeys(chosen, 0)
    echo(f"to delete: {total} job(s)")
    for name, count in sorted(chosen.items()):
        echo(f"  {_show(name)}: {count}")
    if offline:
        if server_answers(config.server):
            raise ServiceError(
                f"gearmand at {config.server} is running: it keeps every job in memory and "
                "would still run deleted rows; stop it first or leave out --offline; nothing "
                "was deleted"
            )
    else:
        echo(
            "gearmand reads the table only at start-up, so it is stopped, the rows are "
            "deleted, and it is started again. Clients waiting for foreground jobs lose "
            "them; jobs running now are queued again unless their function is cleared."
        )
    if not confirm(f"delete {total} job(s){'' if offline else ' and restart gearmand'}?"):
        raise Aborted("nothing was deleted")
    if not offline:
        _stop(config, echo)
    try:
        gone = store.delete(functions)
    finally:
        if not offline:
            _start(config, echo)
    echo(f"deleted {sum(gone.values())} job(s)")
    return gone


def restart_memory(
    config: QueueConfig, queued: dict[str, int], *, echo: Echo, confirm: Confirm
) -> None:
    """Drop every job of a memory queue by restarting gearmand (``queued``: per function)."""
    total = sum(queued.values())
    echo(
        f"gearmand at {config.server} keeps its queue in memory only: a restart drops every "
        f"queued job of every function ({total} now)"
    )
    for name, count in sorted(queued.items()):
        if count:
            echo(f"  {_show(name)}: {count}")
    if not confirm(f"restart gearmand and drop {total} queued job(s)?"):
        raise Aborted("gearmand was not restarted")
    _stop(config, echo)
    _start(config, echo)


def _show(name: str) -> str:
    """A function name as typed, or its repr when it holds unprintable characters."""
    return name if name.isprintable() and name.strip() == name and name else repr(name)
