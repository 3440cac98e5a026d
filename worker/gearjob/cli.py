"""The ``gearjob`` command: run a worker, submit jobs, inspect servers and the job registry,
clear queued jobs, serve Prometheus metrics.

Everything beyond argparse is imported inside the command that needs it, so that an idle
worker stays small.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

if TYPE_CHECKING:
    from gearjob.client import Client, JobResult
    from gearjob.config import Settings
    from gearjob.queue import QueueConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4
EXIT_TIMEOUT = 5

EXIT_CODES = """\
exit codes:
  0  success
  1  a job failed, or an unexpected error
  2  usage error (bad option, argument or batch line)
  3  configuration or job registry error
  4  a job server is unavailable (or the queue database, for status and clear)
  5  a job timed out (the worker: a job ignored its time limit and was stopped hard)
  6  no such job: no server knows the handle (status --handle, cancel)
  130/143  the worker was stopped at once by SIGINT / a second SIGTERM
"""

MAIN_EPILOG = f"""\
examples:
  gearjob worker --config /etc/gearjob/worker.toml
  gearjob submit my_module_hello_world Danny
  gearjob status --server 10.0.0.5:4730
  gearjob clear --function my_module_hello_world
  gearjob metrics --listen 127.0.0.1:9731

configuration: workers read /etc/gearjob/worker.toml, clients (submit, batch, status,
metrics) /etc/gearjob/client.toml, unless --config or $GEARJOB_CONFIG names another file;
$GEARJOB_SERVERS and --server override the servers it lists. status, clear and metrics
read the local gearmand's queue from /etc/gearjob/queue.toml (or --queue-config).

