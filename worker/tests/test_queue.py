"""The queue configuration (queue.toml), how the database clients are called, and
`gearjob clear` with a memory queue."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

from gearjob import cli, queue
from gearjob.client import Client
from gearjob.config import ServerAddress
from gearjob.errors import ConfigError
from gearjob.protocol import server_status

pytest_plugins = ["db_fixtures"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queue.toml"
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------------- queue.toml


def test_the_documented_example_parses(tmp_path):
    doc = queue.__doc__ or ""
    example = doc.split("::\n\n", 1)[1].split("\n\nOnly the table", 1)[0]
    config = queue.load_queue_config(write(tmp_path, example))
    assert config.type == "sqlite" and config.persistent
    assert config.server == ServerAddress("127.0.0.1", 4730)
    assert config.control("stop") == ["systemctl", "stop", "gearman-job-server"]
    assert config.database == queue.DatabaseSettings(
        "sqlite", "gearman_queue", path="/var/lib/gearman/queue.sqlite3"
    )
    for kind, table in (("mysql", "gearman_queue"), ("postgres", "queue")):
        other = queue.load_queue_config(write(tmp_path, example.replace('"sqlite"', f'"{kind}"')))
        assert other.database is not None
        assert (other.database.kind, other.database.table) == (kind, table)
        assert other.database.password == "secret"
        assert "secret" not in repr(other)


def test_defaults_per_type(tmp_path):
    memory = queue.load_queue_config(write(tmp_path, 'type = "memory"'))
    assert not memory.persistent
    assert (memory.stop_timeout, memory.start_timeout) == (60.0, 60.0)
    pg = queue.load_queue_config(write(tmp_path, 'type = "postgres"\n[postgres]\ndb = "g"\n'))
    assert pg.database == queue.DatabaseSettings("postgres", "queue", port=5432, db="g")
    my = queue.load_queue_config(write(tmp_path, 'type = "mysql"\n[mysql]\ndb = "g"\n'))
    assert my.database == queue.DatabaseSettings("mysql", "gearman_queue", port=3306, db="g")
    assert my.database.describe() == "mysql localhost:3306/g, table gearman_queue"


def test_commands_replace_systemctl(tmp_path):
    config = queue.load_queue_config(
        write(
            tmp_path,
            """\
            type = "memory"
            service = ""
            stop_command = ["supervisorctl", "stop", "gearmand; rm -rf /"]
            start_command = ["supervisorctl", "start", "gearmand"]
            """,
        )
    )
    assert config.control("stop") == ["supervisorctl", "stop", "gearmand; rm -rf /"]
    no_way = queue.load_queue_config(write(tmp_path, 'type = "memory"\nservice = ""\n'))
    with pytest.raises(ConfigError, match="service is empty and there is no stop_command"):
        no_way.control("stop")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "type is missing; set it to one of memory, sqlite, mysql, postgres"),
        ('type = "redis"', "type = 'redis' is invalid: expected one of memory, sqlite"),
        ('type = "memory"\ncolour = 1', "unknown key 'colour'"),
        ('type = "sqlite"', "type = 'sqlite' needs a [sqlite] table"),
        ('type = "sqlite"\n[sqlite]\ntable = "t"', "[sqlite] needs path"),
        ('type = "mysql"\n[mysql]\nhost = "h"', "[mysql] needs db"),
        (
            'type = "sqlite"\n[sqlite]\npath = "/q"\ntable = "gearman_queue; DROP TABLE x"',
            "sqlite.table = 'gearman_queue; DROP TABLE x' is invalid: expected a table name",
        ),
        ('type = "mysql"\n[mysql]\ndb = "g"\ntable = "1abc"', "mysql.table = '1abc' is invalid"),
        ('type = "mysql"\n[mysql]\ndb = "g"\nport = 70000', "mysql.port = 70000 is invalid"),
        ('type = "mysql"\n[mysql]\ndb = "g"\nuser = ""', "mysql.user = '' is invalid"),
        ('type = "mysql"\n[mysql]\ndb = "g"\npasswd = "x"', "unknown key 'mysql.passwd'"),
        ('type = "mysql"\n[mysql]\ndb = "g"\npassword = "a\\nb"', "mysql.password = '***'"),
        (
            'type = "postgres"\n[postgres]\nconninfo = "host=h password=x"',
            "postgres.conninfo must not hold the password",
        ),
        (
            'type = "postgres"\n[postgres]\nconninfo = "postgresql://u:pw@h/db"',
            "postgres.conninfo must not hold the password",
        ),
        (
            'type = "postgres"\n[postgres]\nconninfo = "postgresql://u@h/db?password=pw"',
            "it sets password, which would show on psql's command line): "
            "postgresql://u@h/db?password=***;",
        ),
        (
            'type = "postgres"\n[postgres]\nconninfo = "postgres://h/db?sslpassword=k"',
            "it sets sslpassword",
        ),
        (
            'type = "postgres"\n[postgres]\nconninfo = "host=h  sslpassword = \'a b\'"',
            "host=h sslpassword=***;",
        ),
        (
            'type = "postgres"\n[postgres]\nconninfo = "host=h dbname=\'q"',
            "cannot be read: unterminated quoted value",
        ),
        ('type = "memory"\nservice = "--now"', "service = '--now' is invalid"),
        ('type = "memory"\nstop_command = ["x"]', "set both stop_command and start_command"),
        ('type = "memory"\nstop_command = "x"\nstart_command = ["y"]', "stop_command = 'x'"),
        ('type = "memory"\nstart_timeout = 0', "start_timeout = 0 is invalid"),
        ('type = "memory"\nserver = "h:0"', "server:"),
    ],
)
def test_bad_files_name_file_key_and_value(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        queue.load_queue_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        queue.load_queue_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        queue.load_queue_config(write(tmp_path, "type = "))


# ----------------------------------------------------------------------------- secrets


FAKE_CLIENT = """\
#!{python}
import json, os, sys
record = {{"argv": sys.argv, "env": {{k: v for k, v in os.environ.items() if k.startswith("PG")}}}}
for arg in sys.argv:
    if arg.startswith("--defaults-extra-file="):
        path = arg.split("=", 1)[1]
        record["file"] = [oct(os.stat(path).st_mode & 0o777), open(path).read()]
