"""The worker's catalog: which runner serves which Gearman function, and where it came from.

Python jobs come from the registry (:mod:`gearjob.registry`; ``[raw_jobs]`` and
``--raw-job`` make raw ones). Command jobs come in groups: the ``[commands.NAME]`` tables of
the configuration, and ``--exec`` on the command line::

    [commands.drupal]
    exec = "drush --root=/var/www/drupal -u 1 islandora-job-router"
    # functions = ["islandora_job_a", "islandora_job_b"]   # or have them listed:
    functions_from = ["drush --root=/var/www/drupal --uri=default islandora-job-list-functions"]
    refresh = 300          # seconds; 0 = only at start and on SIGHUP
    timeout = 3600         # seconds per job (default: job_timeout)
    max_output = 67108864  # bytes of stdout at most
    cwd = "/var/www/drupal"
    shell = false
    env = { HOME = "/var/www" }

A group names its functions (``functions``) or has list commands print them, one per line
(``functions_from``, the union of their outputs). The lists are read at start, on SIGHUP and
every ``refresh`` seconds. A list command that fails keeps the group's last good list (and it
is tried again every RETRY seconds); a name that is not a valid function name is skipped with
an error. A function is served by the first source that has it: Python jobs, then the groups
in the order of the configuration, then ``--exec``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gearjob import registry as reg
from gearjob.command import DEFAULT_MAX_OUTPUT, CommandFailed, CommandRunner, CommandSpec
from gearjob.command import run_list_command as _run_list
from gearjob.errors import ConfigError, RegistryError
from gearjob.runners import PythonRunner, RawRunner, Runner

log = logging.getLogger("gearjob.worker")

#: a group whose list command has never worked tries again this often (seconds)
RETRY = 30.0
#: a list command may run this long (seconds) unless the group's timeout is shorter
LIST_TIMEOUT = 120.0
_GROUP_KEYS = {
    "exec",
    "functions",
    "functions_from",
    "refresh",
    "timeout",
    "max_output",
    "cwd",
    "shell",
    "env",
}


@dataclass(frozen=True)
class GroupConfig:
    """One command group as configured."""

    name: str
    spec: CommandSpec
    functions: tuple[str, ...] = ()
    functions_from: tuple[str, ...] = ()
    refresh: float | None = None
    origin: str = ""


def parse_groups(tables: Mapping[str, Any], source: str) -> list[GroupConfig]:
    """The ``[commands.NAME]`` tables; ConfigError names the bad key and value."""
    return [_parse_group(name, table, source) for name, table in tables.items()]


def _need(source: str, key: str, value: Any, what: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {value!r} is invalid: expected {what}")


def _strings(source: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _need(source, key, value, "a string or a list of non-empty strings")
    return tuple(value)


def _seconds(source: str, key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise _need(source, key, value, "a number of seconds >= 0 (0 = none)")
    return float(value) or None


def _parse_group(name: str, table: Any, source: str) -> GroupConfig:
    where = f"commands.{name}"
    if not isinstance(table, dict):
        raise _need(source, where, table, f"a table ([{where}])")
    unknown = sorted(set(table) - _GROUP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{where}.{unknown[0]}'; known keys are "
            f"{', '.join(sorted(_GROUP_KEYS))}"
        )
    line = table.get("exec")
    if not isinstance(line, str) or not line.strip():
        raise _need(source, f"{where}.exec", line, "the command line to run for each job")
    functions = _strings(source, f"{where}.functions", table.get("functions", []))
    functions_from = _strings(source, f"{where}.functions_from", table.get("functions_from", []))
    if not functions and not functions_from:
        raise ConfigError(
            f"{source}: [{where}] serves no function: set functions = [...] or "
            'functions_from = "a command that prints one function name per line"'
        )
    for function in functions:
        reg.validate_name(function, f"{source} {where}.functions")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise _need(source, f"{where}.env", env, 'a table of strings, e.g. { HOME = "/srv" }')
    shell = table.get("shell", False)
    if not isinstance(shell, bool):
        raise _need(source, f"{where}.shell", shell, "true or false")
    cwd = table.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.strip()):
        raise _need(source, f"{where}.cwd", cwd, "a directory")
    max_output = table.get("max_output", DEFAULT_MAX_OUTPUT)
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
        raise _need(source, f"{where}.max_output", max_output, "a number of bytes >= 1")
    spec = CommandSpec(
        line,
        shell=shell,
        env=env,
        cwd=cwd,
        timeout=_seconds(source, f"{where}.timeout", table.get("timeout", 0)),
        max_output=max_output,
    )
    if not shell:
        try:
            spec.argv  # noqa: B018 - checks the quoting now
        except ValueError as exc:
            raise _need(source, f"{where}.exec", line, f"a command line ({exc})") from None
    refresh = _seconds(source, f"{where}.refresh", table.get("refresh", 0))
    return GroupConfig(name, spec, functions, functions_from, refresh, f"{source} [{where}]")


def flag_group(
    line: str, functions: Sequence[str], functions_from: Sequence[str], refresh: float | None
) -> GroupConfig:
    """The group of ``--exec`` (ConfigError when its flags do not fit together)."""
    if not functions and not functions_from:
        raise ConfigError(
            f"--exec {line!r} serves no function: add -f NAME (repeatable) or "
            "--functions-from 'a command that prints one function name per line'"
        )
    for function in functions:
        reg.validate_name(function, "-f")
    spec = CommandSpec(line)
    try:
        spec.argv  # noqa: B018
    except ValueError as exc:
        raise ConfigError(f"--exec {line!r} is not a valid command line: {exc}") from None
    return GroupConfig("--exec", spec, tuple(functions), tuple(functions_from), refresh, "--exec")


class CommandGroup:
    """A group's runner and its current function list (the last good one)."""

    def __init__(self, config: GroupConfig, previous: CommandGroup | None = None) -> None:
        self.config = config
        self.runner = CommandRunner(config.spec, config.origin)
        self.names: tuple[str, ...] | None = config.functions or None
        if previous is not None and previous.names is not None and config.functions_from:
            self.names = previous.names  # kept if the list command fails now
        self.next_refresh: float | None = None
        problem = config.spec.problem() if not config.spec.shell else None
        if problem:
            log.error(
                "command group %s: %s; its jobs will fail until that is fixed",
                config.origin,
                problem,
            )

    def origin(self) -> str:
        if self.config.functions_from:
            return f"{self.config.origin} functions_from"
        return self.config.origin

    def refresh(self) -> bool:
        """Run the list commands; True when the list changed. On failure the last good
        list stays and the next try is due in RETRY seconds (or the refresh interval)."""
        config = self.config
        if not config.functions_from:
            return False
        interval = config.refresh
        found: set[str] = set(config.functions)
        try:
            for line in config.functions_from:
                found.update(self._names_from(line))
        except CommandFailed as exc:
            kept = "none" if self.names is None else f"{len(self.names)}"
            log.error(
                "command group %s: %s; keeping the last good list (%s function(s))",
                config.origin,
                exc,
                kept,
            )
            if self.names is None:
                interval = min(interval or RETRY, RETRY)
            self._schedule(interval)
            return False
        self._schedule(interval)
        names = tuple(sorted(found))
        if not names:
            log.warning("command group %s: its list command printed no function", config.origin)
        changed = names != self.names
        self.names = names
        return changed

    def _names_from(self, line: str) -> list[str]:
        spec = self.config.spec
        timeout = min(spec.timeout or LIST_TIMEOUT, LIST_TIMEOUT)
        printed = _run_list(line, shell=spec.shell, env=spec.env, cwd=spec.cwd, timeout=timeout)
        good = []
        for name in printed:
            try:
                reg.validate_name(name, f"list command {line!r}")
            except RegistryError as exc:
                log.error("command group %s: skipping %s", self.config.origin, exc)
                continue
            good.append(name)
        if printed and not good:
            raise CommandFailed(f"list command {line!r} printed no valid function name")
        return good

    def _schedule(self, interval: float | None) -> None:
        self.next_refresh = None if interval is None else time.monotonic() + interval


