"""Peers that are not what they claim: a server that stops in the middle of a packet, one
that is not gearmand, one that streams an endless admin answer (fake servers in threads)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_helpers import WorkerProcess, run_cli, write_config
from test_protocol_fuzz import Peer

from gearjob.client import Client
from gearjob.config import ServerAddress
from gearjob.errors import ProtocolError
from gearjob.protocol import (
    MAX_ADMIN_ANSWER,
    MAX_ADMIN_LINE,
    Cmd,
    admin_command,
    pack_response,
)

Handler = Callable[[socket.socket], None]


class FakeServer:
    """Listens on a free port; every connection is given to `handler` in a thread."""

    def __init__(self, handler: Handler) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> ServerAddress:
        return ServerAddress("127.0.0.1", self.port)

    def _serve(self) -> None:
        while not self.closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        try:
            self.handler(sock)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self.closing = True
        self.listener.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        servers.append(FakeServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer_lines(*lines: bytes) -> Handler:
    def handler(sock: socket.socket) -> None:
        sock.recv(4096)
        sock.sendall(b"".join(line + b"\n" for line in lines))
        sock.recv(4096)  # then wait for the peer to close

    return handler


def test_check_refuses_a_server_that_is_not_gearmand(fake_server, gearmand):
    one_line = fake_server(answer_lines(b"hello"))
    done = run_cli("check", "--server", str(one_line.address))
    assert done.returncode == 4, done
    assert "not a Gearman job server: it answered the admin command 'version' with 'hello'" in (
        done.stdout
    )
    # the right version line, but no Gearman protocol behind it
    mimic = fake_server(answer_lines(b"OK 1.1.20", b"garbage"))
    done = run_cli("check", "--server", str(mimic.address), "--server", str(gearmand))
    assert done.returncode == 4, done
    assert f"{mimic.address}: UNAVAILABLE" in done.stdout
    assert f"{gearmand}: ok, gearmand 1." in done.stdout


def stream(line: bytes) -> Handler:
    def handler(sock: socket.socket) -> None:
        sock.recv(4096)
        chunk = line * max(1, 65536 // len(line))
        while True:
            sock.sendall(chunk)

    return handler


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"f\t1\t0\t1\n", f"longer than {MAX_ADMIN_ANSWER} bytes"),
        (b"x" * 4096, f"a line of the admin answer is longer than {MAX_ADMIN_LINE} bytes"),
    ],
)
def test_an_endless_admin_answer_is_cut_short(fake_server, line, message):
    server = fake_server(stream(line))
    with pytest.raises(ProtocolError, match=message):
        admin_command(server.address, "status", timeout=30)


def test_a_worker_drops_a_server_that_stops_in_the_middle_of_a_packet(tmp_path: Path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = listener.getsockname()[1]
    config = write_config(
        tmp_path / "worker.toml",
        [f"127.0.0.1:{port}"],
        {"hello": "sample_jobs:hello_world"},
        connect_timeout=0.5,
    )
    worker = WorkerProcess(["--config", str(config)], tmp_path / "worker.log")
    peers: list[Peer] = []
    try:
        worker.start()
        peer = _accept(listener, peers)
        peer.until(Cmd.GRAB_JOB_UNIQ)
        packet = pack_response(Cmd.JOB_ASSIGN_UNIQ, b"H:x:1", b"hello", b"", b'{"args":["x"]}')
        peer.send(packet[:20])  # and nothing more
        # the worker gives up on it after 6 x connect_timeout and connects again
        _accept(listener, peers).until(Cmd.CAN_DO)
        lost = "connection lost: the server sent part of a packet and then nothing for 3 s"
        assert lost in worker.log()
    finally:
        for peer in peers:
            peer.close()
        worker.stop()
        listener.close()


def _accept(listener: socket.socket, peers: list[Peer]) -> Peer:
    """The worker's next real connection (its connect probes close without a word)."""
    while True:
        sock, _ = listener.accept()
        peer = Peer(sock)
        peers.append(peer)
        try:
            peer.until(Cmd.SET_CLIENT_ID)
        except EOFError:
            continue
        return peer


def test_a_worker_leaves_a_server_that_never_answers_its_grab(tmp_path: Path, gearmand):
    """A server that takes the connection and then answers nothing (wedged, or its packets
    dropped by a firewall) must not keep the worker from the jobs of its other servers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = listener.getsockname()[1]
    config = write_config(
        tmp_path / "worker.toml",
        [f"127.0.0.1:{port}", str(gearmand)],
        {"hello": "sample_jobs:hello_world"},
        connect_timeout=1.0,  # gives up on the silent server after 6 s
    )
    worker = WorkerProcess(["--config", str(config)], tmp_path / "worker.log")
    peers: list[Peer] = []
    try:
        worker.start()
        _accept(listener, peers).until(Cmd.GRAB_JOB_UNIQ)  # and it is never answered
        with Client([gearmand.address]) as client:
            assert client.submit("hello", "Danny", timeout=60) == "Hello Danny"
        assert "no answer to GRAB_JOB" in worker.log()
    finally:
        for peer in peers:
            peer.close()
        worker.stop()
        listener.close()