if "PGPASSFILE" in os.environ:
    path = os.environ["PGPASSFILE"]
    record["file"] = [oct(os.stat(path).st_mode & 0o777), open(path).read()]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(record) + "\\n")
print("666e31\\t3")
"""


@pytest.fixture
def fake_clients(tmp_path, monkeypatch):
    """`mariadb` and `psql` programs that record how they were called."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    for name in ("mariadb", "psql"):
        program = bin_dir / name
        program.write_text(FAKE_CLIENT.format(python=sys.executable, log=str(log)))
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls


PASSWORD = "p\"w'd\\#: x"


def test_the_mysql_password_goes_through_a_private_option_file(fake_clients):
    settings = queue.DatabaseSettings(
        "mysql", "gearman_queue", host="db", port=3307, user="gearman", password=PASSWORD, db="g"
    )
    assert queue.open_store(settings).counts() == {"fn1": 3}
    [call] = fake_clients()
    assert not any(PASSWORD in arg for arg in call["argv"])
    assert call["argv"][1].startswith("--defaults-extra-file=")  # it must come first
    assert call["file"] == ["0o600", '[client]\npassword="p\\"w\'d\\\\#: x"\n']
    assert not os.path.exists(call["argv"][1].split("=", 1)[1])  # removed afterwards
    assert {"--host=db", "--port=3307", "--user=gearman", "--database=g"} <= set(call["argv"])