{EXIT_CODES}"""

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LISTEN = "127.0.0.1:9731"  # gearjob metrics


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config, --server, --log-level on the top parser and (suppressed) on each command,
    so that they can be given before or after the command name."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default(None),
        help="TOML configuration file (default: $GEARJOB_CONFIG, else "
        "/etc/gearjob/worker.toml for worker/jobs/check, /etc/gearjob/client.toml "
        "for submit/batch/status/metrics)",
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        action="append",
        type=_server,
        default=default(None),
        help="job server; repeat for several (replaces the configured servers)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default("info"),
        help="log messages of this level and above to stderr (default: info)",
    )


def _command(
    sub: Any, name: str, summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=f"{summary}.\n\n{description}",
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
        formatter_class=_Formatter,
    )
    _add_common(parser, top=False)
    return parser


def _server(text: str) -> str:
    from gearjob.config import ServerAddress
    from gearjob.errors import ConfigError

    try:
        ServerAddress.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    from gearjob.config import MAX_SECONDS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0 to {MAX_SECONDS:g} (a year), got {text!r}"
        )
    return value


def _job_name_problem(name: str) -> str | None:
    """What is wrong with a job name, or None (the client's rule, said before connecting)."""
    from gearjob.client import MAX_FUNCTION_SIZE

    size = len(name.encode("utf-8", "replace"))
    if not name or "\0" in name or size > MAX_FUNCTION_SIZE or any(c.isspace() for c in name):
        shown = repr(name) if len(name) <= 60 else f"{name[:60]!r}... ({size} bytes)"
        return (
            f"job name {shown} is invalid: use 1 to {MAX_FUNCTION_SIZE} bytes without NUL "
            "or white space"
        )
    return None


def _job_name(text: str) -> str:
    problem = _job_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gearjob",
        description="Asynchronous and parallel job processing for Python on Gearman.",
        epilog=MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    _add_common(parser, top=True)
    from gearjob import __version__

    parser.add_argument("--version", action="version", version=f"gearjob {__version__}")
    from gearjob import cli_jobs

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_worker(sub)
    _add_submit(sub)
    _add_batch(sub)
    _add_status(sub)
    _add_clear(sub)
    _add_metrics(sub)
    _add_jobs(sub)
    cli_jobs.add_cancel_command(sub, _command)
    _add_check(sub)
    return parser


def _add_worker(sub: Any) -> None:
    p = _command(
        sub,
        "worker",
        "Run a worker daemon that serves the registered jobs",
        "Connects to every configured server at once and runs one job at a time.\n"
        "SIGTERM: finish the current job, send its result, exit 0. A second SIGTERM or\n"
        "SIGINT: exit at once (143/130); the server gives the job to another worker.\n"
        "SIGHUP: re-read the configuration and the job registry between jobs.\n"
        "Jobs come from the gearjob.jobs entry points of installed packages, then the\n"
        "[jobs] table of the configuration, then --job flags; a later source overrides\n"
        "an earlier one for the same name.\n"
        "Command jobs (--exec, [commands.NAME]) run an executable per job like\n"
        "gearman -w -- CMD: the workload on stdin, stdout is the result.",
        "  gearjob worker --config /etc/gearjob/worker.toml\n"
        "  gearjob worker --server 127.0.0.1:4730 --job hello=my_module.jobs:hello_world\n"
        "  gearjob worker --max-jobs 1000 --job-timeout 600\n"
        "  gearjob worker --exec 'drush --root=/var/www/drupal -u 1 islandora-job-router' \\\n"
        "      --functions-from 'drush --root=/var/www/drupal islandora-job-list-functions'",
    )
    _job_flag(p)
    _command_flags(p)
    p.add_argument(
        "--max-jobs",
        type=_positive_int,
        metavar="N",
        help="exit 0 after N jobs, to be restarted fresh (0 = no limit; default: config max_jobs)",
    )
    p.add_argument(
        "--job-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="fail a job that runs longer (0 = no limit; default: config job_timeout; "
        "[job_timeouts] entries still apply to their jobs)",
    )
    p.add_argument(
        "--log-each-job",
        action="store_true",
        default=None,
        help="log a line per successful job at level info (default: config log_each_job, "
        "else off: one summary line per function a minute; failures, timeouts and slow "
        "jobs are always logged)",
    )


def _add_submit(sub: Any) -> None:
    from gearjob import cli_jobs

    p = _command(
        sub,
        "submit",
        "Submit one job and print its result",
        "Each ARG is parsed as JSON, else taken as a string. The result is printed as is\n"
        "when it is a string, else as JSON. Exit 1 when the job fails, 5 on a timeout.",
        "  gearjob submit my_module_hello_world Danny\n"
        '  gearjob submit resize \'{"path": "/tmp/a.jpg"}\' 640 --timeout 30\n'
        "  gearjob submit --background --priority high reindex 42\n"
        "  gearjob submit --background --in 10m reindex 42\n"
        "  gearjob submit --progress import_all /srv/data",
    )
    p.add_argument("job", metavar="JOB", type=_job_name, help="job name (Gearman function)")
    p.add_argument("args", metavar="ARG", nargs="*", help="job argument (JSON, else a string)")
    p.add_argument(
        "--background",
        action="store_true",
        help="do not wait for the job; print its handle",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up waiting after this long (0 = wait forever; default: the config's "
        "timeout, else 60)",
    )
    p.add_argument(
        "--priority", choices=("low", "normal", "high"), default="normal", help="of the job"
    )
    cli_jobs.add_submit_flags(p)


def _add_batch(sub: Any) -> None:
    p = _command(
        sub,
        "batch",
        "Run the jobs of a JSON-lines file in parallel and print their results",
        'Each line is {"job_name": "...", "args": [...]}; "-" reads standard input.\n'
        "Prints one JSON line per job, in input order. Exit 1 if any job failed,\n"
        "2 (naming the line) if a line is not a valid job. A progress bar is shown\n"
        "on a terminal.",
        "  gearjob batch jobs.jsonl\n"
        '  echo \'{"job_name": "my_module_hello_world", "args": ["Danny"]}\' | gearjob batch -',
    )
    p.add_argument("file", metavar="FILE.jsonl", help='file of jobs, "-" for standard input')
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="for the whole batch (0 = wait forever; default: the config's timeout, else 60)",
    )
    p.add_argument(
        "--priority", choices=("low", "normal", "high"), default="normal", help="of every job"
    )


def _add_status(sub: Any) -> None:
    from gearjob import cli_jobs

    p = _command(
        sub,
        "status",
        "Show how many jobs are queued, running and waiting per function and server",
        "Asks every server at once (admin 'status'). QUEUED: jobs not yet running.\n"
        "RUNNING: jobs a worker is running. WORKERS: connected workers that can run the\n"
        "function. WAITING: queued jobs of a function that has no worker on that server;\n"
        "they wait until a worker for it connects.\n"
        "With a queue configuration (--queue-config, else /etc/gearjob/queue.toml when it\n"
        "exists) also the rows per function in the local gearmand's persistent queue table\n"
        "(queued and running background jobs); --db insists on it, --no-db leaves it out.\n"
        "Exit 4 if a server or the queue database cannot be reached; the others are shown.",
        "  gearjob status\n"
        "  gearjob status --json --server 10.0.0.5 --server 10.0.0.6\n"
        "  gearjob status --db --queue-config /etc/gearjob/queue.toml",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="wait this long for each server (default: the config's connect_timeout, else 5)",
    )
    _queue_flags(p)
    cli_jobs.add_status_flags(p)


def _add_clear(sub: Any) -> None:
    p = _command(
        sub,
        "clear",
        "Delete the queued jobs of some functions, or all queued jobs",
        "gearmand keeps every queued job in memory and reads its persistent queue table\n"
        "only at start-up, so rows deleted while it runs are still executed. For a\n"
        "persistent queue (type sqlite, mysql or postgres in the queue configuration)\n"
        "clear prints the rows per function that will go, asks, stops gearmand\n"
        "(systemctl stop SERVICE, or stop_command), deletes the rows, starts it again\n"
        "(systemctl start SERVICE, or start_command) and waits until it answers.\n"
        "Clients waiting for foreground jobs lose them; jobs running at that moment are\n"
        "queued again after the restart unless their function is cleared.\n"
        "A memory queue cannot lose the jobs of one function: a restart drops every\n"
        "queued job of every function, done only with --all --restart-memory-queue.\n"
        "Asks for confirmation on a terminal; elsewhere --yes is required (exit 2).\n"
        "Exit 1 if not confirmed or gearmand could not be stopped or started, 4 if the\n"
        "database cannot be reached or gearmand does not answer after the start.\n\n"
        "queue configuration (/etc/gearjob/queue.toml, or --queue-config FILE):\n"
        '  type = "sqlite"                  # memory | sqlite | mysql | postgres\n'
        '  server = "127.0.0.1:4730"        # where the local gearmand answers\n'
        '  service = "gearman-job-server"   # or stop_command = [...] + start_command = [...]\n'
        "  stop_timeout = 60, start_timeout = 60\n"
        "  [sqlite] path, table (default gearman_queue)\n"
        "  [mysql] host, port, socket, user, password, db, table (default gearman_queue)\n"
        "  [postgres] host, port, user, password, db, conninfo, table (default queue)",
        "  gearjob clear --function islandora_derivatives\n"
        "  gearjob clear --all --yes\n"
        "  gearjob clear --all --restart-memory-queue\n"
        "  gearjob clear --offline --function my_job   # gearmand is already stopped",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--function",
        metavar="NAME",
        action="append",
        help="delete the queued jobs of this function (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="delete every queued job")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--restart-memory-queue",
        action="store_true",
        help="with --all and a memory queue: restart gearmand, dropping every queued job",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="only delete the rows; gearmand must already be stopped (refused if it "
        "answers) and is not started",
    )
    _queue_config_flag(p)


def _add_metrics(sub: Any) -> None:
    p = _command(
        sub,
        "metrics",
        "Serve Prometheus metrics of the job servers and the persistent queue",
        "Serves the Prometheus text format (0.0.4) at http://ADDR:PORT/metrics. Every\n"
        "scrape asks all servers at once, each for at most --scrape-timeout seconds, and\n"
        "counts the persistent queue rows when a queue configuration is in use. Metrics:\n"
        "gearjob_server_up, gearjob_server_scrape_duration_seconds, gearjob_jobs_queued,\n"
        "gearjob_jobs_running, gearjob_jobs_waiting, gearjob_workers,\n"
        "gearjob_persistent_queue_up, gearjob_persistent_queue_rows,\n"
        "gearjob_scrape_duration_seconds. SIGTERM or SIGINT: stop, exit 0.",
        f"  gearjob metrics   # http://{DEFAULT_LISTEN}/metrics\n"
        "  gearjob metrics --listen 0.0.0.0:9731 --server 10.0.0.5 --server 10.0.0.6",
    )
    p.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        type=_listen,
        default=_listen(DEFAULT_LISTEN),
        help=f"address and port to serve on (default: {DEFAULT_LISTEN}; port 0: any free one)",
    )
    p.add_argument(
        "--scrape-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=3.0,
        help="wait this long for each server and the queue database (default: 3)",
    )
    _queue_flags(p)


def _add_jobs(sub: Any) -> None:
    p = _command(
        sub,
        "jobs",
        "List the jobs a worker would register and where each came from",
        "Imports every entry like the worker does at start-up. Exit 3 if one is wrong.",
        "  gearjob jobs\n  gearjob jobs --json --job extra=my_pkg.jobs:extra",
    )
    _job_flag(p)
    _command_flags(p)
    p.add_argument(
        "--no-functions-from",
        action="store_true",
        help="do not run the list commands of command groups (check the configuration only)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_check(sub: Any) -> None:
    p = _command(
        sub,
        "check",
        "Check that every configured job server answers",
        "Asks each server for its version; prints one line per server.\n"
        "Exit 0 if all answer, 4 otherwise (for health checks and deploy scripts).",
        "  gearjob check\n  gearjob check --client   # the servers of client.toml",
    )
    p.add_argument(
        "--client",
        action="store_true",
        help="check the servers of the client configuration instead of the worker's",
    )


def _queue_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue-config",
        metavar="FILE",
        help="the local gearmand's queue configuration (default: /etc/gearjob/queue.toml)",
    )


def _queue_flags(parser: argparse.ArgumentParser) -> None:
    _queue_config_flag(parser)
    db = parser.add_mutually_exclusive_group()
    db.add_argument(
        "--db",
        action="store_true",
        help="show the persistent queue table (exit 3 without a queue configuration)",
    )
    db.add_argument("--no-db", action="store_true", help="leave the persistent queue out")


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected ADDR:PORT like 127.0.0.1:9731 or [::1]:9731, got {text!r}"
        )
    return host, int(port)


