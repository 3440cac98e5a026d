"""Filters that read a job server's queue database and account in one command, so that the
gearman_server role skips the database modules when they would change nothing.

The role creates the queue database and its user on the database host with three modules
(the Python driver with apt, then community.mysql's mysql_db and mysql_user, or
community.postgresql's postgresql_user and postgresql_db), each one more round trip to
that host, one job server at a time. A re-run that finds everything in place reads it
instead, with the database's own client, and compares what the modules compare:

- ``db | queue_db_mysql_probe(user, host, driver, socket)``: the argv of one command, run
  on the database host as root, that prints the driver package's dpkg status, then, over
  MariaDB's socket as root: ``schema TAB db`` when the database exists, ``password TAB hash``
  of the account ``user@host``, and the account's ``SHOW GRANTS`` lines;
- ``stdout | queue_db_mysql_is(db, user, host, password, driver)``: true when the driver is
  installed, the database exists, the account's hash is the ``mysql_native_password`` hash of
  ``password`` (what mysql_user computes and compares) and its grants are exactly USAGE on
  ``*.*`` and ALL on the database, without GRANT OPTION (mysql_user's ``priv: DB.*:ALL``,
  which revokes anything else);
- ``db | queue_db_postgres_probe(user, driver)``: the same for PostgreSQL, run as the
  postgres user: the driver, ``password TAB rolpassword`` of the role and ``owner TAB name``
  of the database;
- ``stdout | queue_db_postgres_is(db, user, password, driver)``: true when the driver is
  installed, the role exists, its SCRAM-SHA-256 verifier matches ``password`` (as
  postgresql_user checks it; an empty ``password`` is not compared, as the role passes none),
  and the database exists and is owned by ``user``.

Anything not in the output, or not understood (another password plugin or hash, a grant
the pattern does not read, a password that is not printable ASCII), is "not the same": the
modules then run and decide. The output holds password hashes: the task that runs the
probe is ``no_log``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

# $1 the driver package; the rest depends on the database (see the probes below). dpkg's
# line is the one plugins/filter/host_files.py reads ("package" TAB name TAB status TAB
# version); the client's errors (no such account, no server) leave lines out.
_DPKG = (
    "dpkg-query --show --showformat='package\\t${Package}\\t${db:Status-Status}"
    '\\t${Version}\\n\' -- "$1" 2>/dev/null\n'
)
_MYSQL = _DPKG + (
    "client=$(command -v mariadb || command -v mysql) || exit 0\n"
    '"$client" --protocol=socket --socket="$2" --user=root --batch --skip-column-names'
    ' --force --execute="$3" 2>/dev/null\n'
    "exit 0\n"
)
_POSTGRES = _DPKG + (
    "psql --no-psqlrc --quiet --tuples-only --no-align --field-separator=\"$(printf '\\t')\""
    ' --dbname=postgres --command="$2" 2>/dev/null\n'
    "exit 0\n"
)
_GRANT_RE = re.compile(
    r"""GRANT (.+) ON (.+) TO (['`"]).*\3@(['`"]).*\4( IDENTIFIED BY PASSWORD (['`"]).+\6)? ?(.*)"""
)
_SCRAM_RE = re.compile(
    r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$"
)


def _sql_string(value: str, backslash: bool = True) -> str:
    """``value`` as an SQL string literal (MariaDB reads a backslash as an escape by default,
    PostgreSQL as itself)."""
    if not isinstance(value, str):
        raise TypeError(
            f"queue database probe: a database, user or host name is a string, got {value!r}"
        )
    if backslash:
        value = value.replace("\\", "\\\\")
    return "'" + value.replace("'", "''") + "'"


def queue_db_mysql_probe(
    db: str, user: str, host: str, driver: str, socket: str
) -> list[str]:
    sql = (
        "SELECT 'schema', SCHEMA_NAME FROM information_schema.SCHEMATA"
        f" WHERE SCHEMA_NAME = {_sql_string(db)};"
        " SELECT 'password', COALESCE(NULLIF(Password, ''), NULLIF(authentication_string, ''), '')"
        f" FROM mysql.user WHERE User = {_sql_string(user)} AND Host = {_sql_string(host)};"
        f" SHOW GRANTS FOR {_sql_string(user)}@{_sql_string(host)};"
    )
    return ["sh", "-c", _MYSQL, "sh", driver, socket, sql]


def queue_db_postgres_probe(db: str, user: str, driver: str) -> list[str]:
    sql = (
        "SELECT 'password', COALESCE(rolpassword, '') FROM pg_authid"
        f" WHERE rolname = {_sql_string(user, backslash=False)}"
        " UNION ALL SELECT 'owner', pg_get_userbyid(datdba)::text FROM pg_database"
        f" WHERE datname = {_sql_string(db, backslash=False)}"
    )
    return ["sh", "-c", _POSTGRES, "sh", driver, sql]


def _rows(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in (stdout or "").splitlines()]


def _driver_installed(rows: list[list[str]], driver: str) -> bool:
    return any(
        len(row) == 4
        and row[0] == "package"
        and row[1] == driver
        and row[2] == "installed"
        for row in rows
    )


def _values(rows: list[list[str]], key: str) -> list[str]:
    return [row[1] for row in rows if len(row) == 2 and row[0] == key]


def _grants(lines: list[str]) -> dict[str, set[str]] | None:
    """The grants as mysql_user reads them: {db_table: {privilege}}, None when one is not read."""
    grants: dict[str, set[str]] = {}
    for line in lines:
        match = _GRANT_RE.match(line)
        if match is None:
            return None
        privileges = {
            "ALL" if p.strip() == "ALL PRIVILEGES" else p.strip()
            for p in match.group(1).split(",")
        }
        if "WITH GRANT OPTION" in match.group(7):
            privileges.add("GRANT")
        grants.setdefault(match.group(2), set()).update(privileges)
    return grants


def queue_db_mysql_is(
    stdout: str, db: str, user: str, host: str, password: str, driver: str
) -> bool:
    rows = _rows(stdout)
    if not _driver_installed(rows, driver) or _values(rows, "schema") != [db]:
        return False
    # mysql_native_password: "*" and the upper-case hex of SHA1(SHA1(password)).
    inner = hashlib.sha1(str(password).encode()).digest()
    wanted = "*" + hashlib.sha1(inner).hexdigest().upper()
    if _values(rows, "password") != [wanted]:
        return False
    quoted_db = "`" + db.replace("`", "``") + "`.*"
    grants = _grants(
        [row[0] for row in rows if len(row) == 1 and row[0].startswith("GRANT ")]
    )
    return grants == {"*.*": {"USAGE"}, quoted_db: {"ALL"}}


def _scram_matches(verifier: str, password: str) -> bool:
    match = _SCRAM_RE.match(verifier)
    # SASLprep leaves printable ASCII as it is; anything else is left to postgresql_user.
    if match is None or not re.fullmatch(r"[\x20-\x7e]+", password):
        return False
    salted = hashlib.pbkdf2_hmac(
        "sha256",
        password.encode(),
        base64.b64decode(match.group(2)),
        int(match.group(1)),
    )
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hmac.compare_digest(server_key, base64.b64decode(match.group(4)))


def queue_db_postgres_is(
    stdout: str, db: str, user: str, password: str, driver: str
) -> bool:
    rows = _rows(stdout)
    verifiers = _values(rows, "password")
    if not _driver_installed(rows, driver) or len(verifiers) != 1:
        return False
    if password and not _scram_matches(verifiers[0], str(password)):
        return False
    return _values(rows, "owner") == [user]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "queue_db_mysql_probe": queue_db_mysql_probe,
            "queue_db_mysql_is": queue_db_mysql_is,
            "queue_db_postgres_probe": queue_db_postgres_probe,
            "queue_db_postgres_is": queue_db_postgres_is,
        }
