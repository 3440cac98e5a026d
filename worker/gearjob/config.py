"""Settings of gearjob clients and workers: TOML files, environment variables, defaults.

The same file layout serves ``client.toml`` and ``worker.toml``::

    servers = ["10.0.0.5:4730", "10.0.0.6:4730"]
    connect_timeout = 5.0
    timeout = 60            # client: seconds per call, 0 = wait forever
    job_timeout = 3600      # worker: seconds per job, 0 = no limit
    max_jobs = 0            # worker: exit after this many jobs, 0 = unlimited
    slow_job = 10           # worker: log a job that took this long (WARNING), 0 = never
    log_each_job = false    # worker: a log line per successful job (else a summary a minute)
    max_packet_size = 67108864
    client_id = "web1"
    [tls]
    ca_file = "/etc/gearjob/tls/ca.pem"
    cert_file = "/etc/gearjob/tls/host.pem"
    key_file = "/etc/gearjob/tls/host.key"
    server_hostname = "gearman.example.org"
    verify = true
    [jobs]
    my_module_hello_world = "my_module.jobs:hello_world"
    [job_timeouts]
    my_module_slow = 120
    [raw_jobs]              # worker: Python jobs that get the workload bytes
    my_module_resize = "my_module.jobs:resize"
    [commands.drupal]       # worker: command jobs (see gearjob.catalog)
    exec = "drush --root=/var/www/drupal -u 1 islandora-job-router"
    functions_from = "drush --root=/var/www/drupal islandora-job-list-functions"

``$GEARJOB_CONFIG`` names the file when no path is given; ``$GEARJOB_SERVERS``
(comma-separated ``host:port``) overrides ``servers``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "CLIENT_CONFIG",
    "DEFAULT_PORT",
    "WORKER_CONFIG",
    "ServerAddress",
    "Settings",
    "TLSSettings",
    "load_settings",
    "parse_servers",
]

DEFAULT_PORT = 4730
DEFAULT_MAX_PACKET = 64 * 1024 * 1024
MIN_PACKET_SIZE = 1024
MAX_PACKET_SIZE = 1024 * 1024 * 1024  # 1 GiB: a packet larger than that is not a job
#: the longest timeout or time limit (a year); more overflows the system's timers
MAX_SECONDS = 365 * 24 * 3600.0
#: a job that takes longer (seconds) is logged at WARNING (worker.toml ``slow_job``)
DEFAULT_SLOW_JOB = 10.0
#: the longest host name DNS allows
MAX_HOST_NAME = 253
CLIENT_CONFIG = "/etc/gearjob/client.toml"
WORKER_CONFIG = "/etc/gearjob/worker.toml"
ENV_CONFIG = "GEARJOB_CONFIG"
ENV_SERVERS = "GEARJOB_SERVERS"


@dataclass(frozen=True)
class TLSSettings:
    """TLS towards the job servers (for example through stunnel in front of gearmand).

    ``ca_file`` verifies the server (only that CA; the system CAs when None);
    ``cert_file``/``key_file`` is the client certificate (``key_file`` None: the key is
    inside ``cert_file``);
    ``server_hostname`` is the name to verify (the address host when None).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """Build an SSL client context; ConfigError names the file that cannot be used."""
        import ssl  # here: plain TCP users never load OpenSSL (~5 MB)

        try:
            # with a ca_file, only that CA is trusted (not the system's public CAs)
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"TLS ca_file {self.ca_file!r} cannot be used: {exc}; "
                "give a readable PEM file with the CA certificate(s)"
            ) from exc
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.key_file and not self.cert_file:
            raise ConfigError(
                f"TLS key_file {self.key_file!r} is set without cert_file; "
                "set cert_file to the client certificate"
            )
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"TLS client certificate {self.cert_file!r} (key {self.key_file!r}) "
                    f"cannot be used: {exc}; give readable PEM files whose key matches"
                ) from exc
        return ctx


@dataclass(frozen=True)
class ServerAddress:
    """A job server: ``str()`` gives ``host:port`` (``[::1]:4730`` for IPv6)."""

    host: str
    port: int = DEFAULT_PORT
    tls: TLSSettings | None = None

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, tls: TLSSettings | None = None) -> ServerAddress:
        """Parse ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` (or a bare IPv6 address)."""
        if not isinstance(text, str):
            raise ConfigError(f"server address {text!r} is not a string; write it as host:port")
        value = text.strip()
        hint = "write it as host, host:port or [ipv6]:port"
        if not value:
            raise ConfigError(f"server address {text!r} is empty; {hint}")
        port_text: str | None = None
        if value.startswith("["):
            end = value.find("]")
            if end < 0:
                raise ConfigError(f"server address {text!r} lacks the closing ']'; {hint}")
            host = value[1:end]
            rest = value[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"server address {text!r} has junk after ']'; {hint}")
                port_text = rest[1:]
        elif value.count(":") == 1:
            host, port_text = value.split(":")
        else:
            host = value  # a host name or a bare IPv6 address
        _check_host(text, host, hint=hint)
        port = DEFAULT_PORT
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
                raise ConfigError(
                    f"server address {text!r} has an invalid port {port_text!r}; "
                    "use a number from 1 to 65535"
                )
            port = int(port_text)
        return cls(host, port, tls)