def _job_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--job",
        metavar="NAME=module:function",
        action="append",
        default=[],
        help="register a job (repeatable; overrides the config and entry points)",
    )


def _command_flags(parser: argparse.ArgumentParser) -> None:
    """Raw Python jobs and command jobs (see gearjob.catalog and docs/command-jobs.md)."""
    parser.add_argument(
        "--raw-job",
        metavar="NAME=module:function",
        action="append",
        default=[],
        help="register a raw job: it gets the workload bytes, returns bytes or str",
    )
    parser.add_argument(
        "--exec",
        metavar="'CMD ARGS'",
        help="run this command for the jobs of -f / --functions-from, like gearman -w -- "
        "CMD: workload on stdin, stdout is the result, non-zero exit fails the job",
    )
    parser.add_argument(
        "-f",
        "--function",
        metavar="NAME",
        action="append",
        default=[],
        help="a function --exec serves (repeatable)",
    )
    parser.add_argument(
        "--functions-from",
        metavar="'LIST-CMD'",
        action="append",
        default=[],
        help="a command printing the functions --exec serves, one per line (repeatable); "
        "run at start, on SIGHUP and every --refresh-interval seconds",
    )
    parser.add_argument(
        "--refresh-interval",
        dest="refresh",
        type=_seconds,
        metavar="SECONDS",
        help="re-run --functions-from this often (default: only at start and on SIGHUP)",
    )


