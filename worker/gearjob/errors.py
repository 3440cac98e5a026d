"""Exception hierarchy of gearjob.

Every exception raised on purpose by gearjob derives from :class:`GearjobError`, so
``except GearjobError`` catches all of them. Messages name what failed (server address,
job name, job handle, config key and file) so that they can be acted on.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GearjobError",
    "JobFailed",
    "JobTimeout",
    "PayloadError",
    "ProtocolError",
    "RegistryError",
    "ServerUnavailable",
]


class GearjobError(Exception):
    """Base class of every gearjob error."""


class ConfigError(GearjobError):
    """A configuration file or value is wrong; the message names file, key and value."""


class RegistryError(ConfigError):
    """A job registry entry is wrong; the message names the entry and where it came from."""


class PayloadError(GearjobError, ValueError):
    """Job arguments JSON cannot carry, or a malformed workload envelope or result."""


class ProtocolError(GearjobError):
    """The peer sent something that is not the Gearman protocol (garbage, bad magic,
    an oversize packet, an unexpected packet) or the server answered with an error."""


class ServerUnavailable(GearjobError):
    """No connection to a job server, e.g. ``127.0.0.1:4730: connection refused``.

    ``address`` is the ``host:port`` text of the server when a single server is meant.
    """

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address

    def __reduce__(self) -> tuple[type[ServerUnavailable], tuple[str, str | None]]:
        return (type(self), (str(self), self.address))


class JobTimeout(GearjobError):
    """A job did not finish within its time limit.

    ``job_name``, ``handle`` and ``timeout`` are set when known.
    """

    def __init__(
        self,
        message: str,
        *,
        job_name: str | None = None,
        handle: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.handle = handle
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (str(self), self.job_name, self.handle, self.timeout))


def _rebuild_timeout(
    message: str, job_name: str | None, handle: str | None, timeout: float | None
) -> JobTimeout:
    return JobTimeout(message, job_name=job_name, handle=handle, timeout=timeout)


class JobFailed(GearjobError):
    """A job ran and failed (the worker sent WORK_EXCEPTION and/or WORK_FAIL).

    ``exc_type`` is the remote exception type (``"ValueError"``) when the worker sent one,
    ``message`` its text. ``str(e)`` reads ``job my_job (H:host:12) failed: ValueError: boom``.
    """

    def __init__(
        self,
        job_name: str,
        handle: str | None,
        exc_type: str | None,
        message: str,
    ) -> None:
        self.job_name = job_name
        self.handle = handle
        self.exc_type = exc_type
        self.message = message
        where = f"job {job_name} ({handle})" if handle else f"job {job_name}"
        detail = f"{exc_type}: {message}" if exc_type else message
        super().__init__(f"{where} failed: {detail}")

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str, str | None, str | None, str]]:
        return (type(self), (self.job_name, self.handle, self.exc_type, self.message))
