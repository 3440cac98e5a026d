"""sd_notify: the notifier on real unix datagram sockets, and what a worker tells systemd."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator

import pytest
from daemon_helpers import (
    RawClient,
    envelope,
    subprocess_env,
    wait_for,
    write_config,
)

from gearjob.sdnotify import Notifier

pytest_plugins = ["daemon_fixtures"]


class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def wait(self, key: str, value: str | None = None, after: int = 0) -> int:
        """Index of the first message (from `after` on) that sets key (to value)."""

        def find() -> int | None:
            for i, message in enumerate(self.drain()[after:], after):
                if key in message and (value is None or message[key].startswith(value)):
                    return i + 1  # +1 so that index 0 is truthy
            return None

        return int(wait_for(find, 10, f"{key}={value} on the notify socket")) - 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, Listener]]:
    name = f"gearjob-test-{uuid.uuid4().hex}"
    listener = Listener(b"\0" + name.encode())
    try:
        yield "@" + name, listener
    finally:
        listener.close()


def test_notifier_sends_to_a_filesystem_socket(tmp_path):
    path = tmp_path / "notify"
    listener = Listener(str(path))
    try:
        notifier = Notifier(environ={"NOTIFY_SOCKET": str(path)})
        assert notifier.enabled
        assert notifier.ready("idle")
        assert notifier.status("busy")
        assert notifier.status("busy")  # unchanged: not sent again
        assert notifier.reloading()
        assert notifier.stopping()
        notifier.close()
        messages = listener.drain()
    finally:
        listener.close()
    assert messages[0] == {"READY": "1", "STATUS": "idle"}
    assert messages[1] == {"STATUS": "busy"}
    assert messages[2]["RELOADING"] == "1"
    assert int(messages[2]["MONOTONIC_USEC"]) > 0
    assert messages[3] == {"STOPPING": "1"}
    assert len(messages) == 4


def test_notifier_sends_to_an_abstract_socket(abstract_listener):
    address, listener = abstract_listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": address})
    assert notifier.watchdog()
    assert listener.drain() == [{"WATCHDOG": "1"}]


def test_notifier_is_off_without_notify_socket_and_survives_a_missing_socket(tmp_path):
    assert not Notifier(environ={}).enabled
    assert Notifier(environ={}).ready() is False
    gone = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.enabled and gone.ready() is False  # logged, not raised
    assert not Notifier(environ={"NOTIFY_SOCKET": "relative/path"}).enabled


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000"}
    assert Notifier(environ=env).watchdog_interval == 2.0
    assert Notifier(environ={**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 2.0
    assert Notifier(environ={**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier(environ={**env, "WATCHDOG_USEC": "junk"}).watchdog_interval is None
    assert Notifier(environ={"WATCHDOG_USEC": "4000000"}).watchdog_interval is None


def test_worker_notifies_ready_status_watchdog_reloading_and_stopping(
    gearmand, start_worker, abstract_listener, tmp_path
):
    address, listener = abstract_listener
    config = write_config(
        tmp_path / "worker.toml",
        [str(gearmand)],
        {"hello": "sample_jobs:hello_world", "slow": "sample_jobs:slow"},
    )
    env = subprocess_env(NOTIFY_SOCKET=address, WATCHDOG_USEC="200000")
    worker = start_worker(extra=["--config", str(config)], jobs=None, env=env)

    ready = listener.wait("READY", "1")
    assert listener.messages[ready]["STATUS"] == "idle, 1/1 servers, 0 jobs done"
    listener.wait("WATCHDOG", "1", after=ready)

    # STATUS follows the jobs at most every STATUS_INTERVAL: a job that runs longer shows,
    # a burst of short ones is summed up in the idle status that follows
    with RawClient(gearmand.address) as client:
        assert client.run("slow", envelope("slow", 1.5))[0] == "WORK_COMPLETE"
        for _ in range(50):
            assert client.run("hello", envelope("hello", "x")) == ("WORK_COMPLETE", b"Hello x")
    running = listener.wait("STATUS", "running slow H:")
    listener.wait("STATUS", "idle, 1/1 servers, 51 jobs done", after=running)
    statuses = [m for m in listener.messages[running:] if "STATUS" in m]
    assert len(statuses) < 10, statuses  # not one per job

    worker.send(signal.SIGHUP)
    reloading = listener.wait("RELOADING", "1")
    listener.wait("READY", "1", after=reloading)

    gearmand.stop()
    waiting = listener.wait("STATUS", "waiting for servers, 0/1 servers")
    gearmand.start()
    listener.wait("STATUS", "idle, 1/1 servers", after=waiting)

    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    listener.wait("STOPPING", "1")