# --------------------------------------------------------------------------- logging


class OneLineFormatter(logging.Formatter):
    """One line per event (tracebacks joined with " | "); under journald a <N> priority
    prefix, which journald turns into the entry's priority."""

    PRIORITY: ClassVar[dict[str, int]] = {
        "DEBUG": 7,
        "INFO": 6,
        "WARNING": 4,
        "ERROR": 3,
        "CRITICAL": 2,
    }

    def __init__(self, fmt: str, journal: bool = False) -> None:
        super().__init__(fmt)
        self.journal = journal

    # Control characters a job name or payload may carry (a carriage return would hide the
    # start of the line on a terminal) are shown escaped; tabs stay, newlines become " | ".
    CONTROLS: ClassVar[dict[int, str]] = {
        c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x09, 0x0A)
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip("\n").replace("\n", " | ").translate(self.CONTROLS)
        if self.journal:
            return f"<{self.PRIORITY.get(record.levelname, 6)}>{text}"
        return text


def _journal_stream() -> bool:
    """True when stderr is the journal stream systemd announced in $JOURNAL_STREAM."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def configure_logging(level: str = "info") -> None:
    """The one place logging is set up: stderr, one line per event. Under journald no
    timestamps, and a <N> syslog priority prefix journald turns into the entry's priority."""
    journal = _journal_stream()
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not journal:
        fmt = "%(asctime)s " + fmt
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "line": {
                    "()": "gearjob.cli.OneLineFormatter",
                    "fmt": fmt,
                    "journal": journal,
                }
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "formatter": "line",
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
        }
    )


