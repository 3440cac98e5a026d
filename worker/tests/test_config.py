"""Settings: TOML files, environment overrides, and errors that name key, value and file."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gearjob import config
from gearjob.config import ServerAddress, Settings, TLSSettings, load_settings, parse_servers
from gearjob.errors import ConfigError

FULL = """
servers = ["10.0.0.5:4730", "gear.example.org", "[::1]:4731"]
connect_timeout = 2.5
timeout = 60
job_timeout = 3600
max_jobs = 0
max_packet_size = 1048576
client_id = "web1"
[tls]
ca_file = "/etc/gearjob/tls/ca.pem"
cert_file = "/etc/gearjob/tls/host.pem"
key_file = "/etc/gearjob/tls/host.key"
verify = false
[jobs]
my_module_hello_world = "my_module.jobs:hello_world"
[job_timeouts]
my_module_slow = 120
"""


def write(tmp_path: Path, text: str, name: str = "gearjob.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ServerAddress("127.0.0.1", 4730)),
        ("gear.example.org:4731", ServerAddress("gear.example.org", 4731)),
        (" host:1 ", ServerAddress("host", 1)),
        ("[::1]:4730", ServerAddress("::1", 4730)),
        ("[fe80::1]", ServerAddress("fe80::1", 4730)),
        ("::1", ServerAddress("::1", 4730)),
    ],
)
def test_server_address_parse(text: str, expected: ServerAddress) -> None:
    assert ServerAddress.parse(text) == expected


def test_server_address_str() -> None:
    assert str(ServerAddress("127.0.0.1", 4730)) == "127.0.0.1:4730"
    assert str(ServerAddress("::1", 4731)) == "[::1]:4731"
    tls = TLSSettings(ca_file="ca.pem")
    assert ServerAddress.parse("h:5", tls).tls is tls


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "'' is empty"),
        ("host:", "invalid port ''"),
        ("host:abc", "invalid port 'abc'"),
        ("host:0", "invalid port '0'"),
        ("host:65536", "invalid port '65536'"),
        ("[::1", "closing"),
        ("[::1]x", "junk after"),
        ("[]:4730", "no valid host"),
        (":4730", "no valid host"),
        ("ho st:1", "no valid host"),
        ("http://host:1", "no valid host"),
    ],
)
def test_server_address_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        ServerAddress.parse(text)
    assert repr(text) in str(info.value)


def test_parse_servers() -> None:
    assert parse_servers("a:1, b:2,,") == [ServerAddress("a", 1), ServerAddress("b", 2)]


def test_full_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    s = load_settings(path, kind="worker")
    tls = TLSSettings(
        ca_file="/etc/gearjob/tls/ca.pem",
        cert_file="/etc/gearjob/tls/host.pem",
        key_file="/etc/gearjob/tls/host.key",
        verify=False,
    )
    assert s.servers == [
        ServerAddress("10.0.0.5", 4730, tls),
        ServerAddress("gear.example.org", 4730, tls),
        ServerAddress("::1", 4731, tls),
    ]
    assert s.connect_timeout == 2.5
    assert s.timeout == 60.0
    assert s.job_timeout == 3600.0
    assert s.max_jobs is None  # 0 = unlimited
    assert s.max_packet_size == 1048576
    assert s.client_id == "web1"
    assert s.tls == tls
    assert s.jobs == {"my_module_hello_world": "my_module.jobs:hello_world"}
    assert s.job_timeouts == {"my_module_slow": 120.0}
    assert s.source == str(path)
    assert "timeout" in s.keys_set
    assert "client_id" in s.keys_set


def test_zero_means_no_limit(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "timeout = 0\njob_timeout = 0\nmax_jobs = 5"), kind="client")
    assert (s.timeout, s.job_timeout, s.max_jobs) == (None, None, 5)


def test_logging_settings(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "servers = ['h']"), kind="worker")
    assert (s.slow_job, s.log_each_job) == (10.0, False)
    s = load_settings(write(tmp_path, "slow_job = 0.5\nlog_each_job = true"), kind="worker")
    assert (s.slow_job, s.log_each_job) == (0.5, True)


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "CLIENT_CONFIG", str(tmp_path / "absent.toml"))
    assert load_settings(kind="client").source is None
    present = write(tmp_path, 'client_id = "etc"', "worker.toml")
    monkeypatch.setattr(config, "WORKER_CONFIG", str(present))
    assert load_settings(kind="worker").client_id == "etc"
    s = load_settings(write(tmp_path, ""), kind="client")
    defaults = Settings()
    assert s.servers == [ServerAddress("127.0.0.1", 4730)] == defaults.servers
    assert (s.connect_timeout, s.timeout, s.max_packet_size) == (5.0, None, 64 * 1024 * 1024)
    assert s.tls is None
    assert s.keys_set == frozenset()


def test_env_config_and_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'servers = ["a:1"]\nclient_id = "env"')
    monkeypatch.setenv("GEARJOB_CONFIG", str(path))
    s = load_settings(kind="client")
    assert (s.servers, s.client_id, s.source) == ([ServerAddress("a", 1)], "env", str(path))
    monkeypatch.setenv("GEARJOB_SERVERS", "b:2, [::1]:3")
    s = load_settings(kind="worker")
    assert s.servers == [ServerAddress("b", 2), ServerAddress("::1", 3)]
    monkeypatch.setenv("GEARJOB_SERVERS", "  ")  # empty: ignored
    assert load_settings(kind="worker").servers == [ServerAddress("a", 1)]
    monkeypatch.setenv("GEARJOB_SERVERS", "b:x")
    with pytest.raises(ConfigError, match=r"\$GEARJOB_SERVERS='b:x'.*invalid port 'x'"):
        load_settings(kind="worker")


def test_env_servers_get_file_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[tls]\nca_file = "ca.pem"')
    monkeypatch.setenv("GEARJOB_SERVERS", "b:2")
    s = load_settings(path, kind="client")
    assert s.servers == [ServerAddress("b", 2, TLSSettings(ca_file="ca.pem"))]


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file {missing} does not exist"):
        load_settings(missing, kind="client")
    monkeypatch.setenv("GEARJOB_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"from \$GEARJOB_CONFIG\) does not exist"):
        load_settings(kind="client")


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "servers = [")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_settings(path, kind="client")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, kind="client")  # a directory


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("server = ['a']", "unknown key 'server'; known keys are client_id"),
        ("[tls]\ncafile = 'x'", r"unknown key 'tls.cafile'"),
        ("servers = []", r"servers = \[\] is invalid"),
        ("servers = 5", "servers = 5 is invalid"),
        ("servers = ['a:x']", r"servers: server address 'a:x' has an invalid port"),
        ("servers = [5]", "server address 5 is not a string"),
        ("connect_timeout = 0", "connect_timeout = 0 is invalid: expected a number > 0"),
        ("connect_timeout = 'fast'", "connect_timeout = 'fast' is invalid: expected a number"),
        ("timeout = -1", r"timeout = -1 is invalid: expected a number >= 0 \(0 = no limit\)"),
        ("timeout = true", "timeout = True is invalid"),
        ("timeout = inf", "timeout = inf is invalid"),
        ("job_timeout = '1h'", "job_timeout = '1h' is invalid"),
        ("max_jobs = 1.5", "max_jobs = 1.5 is invalid: expected an integer"),
        ("max_jobs = -1", "max_jobs = -1 is invalid: expected an integer >= 0"),
        ("slow_job = -1", "slow_job = -1 is invalid: expected a number >= 0"),
        ('log_each_job = "yes"', "log_each_job = 'yes' is invalid: expected true or false"),
        (
            "max_packet_size = 10",
            "max_packet_size = 10 is invalid: expected an integer from 1024 to 1073741824",
        ),
        ("max_packet_size = 1073741825", "max_packet_size = 1073741825 is invalid"),
        (
            "job_timeout = 1e20",
            r"job_timeout = 1e\+20 is invalid: .* at most 3.1536e\+07 \(a year\)",
        ),
        ("servers = ['::1:47301']", r"'::1:47301' is neither host:port nor an IPv6 address"),
        ("servers = ['a:b:c']", r"'a:b:c' is neither host:port nor an IPv6 address"),
        ("servers = ['a:1,b:2']", r"'a:1,b:2' holds a comma: give one server per"),
        ("servers = ['a:\uff14\uff17']", r"has an invalid port"),
        (f"servers = ['{'h' * 300}:4730']", r"has an invalid host name: at most 253"),
        ("servers = ['a..b']", r"has an invalid host name"),
        ("client_id = 3", "client_id = 3 is invalid: expected a non-empty string"),
        ("client_id = ''", "client_id = '' is invalid"),
        ("tls = 1", r"tls = 1 is invalid: expected a table \(\[tls\]\)"),
        ("[tls]\nverify = 'yes'", "tls.verify = 'yes' is invalid: expected true or false"),
        ("[tls]\nca_file = 1", "tls.ca_file = 1 is invalid"),
        ("jobs = 'x'", "jobs = 'x' is invalid: expected a table"),
        ("[jobs]\nx = 1", "jobs.x = 1 is invalid: expected a non-empty string"),
        ("[job_timeouts]\nx = 0", "job_timeouts.x = 0 is invalid: expected a number > 0"),
    ],
)
def test_errors_name_key_value_and_file(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        load_settings(path, kind="worker")
    assert str(path) in str(info.value)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("client_id = 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8 text \(byte 16\)"):
        load_settings(path, kind="worker")


@pytest.mark.parametrize("text", ["[::1]:4730", "::1", "[fe80::1%eth0]:1", "h\u00e9.example:1"])
def test_good_addresses_still_parse(text: str) -> None:
    assert ServerAddress.parse(text).port in (1, 4730)


def test_kind_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        load_settings(write(tmp_path, ""), kind="server")  # type: ignore[arg-type]


def test_tls_context(tmp_path: Path) -> None:
    ctx = TLSSettings(verify=False).context()
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False
    assert TLSSettings().context().verify_mode == ssl.CERT_REQUIRED
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=f"TLS ca_file '{missing}' cannot be used"):
        TLSSettings(ca_file=missing).context()
    with pytest.raises(ConfigError, match=f"TLS client certificate '{missing}'"):
        TLSSettings(cert_file=missing).context()
    junk = write(tmp_path, "not a certificate", "junk.pem")
    with pytest.raises(ConfigError, match=r"TLS ca_file .*junk\.pem"):
        TLSSettings(ca_file=str(junk)).context()
    with pytest.raises(ConfigError, match=r"key_file .* without cert_file"):
        TLSSettings(key_file=str(junk)).context()
