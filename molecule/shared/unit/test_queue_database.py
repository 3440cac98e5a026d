"""The queue database filters: one command reads the driver, the database and the account on
the database host, and the database modules are skipped only when they would change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

from filter_plugins import load_filter

queue_database = load_filter("queue_database")

NATIVE = "*" + hashlib.sha1(hashlib.sha1(b"s3cret").digest()).hexdigest().upper()
DRIVER = "package\tpython3-pymysql\tinstalled\t1.0.2-2\n"
MYSQL_OUT = (
    DRIVER
    + "schema\tgearman_s1\n"
    + f"password\t{NATIVE}\n"
    + f"GRANT USAGE ON *.* TO `gearman_s1`@`172.31.0.3` IDENTIFIED BY PASSWORD '{NATIVE}'\n"
    + "GRANT ALL PRIVILEGES ON `gearman_s1`.* TO `gearman_s1`@`172.31.0.3`\n"
)
ACCOUNT = ("gearman_s1", "gearman_s1", "172.31.0.3")


def mysql_is(out: str, password: str = "s3cret") -> bool:
    return bool(
        queue_database.queue_db_mysql_is(out, *ACCOUNT, password, "python3-pymysql")
    )


def test_the_filters_are_registered() -> None:
    assert set(queue_database.FilterModule().filters()) == {
        "queue_db_mysql_probe",
        "queue_db_mysql_is",
        "queue_db_postgres_probe",
        "queue_db_postgres_is",
    }


def test_a_mysql_account_in_place_is_the_same() -> None:
    assert mysql_is(MYSQL_OUT)


def test_whatever_the_mysql_modules_would_change_is_not_the_same() -> None:
    assert not mysql_is(MYSQL_OUT, password="other")
    assert not mysql_is(MYSQL_OUT.replace(DRIVER, ""))
    assert not mysql_is(MYSQL_OUT.replace("installed", "config-files"))
    assert not mysql_is(MYSQL_OUT.replace("schema\tgearman_s1\n", ""))
    assert not mysql_is(MYSQL_OUT.replace(f"password\t{NATIVE}\n", ""))
    # A grant more, less, or with GRANT OPTION: mysql_user would revoke or grant.
    assert not mysql_is(
        MYSQL_OUT + "GRANT SELECT ON `other`.* TO `gearman_s1`@`172.31.0.3`\n"
    )
    assert not mysql_is(
        MYSQL_OUT.replace("GRANT ALL PRIVILEGES", "GRANT SELECT, INSERT")
    )
    assert not mysql_is(
        MYSQL_OUT.replace(
            "`gearman_s1`@`172.31.0.3`\n",
            "`gearman_s1`@`172.31.0.3` WITH GRANT OPTION\n",
        )
    )
    # A line the pattern does not read (a role granted to the account).
    assert not mysql_is(MYSQL_OUT + "GRANT `admin` TO `gearman_s1`@`172.31.0.3`\n")
    assert not mysql_is("")


def scram(
    password: str, salt: bytes = b"0123456789abcdef", iterations: int = 4096
) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = [base64.b64encode(x).decode() for x in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


def test_a_postgres_role_and_database_in_place_are_the_same() -> None:
    out = f"package\tpython3-psycopg2\tinstalled\t2.9.5-1\npassword\t{scram('pw')}\nowner\tgearman\n"

    def same(text: str, password: str = "pw") -> bool:
        return bool(
            queue_database.queue_db_postgres_is(
                text, "gearman", "gearman", password, "python3-psycopg2"
            )
        )

    assert same(out)
    assert not same(out, password="other")
    assert not same(out.replace("owner\tgearman", "owner\tpostgres"))
    assert not same(out.replace("owner\tgearman\n", ""))
    assert not same(out.replace(scram("pw"), "md5" + "0" * 32))
    assert not same(out, password="p\u00e4ss")  # left to postgresql_user (SASLprep)
    # No password asked for (a socket login): the role only has to exist.
    no_password = out.replace(scram("pw"), "")
    assert same(no_password, password="")
    assert not same(no_password.replace("password\t\n", ""), password="")


def fake_clients(tmp_path: Path) -> dict[str, str]:
    """A PATH whose dpkg-query, mariadb and psql print their arguments, one a line."""
    for name in ("dpkg-query", "mariadb", "psql"):
        tool = tmp_path / name
        tool.write_text(
            f'#!/bin/sh\necho {name}\nfor a; do printf "%s\\n" "$a"; done\n'
        )
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}


def test_the_mysql_probe_passes_the_names_as_sql_literals(tmp_path: Path) -> None:
    argv = queue_database.queue_db_mysql_probe(
        "db'1", "us\\er", "10.0.0.1", "python3-pymysql", "/run/mysqld/mysqld.sock"
    )
    out = subprocess.run(
        argv, env=fake_clients(tmp_path), capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert lines[:3] == ["dpkg-query", "--show", lines[2]]
    assert "python3-pymysql" in lines
    assert "--socket=/run/mysqld/mysqld.sock" in lines
    sql = next(line for line in lines if line.startswith("--execute="))
    assert "SCHEMA_NAME = 'db''1'" in sql
    assert "User = 'us\\\\er' AND Host = '10.0.0.1'" in sql
    assert "SHOW GRANTS FOR 'us\\\\er'@'10.0.0.1';" in sql


def test_the_postgres_probe_runs_psql_with_tab_separated_fields(tmp_path: Path) -> None:
    argv = queue_database.queue_db_postgres_probe(
        "gear'man", "us\\er", "python3-psycopg2"
    )
    out = subprocess.run(
        argv, env=fake_clients(tmp_path), capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert "psql" in lines
    assert "--field-separator=\t" in lines
    sql = next(line for line in lines if line.startswith("--command="))
    assert "rolname = 'us\\er'" in sql
    assert "datname = 'gear''man'" in sql
