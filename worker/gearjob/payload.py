"""The Islandora Job wire format: JSON workloads, results and exceptions.

A client sends the workload ``{"func": job_name, "args": [...], "site": ..., "uid": ...}``
(Islandora's PHP sends exactly these four keys). gearjob's own client adds ``"gearjob": 1``,
which tells the worker to JSON-encode every result, so that values come back with their type.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from .errors import PayloadError
from .jobguard import shorten

__all__ = [
    "JobRequest",
    "decode_exception",
    "decode_request",
    "decode_result",
    "encode_exception",
    "encode_request",
    "encode_result",
    "sniff_json_results",
]

_JSON_TYPES_HINT = "pass JSON types: dict, list, str, int, float, bool, None"
_ENVELOPE_KEYS = frozenset(("func", "args", "site", "uid", "gearjob"))
#: how every workload of a gearjob client starts (see encode_request)
_GEARJOB_START = b'{"gearjob":1,'

# One reusable encoder (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value; send null or a string instead")


#: workloads are strict JSON: NaN, Infinity and -Infinity (which Python accepts) are not
_request_decoder = json.JSONDecoder(parse_constant=_not_json)
#: its scanner alone (JSONDecoder.decode adds two regular expression matches per call)
_scan_request: Callable[[str, int], tuple[Any, int]] = cast(Any, _request_decoder).scan_once


def _fast_codec() -> tuple[Callable[[Any], str], Callable[[str, int], tuple[Any, int]] | None]:
    """CPython's C encoder and scanner, built once (JSONEncoder.encode builds them per call).

    The encoder skips the circular-reference check: a cycle ends in RecursionError, and the
    error path re-encodes with the checking encoder. Falls back to the pure-Python API."""
    try:
        from _json import encode_basestring_ascii, make_encoder, make_scanner
    except ImportError:  # pragma: no cover - not CPython
        return _ENCODER.encode, None
    make = make_encoder(
        None, _ENCODER.default, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def encode(value: Any) -> str:
        return "".join(make(value, 0))

    sample = {"a": [1.5, "\u00e9\U0001f600", None, True, 10**20], "b": {}}
    if encode(sample) != _ENCODER.encode(sample):  # pragma: no cover - unexpected C API
        return _ENCODER.encode, None
    scanner: Callable[[str, int], tuple[Any, int]] = make_scanner(cast(Any, _decoder))
    return encode, scanner


_encode, _scan = _fast_codec()


def _why_not_json(value: Any) -> str:
    try:
        _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    return ""


def _type_name(value: Any) -> str:
    return type(value).__name__


#: job name -> (what comes before the arguments, what comes after) in a workload
_affixes: dict[str, tuple[str, str]] = {}


def _request_affixes(job_name: str) -> tuple[str, str]:
    encoded = _encode({"gearjob": 1, "func": job_name, "args": 0, "site": None, "uid": None})
    # the key's quotes are the only unescaped ones that can precede "args"
    before, after = encoded.split('"args":0', 1)
    affixes = (before + '"args":', after)
    if len(_affixes) < 10_000:
        _affixes[job_name] = affixes
    return affixes


def encode_request(
    job_name: str,
    args: Sequence[Any],
    *,
    site: str | None = None,
    uid: int | None = None,
) -> bytes:
    """Encode a workload; PayloadError names the argument JSON cannot carry.

    The ``"gearjob": 1`` marker comes first, so that a worker can tell a gearjob client's
    workload from its first bytes even when it cannot read the rest (see
    :func:`sniff_json_results`).
    """
    if site is None and uid is None and type(args) in (tuple, list) and type(job_name) is str:
        # the common case: only the arguments are encoded, between a cached prefix and
        # suffix (the same bytes as the whole envelope encoded at once)
        affixes = _affixes.get(job_name)
        if affixes is None:
            affixes = _request_affixes(job_name)
        try:
            return (affixes[0] + _encode(args) + affixes[1]).encode("ascii")
        except (TypeError, ValueError, RecursionError):
            pass  # the general way below says what is wrong
    envelope = {"gearjob": 1, "func": job_name, "args": list(args), "site": site, "uid": uid}
    try:
        return _encode(envelope).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        for i, arg in enumerate(args, 1):
            why = _why_not_json(arg)
            if why:
                raise PayloadError(
                    f"argument {i} of job {job_name} ({_type_name(arg)}): {why}; {_JSON_TYPES_HINT}"
                ) from exc
        for key, value in (("site", site), ("uid", uid)):
            why = _why_not_json(value)
            if why:
                raise PayloadError(
                    f"{key} of job {job_name} ({_type_name(value)}): {why}; {_JSON_TYPES_HINT}"
                ) from exc
        raise PayloadError(f"job {job_name}: arguments cannot be encoded: {exc}") from exc


class JobRequest(NamedTuple):
    """A decoded workload. ``extra`` holds envelope keys gearjob does not know.

    A NamedTuple rather than a frozen dataclass: immutable all the same, and built in one
    step (a frozen dataclass's __init__ sets each field through object.__setattr__, a
    measurable part of a short job's cost)."""

    func: str
    args: list[Any]
    kwargs: dict[str, Any]
    site: Any
    uid: Any
    json_results: bool
    extra: dict[str, Any]


def _too_deep(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def decode_request(function: str, workload: bytes, *, max_depth: int = 100) -> JobRequest:
    """Decode the workload of a job assigned under ``function``.

    PayloadError for: non-UTF-8, invalid JSON, nesting deeper than ``max_depth``, not an
    object, ``func`` naming another job, ``args`` neither list nor object (an object gives
    keyword arguments). Missing or null ``args`` means no arguments.
    """
    try:
        text = (workload if type(workload) is bytes else bytes(workload)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"workload of job {function} is not valid UTF-8 (byte {exc.start}); "
            "send JSON text in UTF-8"
        ) from exc
    try:
        data, end = _scan_request(text, 0)  # the common case: no white space around
        if end != len(text):
            raise ValueError("more to read")
    except (StopIteration, ValueError, RecursionError):
        data = _decode_slowly(function, text, max_depth)
    if (
        len(text) > max_depth
        and (text.count("[") + text.count("{")) > max_depth
        and _too_deep(data, max_depth)
    ):
        raise PayloadError(f"workload of job {function} is nested deeper than {max_depth} levels")
    if type(data) is not dict:
        raise PayloadError(
            f"workload of job {function} is a JSON {_json_kind(data)}, expected an object "
            'like {"func": ..., "args": [...]}'
        )
    func = data.get("func", function)
    if func != function:
        raise PayloadError(
            f"workload of job {function} names another job in its envelope: "
            f"func = {shorten(repr(func))}; "
            "submit it under the function it names"
        )
    raw_args = data.get("args")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(raw_args, list):
        args = raw_args
    elif isinstance(raw_args, dict):
        kwargs = raw_args
    elif raw_args is not None:
        raise PayloadError(
            f'workload of job {function}: "args" is a JSON {_json_kind(raw_args)}, expected '
            "a list (positional arguments) or an object (keyword arguments)"
        )
    marker = data.get("gearjob")
    return JobRequest(
        func=function,
        args=args,
        kwargs=kwargs,
        site=data.get("site"),
        uid=data.get("uid"),
        json_results=marker is not None and marker is not False and marker != 0,
        extra=(
            {}
            if data.keys() <= _ENVELOPE_KEYS
            else {k: v for k, v in data.items() if k not in _ENVELOPE_KEYS}
        ),
    )


def _decode_slowly(function: str, text: str, max_depth: int) -> Any:
    """The JSON of a workload with white space around it, or PayloadError saying what is
    wrong with it."""
    try:
        return _request_decoder.decode(text)
    except ValueError as exc:  # JSONDecodeError, NaN, an integer of more than 4300 digits
        snippet = text[:80] + ("..." if len(text) > 80 else "")
        raise PayloadError(
            f"workload of job {function} is not valid JSON ({exc}): {snippet!r}"
        ) from exc
    except RecursionError as exc:
        raise PayloadError(
            f"workload of job {function} is nested deeper than {max_depth} levels"
        ) from exc


def sniff_json_results(head: bytes) -> bool:
    """Whether a workload that cannot be decoded (too large, malformed) comes from a
    gearjob client, judged by its first bytes: such a client wants WORK_EXCEPTION details,
    which other clients (PHP, the C ``gearman`` tool) must not get."""
    return bytes(head[: len(_GEARJOB_START)]) == _GEARJOB_START


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def encode_result(value: Any, *, json_results: bool) -> bytes:
    """Encode a job's return value.

    ``json_results`` (gearjob clients): always JSON. Otherwise (PHP/Islandora clients): str as
    UTF-8, bytes as they are, None as empty, everything else JSON.
    """
    if not json_results:
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PayloadError(f"result string cannot be encoded as UTF-8: {exc}") from exc
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if value is None:
            return b""
    try:
        return _encode(value).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(
            f"result ({_type_name(value)}) cannot be sent: {exc}; return JSON types: "
            "dict, list, str, int, float, bool, None"
        ) from exc


def decode_result(data: bytes) -> Any:
    """Decode a result: JSON gives its value; empty gives None.

    Results of workers that do not speak JSON (plain text from a PHP worker) come back as
    ``str`` when they are UTF-8 and as ``bytes`` otherwise.
    """
    if not data:
        return None
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if _scan is not None:
        try:
            value, end = _scan(text, 0)
        except (StopIteration, json.JSONDecodeError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    try:
        return _decoder.decode(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def _exception_type_name(exc: BaseException) -> str:
    cls = type(exc)
    name: str = cls.__qualname__
    if cls.__module__ == "builtins" and getattr(builtins, name, None) is cls:
        return name
    return f"{cls.__module__}.{name}"


def encode_exception(exc: BaseException) -> bytes:
    """Encode an exception for WORK_EXCEPTION: ``{"type": "ValueError", "message": "boom"}``."""
    message = str(exc)
    return _encode({"type": _exception_type_name(exc), "message": message}).encode("ascii")


def decode_exception(data: bytes) -> tuple[str | None, str]:
    """Decode WORK_EXCEPTION data to ``(type, message)``; plain text gives ``(None, text)``."""
    text = bytes(data).decode("utf-8", "replace")
    try:
        obj = _decoder.decode(text)
    except (json.JSONDecodeError, RecursionError):
        return None, text
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        exc_type = obj.get("type")
        message: str = obj["message"]
        return (exc_type if isinstance(exc_type, str) else None), message
    return None, text