def test_the_postgres_password_goes_through_a_private_passfile(fake_clients):
    settings = queue.DatabaseSettings(
        "postgres", "queue", host="db", port=5433, user="gearman", password=PASSWORD, db="g"
    )
    assert queue.open_store(settings).delete(["fn1", "it's"]) == {"fn1": 3, "it's": 0}
    [call] = fake_clients()
    assert not any(PASSWORD in arg for arg in call["argv"])
    assert "PGPASSWORD" not in call["env"]
    assert call["file"] == ["0o600", "*:*:*:*:p\"w'd\\\\#\\: x\n"]
    assert not os.path.exists(call["env"]["PGPASSFILE"])
    assert {k: call["env"][k] for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")} == {
        "PGHOST": "db",
        "PGPORT": "5433",
        "PGUSER": "gearman",
        "PGDATABASE": "g",
    }
    statements = [call["argv"][i + 1] for i, a in enumerate(call["argv"]) if a == "-c"]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    # function names reach SQL only as hexadecimal digits
    assert "IN ('666e31', '69742773')" in statements[2] and "it's" not in " ".join(statements)


def test_a_missing_client_program_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    store = queue.open_store(queue.DatabaseSettings("postgres", "queue", db="g"))
    with pytest.raises(queue.QueueDatabaseError, match="install postgresql-client"):
        store.counts()


def test_secret_files_are_private_and_removed():
    with queue._secret_file("gearjob-test-", "s3cret") as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Path(path).read_text() == "s3cret"
    assert not os.path.exists(path)


# ----------------------------------------------------------------------------- memory queue


@pytest.fixture
def memory_service(gearmand_service, tmp_path):
    service = gearmand_service()
    return service, str(service.queue_toml(tmp_path / "queue.toml", "memory", None))


def test_memory_queue_refuses_to_clear_one_function(memory_service, capsys):
    service, config = memory_service
    with Client([service.address]) as client:
        client.submit_background("fn_a", 1)
    assert cli.main(["clear", "--queue-config", config, "--function", "fn_a", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "is in memory" in err and "cannot delete the queued jobs of one function" in err
    assert "--all --restart-memory-queue" in err
    assert cli.main(["clear", "--queue-config", config, "--all", "--yes"]) == 2
    assert "pass --all --restart-memory-queue" in capsys.readouterr().err
    assert [s.queued for s in server_status(service.address) if s.function == "fn_a"] == [1]


def test_memory_queue_restart_drops_every_queued_job(memory_service, capsys):
    service, config = memory_service
    with Client([service.address]) as client:
        for i in range(3):
            client.submit_background("fn_a", i)
        client.submit_background("fn_b", 1)
    argv = ["clear", "--queue-config", config, "--all", "--restart-memory-queue", "--yes"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "drops every queued job of every function (4 now)\n  fn_a: 3\n  fn_b: 1\n" in out
    assert f"gearmand at {service} answers again" in out
    assert sum(s.total for s in server_status(service.address)) == 0


def test_persistent_only_flags_are_refused_for_the_other_kind(memory_service, tmp_path, capsys):
    _, config = memory_service
    assert cli.main(["clear", "--queue-config", config, "--all", "--offline", "--yes"]) == 2
    assert "--offline deletes rows of a persistent queue" in capsys.readouterr().err
    sqlite = write(tmp_path, f'type = "sqlite"\n[sqlite]\npath = "{tmp_path / "q.db"}"\n')
    argv = ["clear", "--queue-config", str(sqlite), "--all", "--restart-memory-queue"]
    assert cli.main(argv) == 2
    assert "--restart-memory-queue is for a memory queue" in capsys.readouterr().err


def test_clear_needs_a_queue_config_and_a_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(queue, "QUEUE_CONFIG", str(tmp_path / "absent.toml"))
    assert cli.main(["clear", "--all", "--yes"]) == 3
    assert "no queue configuration" in capsys.readouterr().err
    assert cli.main(["clear", "--yes"]) == 2  # neither --function nor --all
    assert cli.main(["clear", "--all", "--function", "x"]) == 2


def test_a_missing_sqlite_file_exits_4(tmp_path, capsys):
    config = write(tmp_path, f'type = "sqlite"\n[sqlite]\npath = "{tmp_path / "q.db"}"\n')
    assert cli.main(["clear", "--queue-config", str(config), "--all", "--yes"]) == 4
    assert "does not exist; gearmand creates it at start-up" in capsys.readouterr().err