class Catalog:
    """Function name -> runner, for the worker; ``registry`` holds the Python jobs."""

    def __init__(
        self,
        registry: reg.Registry,
        groups: Sequence[CommandGroup] = (),
        *,
        run_lists: bool = True,
    ) -> None:
        self.registry = registry
        self.groups = list(groups)
        self.runners: dict[str, Runner] = {}
        self.origins: dict[str, str] = {}
        self._collisions: set[tuple[str, str]] = set()
        for group in self.groups:
            if run_lists:
                group.refresh()
        self._assemble()

    def names(self) -> list[str]:
        return sorted(self.runners)

    def __len__(self) -> int:
        return len(self.runners)

    def __contains__(self, name: object) -> bool:
        return name in self.runners

    def get(self, name: str) -> Runner | None:
        return self.runners.get(name)

    def _assemble(self) -> None:
        runners: dict[str, Runner] = {}
        origins: dict[str, str] = {}
        for name, entry in self.registry.entries.items():
            func = self.registry.functions[name]
            kind = RawRunner if entry.raw else PythonRunner
            runners[name] = kind(func, entry.target)
            origins[name] = entry.origin
        for group in self.groups:
            for name in group.names or ():
                if name in runners:
                    self._collision(name, group, origins[name])
                    continue
                runners[name] = group.runner
                origins[name] = group.origin()
        self.runners = runners
        self.origins = origins

    def _collision(self, name: str, group: CommandGroup, winner: str) -> None:
        key = (name, group.config.origin)
        if key not in self._collisions:
            self._collisions.add(key)
            log.error(
                "function %s of command group %s is already served by %s; keeping that one",
                name,
                group.config.origin,
                winner,
            )

    def next_refresh(self) -> float | None:
        """When a group's list is due again (time.monotonic()), None: never."""
        due = [g.next_refresh for g in self.groups if g.next_refresh is not None]
        return min(due) if due else None

    def refresh_due(self) -> tuple[list[str], list[str]]:
        """Refresh the groups that are due; the (added, removed) function names."""
        now = time.monotonic()
        changed = False
        for group in self.groups:
            if group.next_refresh is not None and group.next_refresh <= now:
                changed = group.refresh() or changed
        if not changed:
            return [], []
        old = set(self.runners)
        self._assemble()
        new = set(self.runners)
        return sorted(new - old), sorted(old - new)

    def rows(self) -> list[dict[str, Any]]:
        """What ``gearjob jobs`` shows of the command functions."""
        return [
            {
                "name": name,
                "target": runner.describe(),
                "kind": runner.kind,
                "source": "command",
                "origin": self.origins[name],
                "overrides": [],
                "error": None,
            }
            for name, runner in sorted(self.runners.items())
            if runner.kind == "command"
        ]


