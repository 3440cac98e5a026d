"""Firewall and TLS of the job server (see ../molecule.yml): a member host in the whitelist
runs jobs over TLS, an outsider on the same network is refused, stunnel refuses clients
without a valid certificate and plain text, and the rules come back after a restart."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

from gearjob_testinfra import firewall_admits
from gearjob_testinfra import tcp_connect as connect
from gearjob_workers import SCRATCH, new_tag, records, wait_until

testinfra_hosts = ["ansible://gearman_servers"]

GEARMAN_PORT = 4730
TLS_PORT = 4731
TLS_DIR = "/etc/gearman-tls"
CLIENT_TLS_DIR = "/etc/gearjob/tls"

# Sends a Gearman ECHO_REQ in plain text to HOST PORT and prints what came back.
PLAIN_ECHO = """
import socket, struct, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.sendall(b"\\0REQ" + struct.pack(">II", 16, 4) + b"ping")
data = b""
try:
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    print("closed", repr(data))
except OSError as exc:
    print("error", type(exc).__name__, repr(data))
"""

# Listens on a free port of every address, writes the port to a file, accepts connections.
LISTEN = """
import socket, sys
server = socket.create_server(("0.0.0.0", 0))
open(sys.argv[1], "w").write(str(server.getsockname()[1]))
while True:
    server.accept()[0].close()
