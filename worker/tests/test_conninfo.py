"""PostgreSQL conninfo strings: both forms parsed, secrets found and redacted."""

from __future__ import annotations

import pytest

from gearjob.conninfo import parse, redact, secrets_in


@pytest.mark.parametrize(
    ("conninfo", "pairs"),
    [
        ("host=db1 port=5432", [("host", "db1"), ("port", "5432")]),
        ("host = db1  dbname='my q'", [("host", "db1"), ("dbname", "my q")]),
        (r"application_name='it\'s' x=a\ b", [("application_name", "it's"), ("x", "a b")]),
        ("", []),
        ("postgresql://u%40x@h:5/db", [("user", "u@x")]),
        ("postgres://h/db?sslmode=require&password=", [("sslmode", "require"), ("password", "")]),
        ("POSTGRESQL://u:p%3Aw@h", [("user", "u"), ("password", "p:w")]),
    ],
)
def test_parse_both_forms(conninfo, pairs):
    assert parse(conninfo) == pairs


@pytest.mark.parametrize(
    ("conninfo", "found"),
    [
        ("host=h password=x", ["password"]),
        ("host=h PASSWORD=x", ["password"]),
        ("host=h sslpassword='a b'", ["sslpassword"]),
        ("postgresql://u:pw@h/db", ["password"]),
        ("postgresql://u:@h/db", ["password"]),
        ("postgresql://u@h/db?password=pw", ["password"]),
        ("postgresql://h/db?sslpassword=k&password=p", ["password", "sslpassword"]),
        ("host=h dbname=password", []),
        ("postgresql://u@h/password", []),
    ],
)
def test_secrets_are_found_in_either_form(conninfo, found):
    assert secrets_in(conninfo) == found


@pytest.mark.parametrize("bad", ["host", "host=h =x", "dbname='open"])
def test_malformed_key_value_strings_are_refused(bad):
    with pytest.raises(ValueError):
        parse(bad)


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("host=h password=secret", "host=h password=***"),
        ("host=h dbname='a b' sslpassword=secret", "host=h dbname='a b' sslpassword=***"),
        (
            "postgresql://u:secret@h:5/db?sslmode=require",
            "postgresql://u:***@h:5/db?sslmode=require",
        ),
        ("postgresql://u@h/db?password=secret&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("host=h dbname=q", "host=h dbname=q"),
        ("dbname='open password=secret", "(a conninfo that cannot be parsed)"),
    ],
)
def test_redact_hides_every_secret(conninfo, shown):
    assert redact(conninfo) == shown
    assert "secret" not in redact(conninfo)
