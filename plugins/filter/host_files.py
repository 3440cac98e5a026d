"""Filters that let a role read all of its files, units and accounts on a host in one command.

A converge that changes nothing spends most of its time in round trips to the host: every
template or copy asks the host for the file's checksum and then sets its attributes, and
every file task is one more module run. The roles instead read every file they manage at
once, then skip the tasks whose file is already exactly as the task would leave it:

- ``paths | host_files_probe(units=[...], users=[...], groups=[...], packages=[...])``: the
  argv of one command that prints, for each path, its type (``f`` file, ``d`` directory,
  ``l`` link, ``-`` missing), owner, group and mode, and the sha1 of a file's content or a
  link's target; then the passwd and group entries of the accounts, the dpkg status and
  version of the packages (Debian), and the state of the systemd units (names or
  patterns such as ``gearjob-worker@*.service``);
- ``probe_stdout | host_file_is(path, state=..., content=..., owner=..., group=...,
  mode=..., src=...)``: true when the host's ``path`` is already what a
  ``template``/``copy`` (``state='file'``, the rendered ``content``), ``file``
  (``state='directory'``, ``'link'`` with ``src``, or ``'absent'``) task would leave.
  Anything not in the output, or not understood (a symbolic mode), is "not the same",
  so the task runs: a skip only ever replaces a task that would have reported ok;
- ``probe_stdout | host_file_exists(path)``: true when the probe saw ``path`` (of any
  type); false when it is missing or was not read, so a task that creates it runs;
- ``probe_stdout | host_packages``: package name -> version, of the installed packages;
- ``probe_stdout | host_units``: unit name -> {ActiveState, SubState, UnitFileState};
- ``probe_stdout | host_unit_is_up(name)``: true when the unit is active and enabled (what a
  ``systemd_service`` task with ``state: started, enabled: true`` would leave);
- ``probe_stdout | host_user_is(name, group=..., home=..., shell=..., comment=...)`` and
  ``probe_stdout | host_group_is(name)``: true when the account exists with exactly those
  attributes (what the ``user`` and ``group`` tasks would leave).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Arguments: the paths, then "passwd:NAME" / "group:NAME" accounts, "package:NAME" packages
# and "unit:NAME" units. Output: one line per path: path TAB type [TAB owner TAB group TAB
# octal mode TAB sha1 | TAB target]; "passwd"/"group" TAB the getent line of each account
# that exists; "package" TAB name TAB status TAB version of each package dpkg knows; then
# the `systemctl show` blocks of the units, each line prefixed "unit" TAB.
_PROBE = r"""
units=
packages=
for p; do
  case $p in
    package:*) packages="$packages ${p#package:}" ;;
    passwd:*|group:*) e=$(getent "${p%%:*}" "${p#*:}") && printf '%s\t%s\n' "${p%%:*}" "$e" ;;
    unit:*) units="$units ${p#unit:}" ;;
    *) if [ -L "$p" ]; then printf '%s\tl\t%s\n' "$p" "$(readlink -- "$p")"
       elif [ -d "$p" ]; then printf '%s\td\t%s\n' "$p" "$(stat --printf '%U\t%G\t%a' -- "$p")"
       elif [ -f "$p" ]; then
         printf '%s\tf\t%s\t%s\n' "$p" "$(stat --printf '%U\t%G\t%a' -- "$p")" \
           "$(sha1sum < "$p" | cut -d ' ' -f 1)"
       else printf '%s\t-\n' "$p"
       fi ;;
  esac
done
if [ -n "$packages" ]; then
  dpkg-query --show --showformat='package\t${Package}\t${db:Status-Status}\t${Version}\n' \
    -- $packages 2>/dev/null
fi
if [ -n "$units" ]; then
  systemctl show --property=Id,ActiveState,SubState,UnitFileState -- $units | sed 's/^/unit\t/'