"""


def python(host: Any, code: str, *args: object) -> str:
    command = " ".join(["python3", "-c", shlex.quote(code), *(shlex.quote(str(a)) for a in args)])
    return host.check_output(command)


def address(host: Any) -> str:
    return host.check_output("hostname -I").split()[0]


def refused_packets(server: Any) -> int:
    """The counter of the rule that resets connections from outside the whitelist."""
    text = server.check_output("nft list chain inet gearjob gearman")
    match = re.search(r"counter packets (\d+)", text)
    assert match, text
    return int(match.group(1))


def tls_journal_since(server: Any, since: str) -> str:
    return server.check_output(f"journalctl --unit gearman-tls --since @{since} --no-pager -o cat")


def client_config(member: Any, server: Any, name: str, tls: dict[str, str]) -> str:
    """A client.toml on the member for the TLS port with the given [tls] table."""
    lines = [f'servers = ["{server.backend.host}:{TLS_PORT}"]', "connect_timeout = 3.0", "[tls]"]
    lines += [f'{key} = "{value}"' for key, value in tls.items()]
    path = f"{SCRATCH}/{name}.toml"
    text = "\n".join(lines) + "\n"
    member.check_output(f"mkdir -p {SCRATCH} && printf %s {shlex.quote(text)} > {path}")
    return path


def mode_owner(host: Any, path: str) -> tuple[int, str, str]:
    f = host.file(path)
    return f.mode, f.user, f.group


def test_gearmand_on_loopback_and_stunnel_on_the_network(host: Any) -> None:
    sockets = host.check_output("ss -Hltn").splitlines()
    local = {line.split()[3] for line in sockets}
    assert f"127.0.0.1:{GEARMAN_PORT}" in local
    assert not any(s.endswith(f":{GEARMAN_PORT}") and not s.startswith("127.") for s in local)
    assert f"0.0.0.0:{TLS_PORT}" in local
    params = host.file("/etc/default/gearman-job-server").content_string
    assert "--ssl" not in params
    pid = int(host.check_output("systemctl show --property MainPID --value gearman-tls"))
    assert host.process.get(pid=pid).user == "stunnel4"
    props = host.service("gearman-tls").systemd_properties
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    capabilities = "systemctl show --property CapabilityBoundingSet --value gearman-tls"
    assert host.check_output(capabilities) == ""
    config = host.file(f"{TLS_DIR}/stunnel.conf").content_string
    for line in ("verifyChain = yes", "requireCert = yes", f"connect = 127.0.0.1:{GEARMAN_PORT}"):
        assert line in config


def test_keys_and_certificates(host: Any, group: Any) -> None:
    member = group("gearjob_clients")[0]
    assert mode_owner(host, TLS_DIR) == (0o750, "root", "stunnel4")
    assert mode_owner(host, f"{TLS_DIR}/host.key") == (0o640, "root", "stunnel4")
    assert mode_owner(host, f"{TLS_DIR}/ca.pem") == (0o644, "root", "root")
    assert mode_owner(member, f"{CLIENT_TLS_DIR}/host.key") == (0o640, "root", "gearjob")
    for target in (host, member):
        assert not target.run("find /etc /root /opt /var -name ca.key -print -quit").stdout.strip()
    # The CA lives next to the inventory on the controller, out of git's reach.
    pki = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".cache" / "gearjob-pki"
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    assert (pki / ".gitignore").read_text().splitlines()[-1] == "*"
    worker = member.file("/etc/gearjob/worker.toml").content_string
    client = member.file("/etc/gearjob/client.toml").content_string
    for config in (worker, client):
        assert f'"{host.backend.host}:{TLS_PORT}"' in config
        assert f'key_file = "{CLIENT_TLS_DIR}/host.key"' in config


def test_firewall_is_loaded_and_required(host: Any, group: Any) -> None:
    member, outsider = group("gearjob_clients")[0], group("outsiders")[0]
    service = host.service("gearjob-firewall")
    assert service.is_enabled
    assert service.systemd_properties["ActiveState"] == "active"
    required_by = service.systemd_properties["RequiredBy"].split()
    assert {"gearman-job-server.service", "gearman-tls.service"} <= set(required_by)
    table = host.check_output("nft list table inet gearjob")
    assert firewall_admits(host, address(member))
    assert not firewall_admits(host, address(outsider))
    assert f"{GEARMAN_PORT}, {TLS_PORT}" in table
    # Only the table of its own: nothing else was added or flushed.
    tables = host.check_output("nft list tables").splitlines()
    assert "table inet gearjob" in tables


def test_member_runs_jobs_over_tls(host: Any, group: Any) -> None:
    member = group("gearjob_clients")[0]
    cmd = member.run("gearjob submit my_module_hello_world tls")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "Hello tls"
    tag = new_tag("tls")
    cmd = member.run(f"gearjob submit --background my_module_record {tag}")
    assert cmd.rc == 0, cmd.stderr
    wait_until("the background job sent over TLS", lambda: records(member, tag))
    # The workers and clients of the member talk to stunnel only, never to gearmand's port.
    established = member.check_output("ss -Htn state established").splitlines()
    peers = [line.split()[-1] for line in established]
    assert any(peer.endswith(f":{TLS_PORT}") for peer in peers), peers
    assert not any(peer.endswith(f":{GEARMAN_PORT}") for peer in peers), peers


def test_outsider_is_refused_and_the_rest_of_the_host_is_untouched(host: Any, group: Any) -> None:
    member, outsider = group("gearjob_clients")[0], group("outsiders")[0]
    before = refused_packets(host)
    assert connect(outsider, host, TLS_PORT) == "refused"
    assert connect(outsider, host, GEARMAN_PORT) == "refused"
    assert refused_packets(host) > before
    assert connect(member, host, TLS_PORT) == "connected"
    # Another port of the job server is still open to the outsider.
    port_file = "/run/gearjob-secure-listener.port"
    host.check_output(
        f"rm -f {port_file} && systemd-run --unit gearjob-secure-listener "
        f"python3 -c {shlex.quote(LISTEN)} {port_file}"
    )
    try:
        wait_until("the test listener", lambda: host.file(port_file).exists)
        port = int(host.file(port_file).content_string)
        assert connect(outsider, host, port) == "connected"
    finally:
        host.run(
            "systemctl stop gearjob-secure-listener; systemctl reset-failed gearjob-secure-listener"
        )


def test_client_without_certificate_is_refused(host: Any, group: Any) -> None:
    member = group("gearjob_clients")[0]
    since = host.check_output("date +%s")
    path = client_config(member, host, "no-certificate", {"ca_file": f"{CLIENT_TLS_DIR}/ca.pem"})
    cmd = member.run(f"gearjob check --config {path}")
    assert cmd.rc == 4, cmd.stdout + cmd.stderr
    good = member.run("gearjob check --client")
    assert good.rc == 0, good.stdout + good.stderr
    wait_until(
        "stunnel to log the missing certificate",
        lambda: "peer did not return a certificate" in tls_journal_since(host, since),
    )


def test_certificate_of_another_ca_is_refused(host: Any, group: Any, tmp_path: Path) -> None:
    member = group("gearjob_clients")[0]
    openssl = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ]
    subprocess.run(
        [
            *openssl,
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rogue",
            "-keyout",
            str(tmp_path / "rogue.key"),
            "-out",
            str(tmp_path / "rogue.pem"),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("rogue.key", "rogue.pem"):
        member.ansible(
            "ansible.builtin.copy",
            f"src={tmp_path / name} dest={SCRATCH}/{name} mode=0600",
            check=False,
            become=False,
        )
    since = host.check_output("date +%s")
    path = client_config(
        member,
        host,
        "rogue",
        {
            "ca_file": f"{CLIENT_TLS_DIR}/ca.pem",
            "cert_file": f"{SCRATCH}/rogue.pem",
            "key_file": f"{SCRATCH}/rogue.key",
        },
    )
    cmd = member.run(f"gearjob check --config {path}")
    assert cmd.rc == 4, cmd.stdout + cmd.stderr
    wait_until(
        "stunnel to log the rejected certificate",
        lambda: "Rejected by CERT at depth=0: CN=rogue" in tls_journal_since(host, since),
    )


def test_plain_text_on_the_tls_port_fails(host: Any, group: Any) -> None:
    member = group("gearjob_clients")[0]
    answer = python(member, PLAIN_ECHO, host.backend.host, TLS_PORT)
    assert answer.startswith(("closed", "error")), answer
    assert "RES" not in answer and "ping" not in answer, answer


# Last in this file: it restarts the job server.
def test_rules_survive_a_restart_of_the_job_server(host: Any, group: Any) -> None:
    member, outsider = group("gearjob_clients")[0], group("outsiders")[0]
    subprocess.run(
        ["docker", "restart", "--time", "20", host.backend.host],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def booted() -> bool:
        try:
            state = host.run("systemctl is-system-running").stdout.strip()
        except Exception:  # noqa: BLE001 (the container is still coming up)
            return False
        return state in ("running", "degraded")

    wait_until("the job server to boot again", booted, limit=120)
    assert host.run("nft list table inet gearjob").rc == 0
    assert host.service("gearjob-firewall").systemd_properties["ActiveState"] == "active"
    before = refused_packets(host)
    assert connect(outsider, host, TLS_PORT) == "refused"
    assert refused_packets(host) > before

    def job_runs() -> bool:
        cmd = member.run("gearjob submit my_module_hello_world again")
        return cmd.rc == 0 and cmd.stdout.strip() == "Hello again"

    wait_until("a job over TLS after the restart", job_runs, limit=90)
