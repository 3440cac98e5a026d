"""TLS with client certificates, through a TLS terminator in front of gearmand.

A throwaway CA, server and client certificate are made with the ``openssl`` CLI. The
terminator is stunnel (as in production) when installed, else a small Python proxy.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gearjob import Client, ServerAddress, ServerUnavailable, TLSSettings

if TYPE_CHECKING:
    from conftest import GearmanServer, RawWorker

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed"),
]

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of the above


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=d,
    )  # fmt: skip


def make_signed(d: Path, name: str, ca: str, extensions: str) -> None:
    (d / f"{name}.ext").write_text(extensions)
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=d,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_signed(
        d,
        "server",
        "ca",
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n",
    )
    make_signed(d, "client", "ca", "extendedKeyUsage = clientAuth\n")
    return Certs(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "otherca.pem",
    )


def wait_for_port(port: int, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the TLS terminator for port {port} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class PythonTerminator:
    """A TLS-terminating proxy: TLS (client certificate required) in, plain TCP out."""

    def __init__(self, certs: Certs, backend: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
            plain = socket.create_connection(("127.0.0.1", self.backend))
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.sockets += [tls, plain]
        threading.Thread(target=self._pump, args=(plain, tls), daemon=True).start()
        self._pump(tls, plain)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def tls_port(certs: Certs, gearmand: GearmanServer, tmp_path: Path) -> Iterator[int]:
    """A port on 127.0.0.1 where TLS with a client certificate leads to ``gearmand``."""
    port_probe = socket.create_server(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    if STUNNEL is None:
        proxy = PythonTerminator(certs, gearmand.port)
        try:
            wait_for_port(proxy.port, proxy.alive)
            yield proxy.port
        finally:
            proxy.close()
        return
    conf = tmp_path / "stunnel.conf"
    conf.write_text(
        f"foreground = yes\npid =\noutput = {tmp_path / 'stunnel.log'}\ndebug = 5\n"
        f"[gearman]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{gearmand.port}\n"
        f"cert = {certs.server_cert}\nkey = {certs.server_key}\nCAfile = {certs.ca}\n"
        "verifyChain = yes\nrequireCert = yes\n"
    )
    proc = subprocess.Popen(
        [STUNNEL, str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, lambda: proc.poll() is None)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def tls_settings(certs: Certs, **overrides: Any) -> TLSSettings:
    values: dict[str, Any] = {
        "ca_file": str(certs.ca),
        "cert_file": str(certs.client_cert),
        "key_file": str(certs.client_key),
    }
    values.update(overrides)
    return TLSSettings(**values)


def echo(*args: Any) -> list[Any]:
    return list(args)


def test_submit_over_tls_with_client_certificate(
    certs: Certs, tls_port: int, gearmand: GearmanServer, raw_worker: Callable[..., RawWorker]
) -> None:
    raw_worker(gearmand, {"echo": echo})  # the worker talks to gearmand directly
    address = ServerAddress("127.0.0.1", tls_port, tls_settings(certs))
    with Client([address], timeout=20) as client:
        assert client.submit("echo", "über TLS ✓") == ["über TLS ✓"]
        big = "x" * (2 * 1024 * 1024)
        assert client.submit("echo", big) == [big]
        results = client.run_batch([{"job_name": "echo", "args": [i]} for i in range(300)])
        assert [r.value for r in results] == [[i] for i in range(300)]
        handle = client.submit_background("unserved")
        assert client.job_status(handle).known


def test_tls_from_client_argument_and_server_hostname(
    certs: Certs, tls_port: int, gearmand: GearmanServer, raw_worker: Callable[..., RawWorker]
) -> None:
    raw_worker(gearmand, {"echo": echo})
    tls = tls_settings(certs, server_hostname="localhost")
    with Client([f"127.0.0.1:{tls_port}"], tls=tls, timeout=20) as client:
        assert client.submit("echo", 1) == [1]


def test_tls_without_client_certificate_fails(
    certs: Certs, tls_port: int, gearmand: GearmanServer
) -> None:
    tls = TLSSettings(ca_file=str(certs.ca))
    with (
        Client([f"127.0.0.1:{tls_port}"], tls=tls, timeout=20) as client,
        pytest.raises(ServerUnavailable, match=rf"^127\.0\.0\.1:{tls_port}: ") as info,
    ):
        client.submit("echo", 1)
    assert gearmand.running
    assert "connection refused" not in str(info.value)


def test_tls_untrusted_server_fails(certs: Certs, tls_port: int) -> None:
    tls = tls_settings(certs, ca_file=str(certs.other_ca))
    with (
        Client([f"127.0.0.1:{tls_port}"], tls=tls, timeout=20) as client,
        pytest.raises(ServerUnavailable, match="TLS handshake failed: the server's certificate"),
    ):
        client.submit("echo", 1)


def test_tls_wrong_host_name_fails(certs: Certs, tls_port: int) -> None:
    tls = tls_settings(certs, server_hostname="gearman.example.org")
    with (
        Client([f"127.0.0.1:{tls_port}"], tls=tls, timeout=20) as client,
        pytest.raises(ServerUnavailable, match="TLS handshake failed"),
    ):
        client.submit("echo", 1)


def test_with_ca_file_set_the_system_cas_are_not_trusted(
    certs: Certs, tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the system store (SSL_CERT_FILE) trusts the CA that signed the server's certificate,
    # as the public CAs would trust a publicly issued one; ca_file names another CA
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = tls_settings(certs, ca_file=str(certs.other_ca))
    assert tls.context().cert_store_stats()["x509_ca"] == 1
    with (
        Client([f"127.0.0.1:{tls_port}"], tls=tls, timeout=20) as client,
        pytest.raises(ServerUnavailable, match="TLS handshake failed: the server's certificate"),
    ):
        client.submit("echo", 1)
    # without ca_file, the system store is what verifies the server
    assert TLSSettings().context().cert_store_stats()["x509_ca"] >= 1