# --------------------------------------------------------------------------- helpers


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _fail(code: int, message: str) -> NoReturn:
    raise _Exit(code, message)


def _settings(args: argparse.Namespace, kind: Literal["client", "worker"]) -> Settings:
    from gearjob.config import ServerAddress, load_settings

    settings = load_settings(args.config, kind=kind)
    if args.server:
        settings.servers = [ServerAddress.parse(text, settings.tls) for text in args.server]
    return settings


def _worker_settings(args: argparse.Namespace) -> Settings:
    settings = _settings(args, "worker")
    if getattr(args, "max_jobs", None) is not None:
        settings.max_jobs = args.max_jobs or None
    if getattr(args, "job_timeout", None) is not None:
        settings.job_timeout = args.job_timeout or None
    if getattr(args, "log_each_job", None):
        settings.log_each_job = True
    return settings


def _client(settings: Settings, timeout: Any) -> Client:
    from gearjob.client import Client

    return Client(
        settings.servers,
        timeout=timeout,
        connect_timeout=settings.connect_timeout,
        tls=settings.tls,
        client_id=settings.client_id,
        max_packet_size=settings.max_packet_size,
    )


def _parse_arg(text: str) -> Any:
    """JSON if it parses (NaN/Infinity excepted), else the text itself."""
    import json

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError:
        return text