def _check_host(text: str, host: str, *, hint: str) -> None:
    """ConfigError unless ``host`` is a usable host name or address."""
    import ipaddress

    if "," in host:
        raise ConfigError(
            f"server address {text!r} holds a comma: give one server per --server (a "
            "comma-separated list only in $GEARJOB_SERVERS)"
        )
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"server address {text!r} has no valid host; {hint}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ConfigError(
                f"server address {text!r} is neither host:port nor an IPv6 address; "
                "an IPv6 address with a port is written [address]:port, e.g. [::1]:4730"
            ) from None
        return
    try:
        ascii_name = host.encode("idna") if not host.isascii() else host.encode()
    except UnicodeError as exc:
        raise ConfigError(f"server address {text!r} has an invalid host name: {exc}") from None
    labels = ascii_name.rstrip(b".").split(b".")
    if len(ascii_name) > MAX_HOST_NAME or any(not 0 < len(label) <= 63 for label in labels):
        raise ConfigError(
            f"server address {text[:80]!r} has an invalid host name: at most "
            f"{MAX_HOST_NAME} characters, in dot-separated parts of 1 to 63"
        )


def parse_servers(text: str, tls: TLSSettings | None = None) -> list[ServerAddress]:
    """Parse a comma-separated server list such as ``$GEARJOB_SERVERS``."""
    return [ServerAddress.parse(part, tls) for part in text.split(",") if part.strip()]


@dataclass
class Settings:
    """Effective settings; ``source`` is the file they came from (None: defaults only)."""

    servers: list[ServerAddress] = field(default_factory=lambda: [ServerAddress("127.0.0.1")])
    connect_timeout: float = 5.0
    timeout: float | None = None
    job_timeout: float | None = None
    job_timeouts: dict[str, float] = field(default_factory=dict)
    max_jobs: int | None = None
    #: seconds after which a successful job is logged as slow (0: never)
    slow_job: float = DEFAULT_SLOW_JOB
    #: log every successful job (else only the summary lines of gearjob.summary)
    log_each_job: bool = False
    max_packet_size: int = DEFAULT_MAX_PACKET
    client_id: str | None = None
    tls: TLSSettings | None = None
    jobs: dict[str, str] = field(default_factory=dict)
    #: [raw_jobs]: Python jobs that get the workload bytes as they are
    raw_jobs: dict[str, str] = field(default_factory=dict)
    #: [commands.NAME] tables, checked by gearjob.catalog.parse_groups
    commands: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    #: top-level keys the file set explicitly (lets callers tell "absent" from a default)
    keys_set: frozenset[str] = frozenset()


_TOP_KEYS = {
    "servers",
    "connect_timeout",
    "timeout",
    "job_timeout",
    "max_jobs",
    "slow_job",
    "log_each_job",
    "max_packet_size",
    "client_id",
    "tls",
    "jobs",
    "job_timeouts",
    "raw_jobs",
    "commands",
}
_TLS_KEYS = {"ca_file", "cert_file", "key_file", "server_hostname", "verify"}


