"""Filters that let a role read all of its files on a host in one command.

A converge that changes nothing spends most of its time in round trips to the host: every
template or copy asks the host for the file's checksum and then sets its attributes, and
every file task is one more module run. The roles instead read every file they manage at
once, then skip the tasks whose file is already exactly as the task would leave it:

- ``paths | host_files_probe``: the argv of one command that prints, for each path, its
  type (``f`` file, ``d`` directory, ``l`` link, ``-`` missing), owner, group and mode,
  and the sha1 of a file's content or a link's target;
- ``probe_stdout | host_file_is(path, state=..., content=..., owner=..., group=...,
  mode=..., src=...)``: true when the host's ``path`` is already what a
  ``template``/``copy`` (``state='file'``, the rendered ``content``), ``file``
  (``state='directory'``, ``'link'`` with ``src``, or ``'absent'``) task would leave.
  Anything not in the output, or not understood (a symbolic mode), is "not the same",
  so the task runs: a skip only ever replaces a task that would have reported ok.
"""

from __future__ import annotations

import hashlib
from typing import Any

# One line per path: path TAB type [TAB owner TAB group TAB octal mode TAB sha1 | TAB target].
_PROBE = r"""
for p; do
  if [ -L "$p" ]; then printf '%s\tl\t%s\n' "$p" "$(readlink -- "$p")"
  elif [ -d "$p" ]; then printf '%s\td\t%s\n' "$p" "$(stat --printf '%U\t%G\t%a' -- "$p")"
  elif [ -f "$p" ]; then
    printf '%s\tf\t%s\t%s\n' "$p" "$(stat --printf '%U\t%G\t%a' -- "$p")" \
      "$(sha1sum < "$p" | cut -d ' ' -f 1)"
  else printf '%s\t-\n' "$p"
  fi
done
"""


def host_files_probe(paths: list[str]) -> list[str]:
    if isinstance(paths, str) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise ValueError(f"host_files_probe takes a list of absolute paths, got {paths!r}")
    return ["sh", "-c", _PROBE, "sh", *paths]


def _entries(stdout: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in (stdout or "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            entries[fields[0]] = fields[1:]
    return entries


def _mode(value: Any) -> int | None:
    try:
        return int(str(value), 8)
    except ValueError:
        return None


def host_file_is(
    stdout: str,
    path: str,
    state: str = "file",
    content: str | None = None,
    owner: str | None = None,
    group: str | None = None,
    mode: str | None = None,
    src: str | None = None,
) -> bool:
    entry = _entries(stdout).get(path)
    if entry is None:
        return False
    kind = {"file": "f", "directory": "d", "link": "l", "absent": "-"}.get(state)
    if kind is None:
        raise ValueError(f"host_file_is: state is file, directory, link or absent, not {state!r}")
    if entry[0] != kind:
        return False
    if kind == "-":
        return True
    if kind == "l":
        return src is not None and entry[1:] == [src]
    if len(entry) < 4:
        return False
    if owner is not None and entry[1] != owner or group is not None and entry[2] != group:
        return False
    if mode is not None and (_mode(mode) is None or _mode(mode) != _mode(entry[3])):
        return False
    if kind == "f":
        if content is None or len(entry) < 5:
            return False
        return hashlib.sha1(content.encode()).hexdigest() == entry[4]  # noqa: S324 (not security)
    return True


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"host_files_probe": host_files_probe, "host_file_is": host_file_is}
