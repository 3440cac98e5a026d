"""The Islandora Job wire format (pure logic: no server needed)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearjob.errors import PayloadError
from gearjob.payload import (
    JobRequest,
    decode_exception,
    decode_request,
    decode_result,
    encode_exception,
    encode_request,
    encode_result,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_encode_request_envelope() -> None:
    data = encode_request("my_job", ["a", 1, {"k": [True, None]}], site="http://x/", uid=7)
    assert data.isascii()
    assert json.loads(data) == {
        "func": "my_job",
        "args": ["a", 1, {"k": [True, None]}],
        "site": "http://x/",
        "uid": 7,
        "gearjob": 1,
    }
    assert b" " not in data  # compact


def test_encode_request_non_ascii_is_escaped_and_exact() -> None:
    text = "naïve — 日本語 \U0001f389"
    data = encode_request("j", [text])
    assert data.isascii()
    assert "\\ud83c\\udf89" in data.decode()
    assert decode_request("j", data).args == [text]


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ({1, 2}, r"argument 2 of job my_job \(set\): Object of type set is not JSON serializable"),
        (b"bytes", r"argument 2 of job my_job \(bytes\)"),
        (math.nan, r"argument 2 of job my_job \(float\): Out of range float"),
        (math.inf, r"argument 2 of job my_job \(float\)"),
        ([object()], r"argument 2 of job my_job \(list\): Object of type object"),
        ({"k": {1j}}, r"argument 2 of job my_job \(dict\)"),
    ],
)
def test_encode_request_rejects_what_json_cannot_carry(arg: Any, match: str) -> None:
    with pytest.raises(PayloadError, match=match) as info:
        encode_request("my_job", ["fine", arg])
    assert "pass JSON types" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_encode_request_rejects_bad_site() -> None:
    with pytest.raises(PayloadError, match=r"site of job j \(set\)"):
        encode_request("j", [], site={1})  # type: ignore[arg-type]


def test_decode_request_islandora_php_style() -> None:
    # what PHP json_encode() with default flags produces: "\/" and "\uXXXX" escapes
    workload = (
        b'{"func":"islandora_job_ocr","args":["http:\\/\\/example.org\\/islandora\\/object\\/'
        b'a:1","caf\\u00e9 \\ud83d\\ude00"],"site":"http:\\/\\/example.org","uid":"1"}'
    )
    req = decode_request("islandora_job_ocr", workload)
    assert req == JobRequest(
        func="islandora_job_ocr",
        args=["http://example.org/islandora/object/a:1", "café \U0001f600"],
        kwargs={},
        site="http://example.org",
        uid="1",
        json_results=False,
        extra={},
    )


def test_decode_request_gearjob_client_and_extras() -> None:
    workload = encode_request("j", [1], site="s", uid=2)
    req = decode_request("j", workload)
    assert req.json_results is True
    assert (req.args, req.site, req.uid) == ([1], "s", 2)
    req = decode_request("j", b'{"args": {"a": 1}, "trace": "abc", "gearjob": 0}')
    assert req.kwargs == {"a": 1}
    assert req.args == []
    assert req.json_results is False
    assert req.extra == {"trace": "abc"}
    assert decode_request("j", b"{}").args == []
    assert decode_request("j", b'{"args": null}').args == []
    assert decode_request("j", bytearray(b'{"args": [1]}')).args == [1]


@pytest.mark.parametrize(
    ("workload", "match"),
    [
        (b"\xff\xfe{}", r"workload of job j is not valid UTF-8 \(byte 0\)"),
        (b"", "is not valid JSON"),
        (b"{", "is not valid JSON"),
        (b"{'a': 1}", "is not valid JSON"),
        (b"[1, 2]", "is a JSON array, expected an object"),
        (b'"text"', "is a JSON string, expected an object"),
        (b"null", "is a JSON null"),
        (b"12", "is a JSON number"),
        (b"NaN", r"not valid JSON \(NaN is not a JSON value"),
        (b'{"args": [1, -Infinity]}', r"not valid JSON \(-Infinity is not a JSON value"),
        (b'{"args": [' + b"9" * 5000 + b"]}", r"not valid JSON \(Exceeds the limit"),
        (b'{"func": "other", "args": []}', "names another job.*func = 'other'"),
        (b'{"args": "x"}', '"args" is a JSON string, expected a list'),
        (b'{"args": 3}', '"args" is a JSON number'),
        (b'{"args": true}', '"args" is a JSON boolean'),
        (b'{"args": [' + b"[" * 150 + b"]" * 150 + b"]}", "nested deeper than 100 levels"),
        (b"[" * 100_000, "nested deeper than 100 levels|not valid JSON"),
    ],
)
def test_decode_request_malformed(workload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        decode_request("j", workload)


def test_decode_request_depth_limit_is_configurable() -> None:
    workload = b'{"args": [[[1]]]}'
    assert decode_request("j", workload, max_depth=4).args == [[[1]]]
    with pytest.raises(PayloadError, match="deeper than 3"):
        decode_request("j", workload, max_depth=3)
    # brackets inside strings do not count
    assert decode_request("j", b'{"args": ["[[[[[[[["]}', max_depth=2).args == ["[[[[[[[["]


@settings(max_examples=80, deadline=None)
@given(
    args=st.lists(json_values, max_size=5),
    site=st.none() | st.text(),
    uid=st.none() | st.integers(),
)
def test_request_round_trip(args: list[Any], site: str | None, uid: int | None) -> None:
    req = decode_request("job", encode_request("job", args, site=site, uid=uid))
    assert req.args == args
    assert (req.site, req.uid, req.json_results) == (site, uid, True)


@settings(max_examples=80, deadline=None)
@given(name=st.text(min_size=1), args=st.lists(json_values, max_size=4), as_tuple=st.booleans())
def test_encode_request_fast_path_gives_the_whole_envelope(
    name: str, args: list[Any], as_tuple: bool
) -> None:
    """Without site and uid only the arguments are encoded, between cached affixes: the
    bytes must be those of the whole envelope encoded at once, whatever the job name."""
    whole = json.dumps(
        {"gearjob": 1, "func": name, "args": args, "site": None, "uid": None},
        separators=(",", ":"),
    ).encode("ascii")
    assert encode_request(name, tuple(args) if as_tuple else args) == whole
    assert encode_request(name, args) == whole  # again: from the cache


@settings(max_examples=80, deadline=None)
@given(value=json_values)
def test_result_round_trip_json(value: Any) -> None:
    assert decode_result(encode_result(value, json_results=True)) == value


def test_encode_result_for_php_clients() -> None:
    assert encode_result("héllo", json_results=False) == "héllo".encode()
    assert encode_result(b"\x00\xff", json_results=False) == b"\x00\xff"
    assert encode_result(bytearray(b"ab"), json_results=False) == b"ab"
    assert encode_result(None, json_results=False) == b""
    assert encode_result({"a": [1]}, json_results=False) == b'{"a":[1]}'
    assert encode_result(True, json_results=False) == b"true"
    # for gearjob clients even strings are JSON, so the type survives
    assert encode_result("42", json_results=True) == b'"42"'
    assert decode_result(encode_result("42", json_results=True)) == "42"


def test_encode_result_errors() -> None:
    with pytest.raises(PayloadError, match=r"result \(set\) cannot be sent"):
        encode_result({1}, json_results=True)
    with pytest.raises(PayloadError, match=r"result \(bytes\) cannot be sent"):
        encode_result(b"x", json_results=True)
    with pytest.raises(PayloadError, match="UTF-8"):
        encode_result("\ud800", json_results=False)


def test_decode_result_tolerates_plain_workers() -> None:
    assert decode_result(b"") is None
    assert decode_result(b"null") is None
    assert decode_result(b"[1,2]") == [1, 2]
    assert decode_result(b"plain text from php") == "plain text from php"
    assert decode_result("ünï".encode()) == "ünï"
    assert decode_result(b"\xff\x00") == b"\xff\x00"


class CustomError(Exception):
    pass


def test_exception_round_trip() -> None:
    data = encode_exception(ValueError("boom ✓"))
    assert json.loads(data) == {"type": "ValueError", "message": "boom ✓"}
    assert decode_exception(data) == ("ValueError", "boom ✓")
    assert decode_exception(encode_exception(CustomError("x"))) == (
        f"{__name__}.CustomError",
        "x",
    )
    assert decode_exception(encode_exception(KeyError("k"))) == ("KeyError", "'k'")


def test_decode_exception_plain_text() -> None:
    assert decode_exception(b"PHP Fatal error: oops") == (None, "PHP Fatal error: oops")
    assert decode_exception(b'["not", "an", "object"]') == (None, '["not", "an", "object"]')
    assert decode_exception(b'{"type": 3, "message": "m"}') == (None, "m")
    assert decode_exception(b"\xff") == (None, "\ufffd")


def test_encode_request_rejects_circular_and_too_deep() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PayloadError, match=r"argument 1 of job j \(list\): Circular reference"):
        encode_request("j", [loop])
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(PayloadError, match=r"argument 1 of job j \(list\)"):
        encode_request("j", [deep])
