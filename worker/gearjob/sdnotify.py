"""systemd service notifications (sd_notify) with the standard library only.

Does nothing unless ``$NOTIFY_SOCKET`` is set (a ``Type=notify`` unit). Supports filesystem
and abstract-namespace (``@name``) sockets. Sending never raises: a notification that cannot
be delivered is logged at debug level, the worker keeps working.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, socket_path: str | None = None, *, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        elif path:
            log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or @abstract name", path)
        self.watchdog_usec = self._watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    @staticmethod
    def _watchdog_usec(env: os._Environ[str] | dict[str, str]) -> int | None:
        pid = env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None when not asked."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> bool:
        """Send "KEY=value" lines in one datagram; True if delivered."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            log.debug("sd_notify %r to %r failed: %s", message, self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status_lines(status))

    def status(self, text: str) -> bool:
        if text == self._last_status:
            return True
        return self.notify(*self._status_lines(text))

    def reloading(self, status: str | None = None) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match it to the reload.
        return self.notify(
            "RELOADING=1",
            f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
            *self._status_lines(status),
        )

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status_lines(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def _status_lines(self, status: str | None) -> list[str]:
        if status is None:
            return []
        self._last_status = status
        return [f"STATUS={status}"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