def _print_value(value: Any) -> None:
    import json

    if isinstance(value, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(value + b"\n")
    elif isinstance(value, str):
        print(value)
    else:
        print(json.dumps(value, ensure_ascii=False))


def _timeout_arg(args: argparse.Namespace, settings: Settings) -> Any:
    """--timeout (0 = wait forever), else the config's timeout, else the client default."""
    if args.timeout is not None:
        return args.timeout or None
    if "timeout" in settings.keys_set:
        return settings.timeout
    return ...


def _is_timeout(exc: BaseException) -> bool:
    from gearjob.errors import JobFailed, JobTimeout

    if isinstance(exc, (JobTimeout, TimeoutError)):
        return True
    return (
        isinstance(exc, JobFailed)
        and exc.exc_type is not None
        and exc.exc_type.rsplit(".", 1)[-1] == "JobTimeout"
    )


# --------------------------------------------------------------------------- commands


def cmd_worker(args: argparse.Namespace) -> int:
    from gearjob import catalog
    from gearjob.worker import Worker

    current: list[catalog.Catalog] = []

    def load() -> tuple[Settings, catalog.Catalog]:
        settings = _worker_settings(args)
        built = catalog.from_args(settings, args, current[0] if current else None)
        current[:] = [built]
        return settings, built

    settings, jobs = load()
    return Worker(settings, jobs, reload=load).run()


def cmd_jobs(args: argparse.Namespace) -> int:
    import json

    from gearjob import catalog
    from gearjob import registry as reg
    from gearjob.errors import RegistryError

    settings = _worker_settings(args)
    entries = reg.merge(
        reg.collect(settings.jobs, settings.source, args.job).values(),
        catalog.raw_entries(settings.raw_jobs, settings.source, args.raw_job),
    )
    rows = []
    bad = 0
    for entry in entries.values():
        row = entry.as_dict()
        try:
            reg.resolve(entry)
            row["error"] = None
        except RegistryError as exc:
            row["error"] = str(exc)
            bad += 1
        rows.append(row)
    commands = catalog.command_rows(settings, args)
    bad += sum(1 for r in commands if r["error"])
    rows += commands
    if args.json:
        print(json.dumps({"jobs": rows, "errors": bad}, indent=2, ensure_ascii=False))
    elif not rows:
        print("no jobs registered (add a [jobs] table to the configuration or use --job)")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            target = r["target"] + (" (raw)" if r.get("raw") else "")
            line = f"{r['name']:<{width}}  {target}  (from {r['origin']}"
            if r["overrides"]:
                line += "; overrides " + ", ".join(r["overrides"])
            line += ")"
            print(line)
            if r["error"]:
                print(f"{'':<{width}}  ERROR: {r['error']}")
    if bad:
        print(f"gearjob: {bad} job registry error(s); a worker would not start", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from gearjob.errors import GearjobError
    from gearjob.protocol import check_gearmand

    settings = _settings(args, "client" if args.client else "worker")
    down = 0
    for address in settings.servers:
        try:
            version = check_gearmand(address, timeout=settings.connect_timeout)
            print(f"{address}: ok, gearmand {version}")
        except (GearjobError, OSError) as exc:
            down += 1
            text = str(exc)
            prefix = f"{address}: "
            print(f"{address}: UNAVAILABLE: {text.removeprefix(prefix)}")
    if down:
        print(f"gearjob: {down} of {len(settings.servers)} server(s) unavailable", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _queue_config(args: argparse.Namespace, *, required: bool = False) -> QueueConfig | None:
    """The queue configuration: --queue-config, else /etc/gearjob/queue.toml when it exists.
    Not required (status, metrics without --db): a default file that cannot be read is
    skipped with a warning."""
    from gearjob.errors import ConfigError
    from gearjob.queue import QUEUE_CONFIG, default_queue_config, load_queue_config

    if getattr(args, "no_db", False):
        return None
    required = required or getattr(args, "db", False)
    path = args.queue_config or default_queue_config()
    if path is None:
        if required:
            _fail(
                EXIT_CONFIG,
                f"no queue configuration: {QUEUE_CONFIG} does not exist; pass "
                "--queue-config FILE (see 'gearjob clear --help')",
            )
        return None
    if required or args.queue_config:
        return load_queue_config(path)
    try:
        return load_queue_config(path)
    except ConfigError as exc:
        print(
            f"gearjob: not showing the persistent queue: {exc} (--no-db: do not try)",
            file=sys.stderr,
        )
        return None


def _print_table(rows: Sequence[Sequence[str]], left: int) -> None:
    """Aligned columns: the first ``left`` ones to the left, the others to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    import json

    if args.handle:
        from gearjob import cli_jobs

        return cli_jobs.cmd_status_handles(args)
    from gearjob.metrics import collect

    settings = _settings(args, "client")
    queue = _queue_config(args)
    timeout = args.timeout or settings.connect_timeout
    snapshot = collect(settings.servers, queue, timeout=timeout)
    report: list[dict[str, Any]] = []
    totals = {"queued": 0, "running": 0, "waiting": 0}
    for state in snapshot.servers:
        if not state.ok:
            report.append({"server": state.server, "ok": False, "error": state.error})
            continue
        report.append(
            {
                "server": state.server,
                "ok": True,
                "functions": [f.as_dict() for f in state.functions],
            }
        )
        for f in state.functions:
            totals["queued"] += f.queued
            totals["running"] += f.running
            totals["waiting"] += f.waiting
    persistent: dict[str, Any] | None = None
    if queue is not None:
        persistent = {"type": queue.type, "server": str(queue.server)}
        q = snapshot.queue
        if q is None:  # memory: no table
            persistent.update(ok=True, location=None, functions=None, rows=None)
        else:
            persistent.update(ok=q.ok, location=q.location)
            if q.ok:
                persistent["functions"] = [
                    {"function": k, "rows": v, "scheduled": q.scheduled.get(k, 0)}
                    for k, v in q.rows.items()
                ]
                persistent["rows"] = sum(q.rows.values())
            else:
                persistent["error"] = q.error
    down = sum(not s["ok"] for s in report)
    if args.json:
        document = {"servers": report, "totals": totals, "persistent_queue": persistent}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        rows = [("SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS", "WAITING")]
        for server in report:
            if not server["ok"]:
                rows.append((server["server"], "UNAVAILABLE", "", "", "", ""))
                reason = server["error"].removeprefix(f"{server['server']}: ")
                print(f"gearjob: {server['server']} unavailable: {reason}", file=sys.stderr)
            elif not server["functions"]:
                rows.append((server["server"], "(no functions)", "", "", "", ""))
            for f in server.get("functions", []):
                numbers = (f["queued"], f["running"], f["workers"], f["waiting"])
                rows.append((server["server"], f["function"], *map(str, numbers)))
        _print_table(rows, 2)
        print(
            f"total: {totals['queued']} queued ({totals['waiting']} waiting for a worker), "
            f"{totals['running']} running on {len(report) - down} of {len(report)} server(s)"
        )
        if persistent is not None:
            _print_persistent(persistent)
    if persistent is not None and not persistent["ok"]:
        return EXIT_UNAVAILABLE
    return EXIT_UNAVAILABLE if down else EXIT_OK


def _print_persistent(persistent: dict[str, Any]) -> None:
    where = f"\npersistent queue of {persistent['server']}"
    if persistent["location"] is None:
        print(f"{where}: memory (no table: its queued jobs are those listed above)")
    elif not persistent["ok"]:
        print(f"{where}: UNAVAILABLE: {persistent['error']}")
    else:
        print(f"{where} ({persistent['location']}): {persistent['rows']} row(s)")
        if persistent["functions"]:
            rows = [("FUNCTION", "ROWS", "SCHEDULED")]
            rows += [
                (f["function"], str(f["rows"]), str(f["scheduled"]))
                for f in persistent["functions"]
            ]
            _print_table(rows, 1)
            scheduled = any(f["scheduled"] for f in persistent["functions"])
            if persistent["type"] == "postgres" and scheduled:
                print(
                    "note: gearmand 1.1 reloads a PostgreSQL queue without the times of "
                    "scheduled jobs: after a restart they run at once"
                )


def _confirm(yes: bool) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            _fail(
                EXIT_USAGE,
                "standard input is not a terminal, so nobody can confirm; pass --yes to "
                "go ahead without asking (nothing was changed)",
            )
        try:
            answer = input(f"{question} [y/N] ")
        except EOFError:
            answer = ""
        return answer.strip().lower() in ("y", "yes")

    return ask


def cmd_clear(args: argparse.Namespace) -> int:
    from gearjob import queue as q
    from gearjob.protocol import server_status

    config = _queue_config(args, required=True)
    assert config is not None

    def echo(text: str) -> None:
        print(text, flush=True)

    functions = None if args.all else list(dict.fromkeys(args.function))
    if config.persistent:
        if args.restart_memory_queue:
            _fail(
                EXIT_USAGE,
                f"--restart-memory-queue is for a memory queue, and {config.source} says "
                f"type = {config.type!r}; leave it out",
            )
        q.clear_persistent(
            config, functions, echo=echo, confirm=_confirm(args.yes), offline=args.offline
        )
        return EXIT_OK
    memory = (
        f'the queue of gearmand at {config.server} is in memory ({config.source}: type = "memory")'
    )
    if args.offline:
        _fail(EXIT_USAGE, f"--offline deletes rows of a persistent queue, but {memory}")
    if functions is not None:
        _fail(
            EXIT_USAGE,
            f"{memory}: gearmand cannot delete the queued jobs of one function, and "
            "a restart drops every queued job of every function. Run workers for the "
            "function to drain it, or drop everything with --all --restart-memory-queue",
        )
    if not args.restart_memory_queue:
        _fail(
            EXIT_USAGE,
            f"{memory}: the only way to clear it is a restart, which drops every queued "
            "job of every function; pass --all --restart-memory-queue to do that",
        )
    statuses = server_status(config.server, timeout=5.0)
    q.restart_memory(
        config, {s.function: s.queued for s in statuses}, echo=echo, confirm=_confirm(args.yes)
    )
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    from gearjob.metrics import collect, make_server, render, serve

    settings = _settings(args, "client")
    queue = _queue_config(args)
    host, port = args.listen

    def scrape() -> str:
        return render(collect(settings.servers, queue, timeout=args.scrape_timeout))

    try:
        server = make_server(host, port, scrape)
    except OSError as exc:
        _fail(EXIT_FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logging.getLogger("gearjob.metrics").info(
        "serving metrics on http://%s:%d/metrics for %s",
        shown,
        bound_port,
        ", ".join(map(str, settings.servers)),
    )
    serve(server)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from gearjob import cli_jobs

    return cli_jobs.cmd_submit(args)


def cmd_cancel(args: argparse.Namespace) -> int:
    from gearjob import cli_jobs

    return cli_jobs.cmd_cancel(args)


def _read_batch(path: str) -> list[dict[str, Any]]:
    import json

    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except OSError as exc:
        _fail(EXIT_USAGE, f"cannot read batch file {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _fail(EXIT_USAGE, f"batch file {path} is not UTF-8 text: {exc}")
    jobs = []
    hint = 'expected {"job_name": "name", "args": [...]}'
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path if path != '-' else 'stdin'} line {number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            _fail(EXIT_USAGE, f"{where}: not valid JSON ({exc}); {hint}")
        if not isinstance(item, dict):
            _fail(EXIT_USAGE, f"{where}: a JSON {type(item).__name__}, {hint}")
        name = item.get("job_name")
        if not isinstance(name, str) or not name:
            _fail(EXIT_USAGE, f'{where}: missing or empty "job_name"; {hint}')
        problem = _job_name_problem(name)
        if problem:
            _fail(EXIT_USAGE, f"{where}: {problem}")
        job_args = item.get("args", [])
        if not isinstance(job_args, list):
            _fail(EXIT_USAGE, f'{where}: "args" must be a list, not {job_args!r}; {hint}')
        unknown = sorted(set(item) - {"job_name", "args"})
        if unknown:
            _fail(EXIT_USAGE, f"{where}: unknown key(s) {', '.join(unknown)}; {hint}")
        jobs.append({"job_name": name, "args": job_args, "line": number})
    return jobs


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.enabled = sys.stderr.isatty() and total > 0

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        if self.enabled:
            width = 30
            filled = width * done // self.total
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {done}/{self.total} done, {failed} failed")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_batch(args: argparse.Namespace) -> int:
    import json

    settings = _settings(args, "client")
    jobs = _read_batch(args.file)
    timeout = _timeout_arg(args, settings)
    progress = _Progress(len(jobs))
    failed = 0

    def on_result(index: int, result: JobResult) -> None:
        nonlocal failed
        failed += not result.ok
        progress.update(progress.done + 1, failed)

    with _client(settings, timeout) as client:
        results = client.run_batch(
            [{"job_name": j["job_name"], "args": j["args"]} for j in jobs],
            timeout=timeout,
            priority=args.priority,
            on_result=on_result if progress.enabled else None,
        )
    progress.finish()
    failed = 0
    for job, result in zip(jobs, results, strict=True):
        line: dict[str, Any] = {"line": job["line"], "job_name": job["job_name"], "ok": result.ok}
        if result.handle:
            line["handle"] = result.handle
        if result.ok:
            value = result.value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            line["result"] = value
        else:
            failed += 1
            line["error"] = str(result.error)
        print(json.dumps(line, ensure_ascii=False))
    print(f"gearjob: {len(jobs)} job(s), {len(jobs) - failed} ok, {failed} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": cmd_worker,
    "submit": cmd_submit,
    "batch": cmd_batch,
    "status": cmd_status,
    "clear": cmd_clear,
    "metrics": cmd_metrics,
    "jobs": cmd_jobs,
    "check": cmd_check,
    "cancel": cmd_cancel,
}


def _exit_code(exc: BaseException) -> int:
    from gearjob.errors import (
        ConfigError,
        JobFailed,
        PayloadError,
        ServerUnavailable,
    )
    from gearjob.queue import QueueDatabaseError

    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, (ServerUnavailable, QueueDatabaseError)):
        return EXIT_UNAVAILABLE
    if _is_timeout(exc):
        return EXIT_TIMEOUT
    if isinstance(exc, PayloadError):
        return EXIT_USAGE
    if isinstance(exc, JobFailed):
        return EXIT_FAILED
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging(args.log_level)
    try:
        return COMMANDS[args.command](args)
    except _Exit as exc:
        print(f"gearjob: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("gearjob: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from gearjob.errors import GearjobError

        code = _exit_code(exc)
        if isinstance(exc, GearjobError) or code != EXIT_FAILED:
            print(f"gearjob: {exc}", file=sys.stderr)
        else:
            logging.getLogger("gearjob").exception("unexpected error: %s", exc)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