def raw_entries(
    jobs: Mapping[str, object], source: str | None, flags: Sequence[str]
) -> list[reg.JobEntry]:
    """The raw Python jobs of ``[raw_jobs]`` and ``--raw-job`` flags."""
    import dataclasses

    origin = f"{source or 'configuration'} [raw_jobs]"
    entries = [
        dataclasses.replace(e, origin=origin, raw=True) for e in reg.config_entries(jobs, source)
    ]
    for e in reg.flag_entries(flags):
        origin = e.origin.replace("--job", "--raw-job")
        entries.append(dataclasses.replace(e, origin=origin, raw=True))
    return entries


def build(
    settings: Any,
    *,
    job_flags: Sequence[str] = (),
    raw_flags: Sequence[str] = (),
    groups: Sequence[GroupConfig] = (),
    previous: Catalog | None = None,
) -> Catalog:
    """The catalog a worker serves: Python jobs, raw jobs, command ``groups``. ``previous``:
    the catalog being replaced (SIGHUP), whose last good lists are kept when a list command
    fails now."""
    entries = reg.merge(
        reg.collect(settings.jobs, settings.source, job_flags).values(),
        raw_entries(settings.raw_jobs, settings.source, raw_flags),
    )
    registry = reg.load(entries)
    old = {g.config.name: g for g in previous.groups} if previous is not None else {}
    return Catalog(registry, [CommandGroup(c, old.get(c.name)) for c in groups])


def group_configs(settings: Any, args: Any) -> list[GroupConfig]:
    """The command groups of the configuration, then the one of ``--exec`` flags."""
    configs = parse_groups(settings.commands, settings.source or "configuration")
    line = getattr(args, "exec", None)
    if line is not None:
        configs.append(flag_group(line, args.function, args.functions_from, args.refresh))
    elif args.function or args.functions_from:
        raise ConfigError("-f and --functions-from name the functions of --exec CMD: add it")
    return configs


def from_args(settings: Any, args: Any, previous: Catalog | None = None) -> Catalog:
    """build() from the worker's command-line flags (``gearjob worker``)."""
    return build(
        settings,
        job_flags=args.job,
        raw_flags=args.raw_job,
        groups=group_configs(settings, args),
        previous=previous,
    )


def command_rows(settings: Any, args: Any) -> list[dict[str, Any]]:
    """``gearjob jobs``: the command functions, and an error row per group whose list
    command failed (``--no-functions-from``: a row per list command, not run)."""
    run_lists = not getattr(args, "no_functions_from", False)
    groups = [CommandGroup(c) for c in group_configs(settings, args)]
    catalog = Catalog(reg.Registry(), groups, run_lists=run_lists)
    rows = catalog.rows()
    for group in catalog.groups:
        if not run_lists:
            rows += [
                {
                    "name": "-",
                    "target": group.runner.describe(),
                    "kind": "command",
                    "source": "command",
                    "origin": f"{group.config.origin} functions_from {line!r} (not run)",
                    "overrides": [],
                    "error": None,
                }
                for line in group.config.functions_from
            ]
        elif group.names is None:
            rows.append(
                {
                    "name": "-",
                    "target": group.runner.describe(),
                    "kind": "command",
                    "source": "command",
                    "origin": group.origin(),
                    "overrides": [],
                    "error": "its list command failed (see the log above); no function",
                }
            )
    return rows
