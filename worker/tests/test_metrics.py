"""`gearjob metrics`: the Prometheus exporter, scraped over HTTP against a real gearmand."""

from __future__ import annotations

import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import WorkerProcess

from gearjob import metrics
from gearjob.client import Client

pytest_plugins = ["daemon_fixtures"]

WEIRD = 'we"ird\\name'  # a function name whose label value needs escaping
FAMILIES = [
    "gearjob_server_up",
    "gearjob_server_scrape_duration_seconds",
    "gearjob_jobs_queued",
    "gearjob_jobs_running",
    "gearjob_jobs_waiting",
    "gearjob_workers",
    "gearjob_persistent_queue_up",
    "gearjob_persistent_queue_rows",
    "gearjob_persistent_queue_scheduled",
    "gearjob_scrape_duration_seconds",
]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_metrics_of_a_known_queue(
    gearmand_factory, raw_worker, exporter, unused_port, silent_port, tmp_path
):
    path = tmp_path / "queue.sqlite3"
    server = gearmand_factory("-q", "libsqlite3", f"--libsqlite3-db={path}")
    with Client([server.address]) as client:
        for i in range(3):
            client.submit_background("m_a", i)
        client.submit_background(WEIRD, 1)
        client.submit_background(WEIRD, 2)
    raw_worker(server, {"m_b": lambda: None})
    config = tmp_path / "queue.toml"
    config.write_text(f'type = "sqlite"\nserver = "{server}"\n[sqlite]\npath = "{path}"\n')
    dead, silent = f"127.0.0.1:{unused_port}", f"127.0.0.1:{silent_port}"
    proc, url = exporter(
        "--server", str(server), "--server", dead, "--server", silent,
        "--queue-config", str(config), "--scrape-timeout", "0.5",
    )  # fmt: skip

    content_type, text = scrape(url)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    lines = text.splitlines()
    s = f'server="{server}"'
    weird = 'function="we\\"ird\\\\name"'
    for line in [
        f"gearjob_server_up{{{s}}} 1",
        f'gearjob_server_up{{server="{dead}"}} 0',
        f'gearjob_server_up{{server="{silent}"}} 0',
        f'gearjob_jobs_queued{{{s},function="m_a"}} 3',
        f"gearjob_jobs_queued{{{s},{weird}}} 2",
        f'gearjob_jobs_queued{{{s},function="m_b"}} 0',
        f'gearjob_jobs_running{{{s},function="m_a"}} 0',
        f'gearjob_jobs_waiting{{{s},function="m_a"}} 3',
        f'gearjob_jobs_waiting{{{s},function="m_b"}} 0',
        f'gearjob_workers{{{s},function="m_a"}} 0',
        f'gearjob_workers{{{s},function="m_b"}} 1',
        f'gearjob_persistent_queue_up{{{s},type="sqlite"}} 1',
        f'gearjob_persistent_queue_rows{{{s},type="sqlite",function="m_a"}} 3',
        f'gearjob_persistent_queue_rows{{{s},type="sqlite",{weird}}} 2',
        f'gearjob_persistent_queue_scheduled{{{s},type="sqlite",function="m_a"}} 0',
    ]:
        assert line in lines, f"{line!r} not in\n{text}"
    assert not any(dead in line and "function=" in line for line in lines)
    assert re.search(rf"^gearjob_server_scrape_duration_seconds\{{{s}\}} [0-9.e-]+$", text, re.M)
    assert re.search(r"^gearjob_scrape_duration_seconds [0-9.e-]+$", text, re.M)

    # one HELP and one TYPE line per family, right before its samples
    for family in FAMILIES:
        assert lines.count(f"# TYPE {family} gauge") == 1, family
        index = lines.index(f"# TYPE {family} gauge")
        assert lines[index - 1].startswith(f"# HELP {family} ")
        samples = [line for line in lines if re.match(rf"{family}[{{ ]", line)]
        assert samples, family
        assert lines[index + 1 : index + 1 + len(samples)] == samples
    assert all(line.startswith(("#", "gearjob_")) for line in lines)

    # every scrape asks again
    with Client([server.address]) as client:
        client.submit_background("m_a", 99)
    assert f'gearjob_jobs_queued{{{s},function="m_a"}} 4' in scrape(url)[1].splitlines()

    with urllib.request.urlopen(url + "/", timeout=10) as response:
        assert b'href="/metrics"' in response.read()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/nope", timeout=10)
    assert err.value.code == 404

    proc.send(signal.SIGTERM)
    assert proc.wait() == 0


def test_a_dead_queue_database_shows_up_0(gearmand, exporter, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text(
        f'type = "sqlite"\nserver = "{gearmand}"\n[sqlite]\npath = "{tmp_path / "none"}"\n'
    )
    _, url = exporter("--server", str(gearmand), "--queue-config", str(config))
    lines = scrape(url)[1].splitlines()
    assert f'gearjob_server_up{{server="{gearmand}"}} 1' in lines
    assert f'gearjob_persistent_queue_up{{server="{gearmand}",type="sqlite"}} 0' in lines
    assert not any(line.startswith("gearjob_persistent_queue_rows") for line in lines)


def test_a_memory_queue_config_adds_no_table_metrics(gearmand, exporter, tmp_path):
    config = tmp_path / "queue.toml"
    config.write_text('type = "memory"\n')
    _, url = exporter("--server", str(gearmand), "--queue-config", str(config))
    assert "gearjob_persistent_queue" not in scrape(url)[1]


def test_a_busy_port_exits_1(exporter, silent_port, tmp_path):
    proc = WorkerProcess(
        ["--listen", f"127.0.0.1:{silent_port}", "--server", "127.0.0.1:1"],
        tmp_path / "busy.log",
        command="metrics",
    ).start()
    assert proc.wait() == 1
    assert f"cannot listen on 127.0.0.1:{silent_port}: Address already in use" in proc.log()


def test_render_escapes_label_values_and_help():
    snapshot = metrics.Snapshot(
        [metrics.ServerState("h:1", True, 0.25, (metrics.FunctionState('a"b\\c\nd', 2, 1, 0),))],
        None,
        0.5,
    )
    text = metrics.render(snapshot)
    assert 'gearjob_jobs_queued{server="h:1",function="a\\"b\\\\c\\nd"} 2\n' in text
    assert 'gearjob_jobs_waiting{server="h:1",function="a\\"b\\\\c\\nd"} 2\n' in text
    assert 'gearjob_server_scrape_duration_seconds{server="h:1"} 0.25\n' in text
    assert "gearjob_scrape_duration_seconds 0.5\n" in text
    assert text.endswith("\n") and "\n\n" not in text


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_idle_connections_are_capped_and_timed_out(gearmand, exporter):
    proc, url = exporter("--server", str(gearmand))
    port = int(url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(200)]
    try:
        proc.wait_log("connection\\(s\\) refused")
        # one thread per connection used to make 201 threads here
        assert _threads(proc.pid) <= metrics.MAX_CONNECTIONS + 4
        # an idle connection is closed by the exporter (after CONNECTION_TIMEOUT)
        assert idle[0].recv(100) == b""
    finally:
        for sock in idle:
            sock.close()
    # once the idle ones are gone, scrapes are served again
    _, text = scrape(url)
    assert "gearjob_server_up" in text
