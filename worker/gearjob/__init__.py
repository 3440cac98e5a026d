"""gearjob: asynchronous and parallel job processing for Python on the Gearman job server.

>>> import gearjob                                       # doctest: +SKIP
>>> gearjob.submit("my_module_hello_world", "Danny")      # waits for the result
>>> gearjob.submit_background("my_module_reindex", 42)    # returns the job handle

The module-level functions use one :class:`Client` per thread, configured by
``$GEARJOB_SERVERS``, ``$GEARJOB_CONFIG`` or ``/etc/gearjob/client.toml``.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "GearjobError",
    "JobFailed",
    "JobResult",
    "JobStatus",
    "JobTimeout",
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
    "default_client",
    "job_status",
    "load_settings",
    "run_batch",
    "submit",
    "submit_background",
    "submit_batch",
]
