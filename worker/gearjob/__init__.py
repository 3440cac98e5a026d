"""gearjob: asynchronous and parallel job processing for Python on the Gearman job server.

>>> import gearjob                                       # doctest: +SKIP
>>> gearjob.submit("my_module_hello_world", "Danny")      # waits for the result
>>> gearjob.submit_background("my_module_reindex", 42)    # returns the job handle

The module-level functions use one :class:`Client` per thread, configured by
``$GEARJOB_SERVERS``, ``$GEARJOB_CONFIG`` or ``/etc/gearjob/client.toml``.

The client and the configuration modules are imported on first use of one of their names
(PEP 562), so that ``import gearjob`` and the worker daemon, which needs no client, stay
small and start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    GearjobError,
    JobFailed,
    JobTimeout,
    PayloadError,
    ProtocolError,
    RegistryError,
    ServerUnavailable,
)

if TYPE_CHECKING:
    from .client import (
        Client,
        JobResult,
        JobStatus,
        Priority,
        close_default_client,
        default_client,
        job_status,
        run_batch,
        submit,
        submit_background,
        submit_batch,
    )
    from .config import ServerAddress, Settings, TLSSettings, load_settings
    from .context import JobContext, JobEnded, NotInJob, current_job

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "GearjobError",
    "JobContext",
    "JobEnded",
    "JobFailed",
    "JobResult",
    "JobStatus",
    "JobTimeout",
    "NotInJob",
    "PayloadError",
    "Priority",
    "ProtocolError",
    "RegistryError",
    "ServerAddress",
    "ServerUnavailable",
    "Settings",
    "TLSSettings",
    "__version__",
    "close_default_client",
    "current_job",
    "default_client",
    "job_status",
    "load_settings",
    "run_batch",
    "submit",
    "submit_background",
    "submit_batch",
]

#: public names that live in a submodule imported on first use
_LAZY = {
    **dict.fromkeys(
        (
            "Client",
            "JobResult",
            "JobStatus",
            "Priority",
            "close_default_client",
            "default_client",
            "job_status",
            "run_batch",
            "submit",
            "submit_background",
            "submit_batch",
        ),
        "client",
    ),
    **dict.fromkeys(("ServerAddress", "Settings", "TLSSettings", "load_settings"), "config"),
    **dict.fromkeys(("JobContext", "JobEnded", "NotInJob", "current_job"), "context"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gearjob' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