class _Reader:
    """Type checks for values of one file; every error names key, value and file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, need: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key} = {value!r} is invalid: {need}")

    def number(self, key: str, value: Any, *, allow_zero: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, value, "expected a number of seconds")
        if (
            not math.isfinite(value)
            or not 0 <= value <= MAX_SECONDS
            or (value == 0 and not allow_zero)
        ):
            need = "a number >= 0 (0 = no limit)" if allow_zero else "a number > 0"
            raise self.fail(key, value, f"expected {need}, at most {MAX_SECONDS:g} (a year)")
        return float(value)

    def integer(self, key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, "expected an integer")
        if value < minimum or (maximum is not None and value > maximum):
            within = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(key, value, f"expected an integer {within}")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, value, "expected a non-empty string")
        return value

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, f"expected a table ([{key}])")
        return value


def _read_file(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist; create it or fix the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc


def _settings_from(data: dict[str, Any], source: str) -> Settings:
    r = _Reader(source)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(_TOP_KEYS))}"
        )
    s = Settings(source=source, keys_set=frozenset(data))
    if "tls" in data:
        tls = r.table("tls", data["tls"])
        bad = sorted(set(tls) - _TLS_KEYS)
        if bad:
            raise ConfigError(
                f"{source}: unknown key 'tls.{bad[0]}'; known keys in [tls] are "
                f"{', '.join(sorted(_TLS_KEYS))}"
            )
        verify = tls.get("verify", True)
        if not isinstance(verify, bool):
            raise r.fail("tls.verify", verify, "expected true or false")
        files = {
            k: r.string(f"tls.{k}", tls[k])
            for k in ("ca_file", "cert_file", "key_file", "server_hostname")
            if k in tls
        }
        s.tls = TLSSettings(verify=verify, **files)
    if "servers" in data:
        servers = data["servers"]
        if isinstance(servers, str):
            servers = [p for p in servers.split(",") if p.strip()]
        if not isinstance(servers, list) or not servers:
            raise r.fail("servers", data["servers"], 'expected a list like ["host:4730"]')
        parsed = []
        for item in servers:
            try:
                parsed.append(ServerAddress.parse(item))
            except ConfigError as exc:
                raise ConfigError(f"{source}: servers: {exc}") from exc
        s.servers = parsed
    if "connect_timeout" in data:
        s.connect_timeout = r.number("connect_timeout", data["connect_timeout"], allow_zero=False)
    for key in ("timeout", "job_timeout"):
        if key in data:
            seconds = r.number(key, data[key], allow_zero=True)
            setattr(s, key, seconds or None)
    if "max_jobs" in data:
        s.max_jobs = r.integer("max_jobs", data["max_jobs"], minimum=0) or None
    if "slow_job" in data:
        s.slow_job = r.number("slow_job", data["slow_job"], allow_zero=True)
    if "log_each_job" in data:
        if not isinstance(data["log_each_job"], bool):
            raise r.fail("log_each_job", data["log_each_job"], "expected true or false")
        s.log_each_job = data["log_each_job"]
    if "max_packet_size" in data:
        s.max_packet_size = r.integer(
            "max_packet_size",
            data["max_packet_size"],
            minimum=MIN_PACKET_SIZE,
            maximum=MAX_PACKET_SIZE,
        )
    if "client_id" in data:
        s.client_id = r.string("client_id", data["client_id"])
    if "jobs" in data:
        jobs = r.table("jobs", data["jobs"])
        s.jobs = {name: r.string(f"jobs.{name}", target) for name, target in jobs.items()}
    if "raw_jobs" in data:
        jobs = r.table("raw_jobs", data["raw_jobs"])
        s.raw_jobs = {name: r.string(f"raw_jobs.{name}", target) for name, target in jobs.items()}
    if "commands" in data:
        s.commands = r.table("commands", data["commands"])
    if "job_timeouts" in data:
        limits = r.table("job_timeouts", data["job_timeouts"])
        s.job_timeouts = {
            name: r.number(f"job_timeouts.{name}", v, allow_zero=False)
            for name, v in limits.items()
        }
    return s


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    kind: Literal["client", "worker"],
) -> Settings:
    """Load settings for a client or worker.

    ``path`` None: ``$GEARJOB_CONFIG`` if set, else ``/etc/gearjob/<kind>.toml`` if it exists,
    else defaults. A path given explicitly (or through ``$GEARJOB_CONFIG``) must exist.
    ``$GEARJOB_SERVERS`` overrides ``servers`` when set and not empty.
    """
    if kind not in ("client", "worker"):
        raise ValueError(f"kind must be 'client' or 'worker', not {kind!r}")
    file: Path | None = None
    if path is not None:
        file = Path(path)
    elif os.environ.get(ENV_CONFIG, "").strip():
        file = Path(os.environ[ENV_CONFIG].strip())
        if not file.exists():
            raise ConfigError(
                f"config file {file} (from ${ENV_CONFIG}) does not exist; "
                f"fix or unset ${ENV_CONFIG}"
            )
    else:
        default = Path(CLIENT_CONFIG if kind == "client" else WORKER_CONFIG)
        if default.exists():
            file = default
    settings = Settings() if file is None else _settings_from(_read_file(file), str(file))
    env_servers = os.environ.get(ENV_SERVERS, "")
    if env_servers.strip():
        try:
            settings.servers = parse_servers(env_servers)
        except ConfigError as exc:
            raise ConfigError(f"${ENV_SERVERS}={env_servers!r}: {exc}") from exc
    if settings.tls is not None:
        settings.servers = [ServerAddress(a.host, a.port, settings.tls) for a in settings.servers]
    return settings
