"""gearjob: asynchronous and parallel job processing for Python on the Gearman job server."""

from __future__ import annotations

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
    "ConfigError",
    "GearjobError",
    "JobFailed",
    "JobTimeout",
    "PayloadError",
    "ProtocolError",
    "RegistryError",
    "ServerUnavailable",
    "__version__",
]
