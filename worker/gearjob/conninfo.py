"""PostgreSQL connection strings (libpq "conninfo"): parse both forms, find secrets, redact.

libpq takes ``host=db1 port=5432 dbname=q`` (values may be single-quoted, with ``\\'`` and
``\\\\`` escapes) and URIs ``postgresql://user:password@host:port/db?key=value``. gearjob
passes the conninfo on psql's command line, where every local user can read it (``ps``), so
a conninfo must hold no secret: :func:`secrets_in` finds them in either form, and
:func:`redact` hides them wherever a conninfo is printed.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

#: conninfo keys whose value is a secret
SECRET_KEYS = frozenset(("password", "sslpassword"))
_URI = re.compile(r"^postgres(ql)?://", re.IGNORECASE)
_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")


def is_uri(conninfo: str) -> bool:
    return bool(_URI.match(conninfo))


def parse(conninfo: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of a conninfo in either form; ValueError when malformed."""
    if is_uri(conninfo):
        return _parse_uri(conninfo)
    return _parse_pairs(conninfo)


def _parse_uri(conninfo: str) -> list[tuple[str, str]]:
    parts = urlsplit(conninfo)
    pairs: list[tuple[str, str]] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            pairs.append(("user", unquote(user)))
        if colon:
            pairs.append(("password", unquote(password)))
    pairs += parse_qsl(parts.query, keep_blank_values=True)
    return pairs


def _parse_pairs(conninfo: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    pos = 0
    text = conninfo.rstrip()
    while pos < len(text):
        match = _PAIR.match(text, pos)
        if match is None:
            raise ValueError(f"expected key=value at {text[pos : pos + 20]!r}")
        key, pos = match.group(1), match.end()
        value, pos = _value(text, pos)
        pairs.append((key, value))
    return pairs


def _value(text: str, pos: int) -> tuple[str, int]:
    """One value from ``pos``: quoted or up to white space; (value, position after it)."""
    quoted = pos < len(text) and text[pos] == "'"
    if quoted:
        pos += 1
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    if quoted:
        raise ValueError("unterminated quoted value")
    return "".join(out), pos


def secrets_in(conninfo: str) -> list[str]:
    """The secret keys (password, sslpassword) a conninfo sets; ValueError when malformed."""
    return sorted({key.lower() for key, _ in parse(conninfo) if key.lower() in SECRET_KEYS})


def redact(conninfo: str) -> str:
    """``conninfo`` fit to print: every secret value replaced by ``***`` (a conninfo that
    cannot be parsed is not shown at all)."""
    try:
        pairs = parse(conninfo)
    except ValueError:
        return "(a conninfo that cannot be parsed)"
    if not any(key.lower() in SECRET_KEYS for key, _ in pairs):
        return conninfo
    if is_uri(conninfo):
        parts = urlsplit(conninfo)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        query = "&".join(
            f"{key}=***" if key.lower() in SECRET_KEYS else f"{key}={value}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        netloc = f"{userinfo}@{hostport}" if at else hostport
        return parts._replace(netloc=netloc, query=query).geturl()
    return " ".join(
        f"{key}=***" if key.lower() in SECRET_KEYS else f"{key}={_quote(value)}"
        for key, value in pairs
    )


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