fi
exit 0
"""
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@*\\-]+$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def host_files_probe(
    paths: list[str],
    units: list[str] | None = None,
    users: list[str] | None = None,
    groups: list[str] | None = None,
    packages: list[str] | None = None,
) -> list[str]:
    if isinstance(paths, str) or not all(
        isinstance(p, str) and p.startswith("/") for p in paths
    ):
        raise ValueError(
            f"host_files_probe takes a list of absolute paths, got {paths!r}"
        )
    for what, names, pattern in (
        ("units", units, _UNIT_RE),
        ("users", users, _ACCOUNT_RE),
        ("groups", groups, _ACCOUNT_RE),
        ("packages", packages, _PACKAGE_RE),
    ):
        if names is not None and (
            isinstance(names, str)
            or not all(isinstance(n, str) and pattern.match(n) for n in names)
        ):
            raise ValueError(
                f"host_files_probe: {what} is a list of names, got {names!r}"
            )
    return [
        "sh",
        "-c",
        _PROBE,
        "sh",
        *paths,
        *(f"passwd:{name}" for name in users or []),
        *(f"group:{name}" for name in groups or []),
        *(f"package:{name}" for name in packages or []),
        *(f"unit:{name}" for name in units or []),
    ]


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
        raise ValueError(
            f"host_file_is: state is file, directory, link or absent, not {state!r}"
        )
    if entry[0] != kind:
        return False
    if kind == "-":
        return True
    if kind == "l":
        return src is not None and entry[1:] == [src]
    if len(entry) < 4:
        return False
    if (
        owner is not None
        and entry[1] != owner
        or group is not None
        and entry[2] != group
    ):
        return False
    if mode is not None and (_mode(mode) is None or _mode(mode) != _mode(entry[3])):
        return False
    if kind == "f":
        if content is None or len(entry) < 5:
            return False
        # A checksum, as sha1sum prints. surrogateescape gives back the bytes of a file read
        # with the file lookup when they are not UTF-8.
        data = content.encode("utf-8", "surrogateescape")
        return hashlib.sha1(data).hexdigest() == entry[4]
    return True


def host_file_exists(stdout: str, path: str) -> bool:
    entry = _entries(stdout).get(path)
    return entry is not None and entry[0] != "-"


def host_packages(stdout: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (stdout or "").splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == "package" and fields[2] == "installed":
            found[fields[1]] = fields[3]
    return found


def host_units(stdout: str) -> dict[str, dict[str, str]]:
    units: dict[str, dict[str, str]] = {}
    props: dict[str, str] = {}
    for line in [*(stdout or "").splitlines(), "unit\t"]:
        kind, _, rest = line.partition("\t")
        if kind != "unit":
            continue
        if not rest:  # the blank line after each unit's block
            if "Id" in props:
                units[props["Id"]] = props
            props = {}
            continue
        key, _, value = rest.partition("=")
        props[key] = value
    return units


def host_unit_is_up(stdout: str, name: str) -> bool:
    unit = host_units(stdout).get(name, {})
    return (
        unit.get("ActiveState") == "active" and unit.get("UnitFileState") == "enabled"
    )


def _account(stdout: str, kind: str, name: str) -> list[str] | None:
    for line in (stdout or "").splitlines():
        if line.startswith(kind + "\t"):
            fields = line[len(kind) + 1 :].split(":")
            if fields[0] == name:
                return fields
    return None


def host_group_is(stdout: str, name: str) -> bool:
    return _account(stdout, "group", name) is not None


def host_user_is(
    stdout: str,
    name: str,
    group: str | None = None,
    home: str | None = None,
    shell: str | None = None,
    comment: str | None = None,
) -> bool:
    user = _account(stdout, "passwd", name)
    if user is None or len(user) != 7:
        return False
    if group is not None:
        entry = _account(stdout, "group", group)
        if entry is None or len(entry) < 3 or entry[2] != user[3]:
            return False
    wanted = {4: comment, 5: home, 6: shell}
    return all(value is None or user[index] == value for index, value in wanted.items())


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "host_files_probe": host_files_probe,
            "host_file_is": host_file_is,
            "host_file_exists": host_file_exists,
            "host_units": host_units,
            "host_packages": host_packages,
            "host_unit_is_up": host_unit_is_up,
            "host_user_is": host_user_is,
            "host_group_is": host_group_is,
        }
