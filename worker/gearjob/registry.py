"""The job registry: which Python function runs for which Gearman function name.

Entries come from three sources, read in this order; a later source overrides an earlier one
for the same job name, and the listing shows both the winning origin and what it overrode:

1. the ``gearjob.jobs`` entry-point group of installed packages
   (``[project.entry-points."gearjob.jobs"] my_job = "my_pkg.jobs:my_job"``),
2. the ``[jobs]`` table of the worker's TOML configuration,
3. ``--job NAME=module:function`` command-line flags.

Within one source a name may appear only once. Every entry must name a valid Gearman function
and import to a callable; otherwise :class:`~gearjob.errors.RegistryError` names the entry
and where it came from.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gearjob.errors import RegistryError

ENTRY_POINT_GROUP = "gearjob.jobs"

#: Gearman function names: no NUL (binary protocol) and no whitespace (the admin protocol's
#: "status" output is whitespace-separated). We also keep them printable ASCII and short.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@/+-]{0,254}")
_TARGET_RE = re.compile(
    r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
)

SOURCE_ENTRY_POINT = "entry point"
SOURCE_CONFIG = "config"
SOURCE_FLAG = "flag"


@dataclass(frozen=True)
class JobEntry:
    """One registry entry before it is imported."""

    name: str
    target: str
    source: str  #: one of SOURCE_ENTRY_POINT, SOURCE_CONFIG, SOURCE_FLAG
    origin: str  #: human-readable: "--job flag", "/etc/gearjob/worker.toml [jobs]", ...
    overrides: tuple[str, ...] = ()  #: origins of entries this one replaced
    raw: bool = False  #: gets the workload bytes as they are (gearjob.runners.RawRunner)

    def describe(self) -> str:
        return f"job {self.name!r} = {self.target!r} (from {self.origin})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "source": self.source,
            "origin": self.origin,
            "overrides": list(self.overrides),
            "raw": self.raw,
        }


@dataclass
class Registry:
    """Validated entries and the callables they resolved to."""

    entries: dict[str, JobEntry] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.functions

    def get(self, name: str) -> Callable[..., Any] | None:
        return self.functions.get(name)


def validate_name(name: str, origin: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise RegistryError(
            f"invalid job name {name!r} (from {origin}): a Gearman function name must be "
            "1-255 characters of letters, digits and _ . : @ / + - and start with a letter, "
            "digit or _"
        )


def validate_target(name: str, target: object, origin: str) -> str:
    if not isinstance(target, str) or not _TARGET_RE.fullmatch(target.strip()):
        raise RegistryError(
            f"invalid target {target!r} for job {name!r} (from {origin}): "
            "write it as 'package.module:function'"
        )
    return target.strip()


def parse_job_flag(text: str) -> tuple[str, str]:
    """Split a ``--job NAME=module:function`` value."""
    name, sep, target = text.partition("=")
    origin = f"--job {text}"
    if not sep:
        raise RegistryError(
            f"invalid --job value {text!r}: write it as NAME=package.module:function, "
            "e.g. --job my_job=my_pkg.jobs:my_job"
        )
    name = name.strip()
    validate_name(name, origin)
    return name, validate_target(name, target, origin)


def entry_point_entries() -> list[JobEntry]:
    """Entries declared by installed packages in the ``gearjob.jobs`` group."""
    from importlib.metadata import entry_points

    seen: dict[str, JobEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) or "unknown distribution"
        origin = f"entry point {ENTRY_POINT_GROUP} of {dist_name}"
        validate_name(ep.name, origin)
        target = validate_target(ep.name, ep.value, origin)
        previous = seen.get(ep.name)
        if previous is not None:
            if previous.target == target:
                continue  # the same distribution found twice on sys.path
            raise RegistryError(
                f"job {ep.name!r} is declared twice in the {ENTRY_POINT_GROUP} entry points: "
                f"{previous.target!r} ({previous.origin}) and {target!r} ({origin}); "
                "uninstall one package or override the name in the [jobs] table"
            )
        seen[ep.name] = JobEntry(ep.name, target, SOURCE_ENTRY_POINT, origin)
    return list(seen.values())


def config_entries(jobs: Mapping[str, object], source: str | None) -> list[JobEntry]:
    origin = f"{source or 'configuration'} [jobs]"
    result = []
    for name, target in jobs.items():
        validate_name(name, origin)
        result.append(JobEntry(name, validate_target(name, target, origin), SOURCE_CONFIG, origin))
    return result


def flag_entries(flags: Sequence[str]) -> list[JobEntry]:
    result: dict[str, JobEntry] = {}
    for text in flags:
        name, target = parse_job_flag(text)
        if name in result:
            raise RegistryError(
                f"job {name!r} is given twice on the command line: "
                f"{result[name].origin!r} and '--job {text}'; keep one"
            )
        result[name] = JobEntry(name, target, SOURCE_FLAG, f"--job {text}")
    return list(result.values())


def merge(*sources: Iterable[JobEntry]) -> dict[str, JobEntry]:
    """Later sources override earlier ones; the winner remembers what it replaced."""
    merged: dict[str, JobEntry] = {}
    for entries in sources:
        for entry in entries:
            previous = merged.get(entry.name)
            merged[entry.name] = (
                entry
                if previous is None
                else dataclasses.replace(
                    entry,
                    overrides=(*previous.overrides, f"{previous.target} ({previous.origin})"),
                )
            )
    return dict(sorted(merged.items()))


def collect(
    config_jobs: Mapping[str, object],
    config_source: str | None,
    job_flags: Sequence[str] = (),
    *,
    use_entry_points: bool = True,
) -> dict[str, JobEntry]:
    """All entries a worker would register, not yet imported."""
    return merge(
        entry_point_entries() if use_entry_points else [],
        config_entries(config_jobs, config_source),
        flag_entries(job_flags),
    )


def resolve(entry: JobEntry) -> Callable[..., Any]:
    """Import one entry; RegistryError naming it when that fails."""
    module_name, _, attr_path = entry.target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"cannot import module {module_name!r} for {entry.describe()}: {exc}; "
            "check the name and that the package is installed in the worker's environment"
        ) from exc
    except Exception as exc:
        raise RegistryError(
            f"importing module {module_name!r} for {entry.describe()} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RegistryError(
                f"module {module_name!r} has no attribute {attr_path!r}, needed by "
                f"{entry.describe()}"
            ) from None
    if not callable(obj):
        raise RegistryError(
            f"{entry.target!r} is a {type(obj).__name__}, not a function, in {entry.describe()}"
        )
    return obj  # type: ignore[no-any-return]


def load(entries: Mapping[str, JobEntry]) -> Registry:
    """Import every entry; the first failure raises RegistryError."""
    importlib.invalidate_caches()  # modules written since start-up (SIGHUP) must be found
    registry = Registry()
    for name, entry in entries.items():
        registry.functions[name] = resolve(entry)
        registry.entries[name] = entry
    return registry


def build(
    config_jobs: Mapping[str, object],
    config_source: str | None,
    job_flags: Sequence[str] = (),
    *,
    use_entry_points: bool = True,
) -> Registry:
    """collect() + load(): the registry a worker starts with."""
    return load(collect(config_jobs, config_source, job_flags, use_entry_points=use_entry_points))
