"""Command jobs: run an executable per job, with the semantics of ``gearman -w -- CMD``.

* the workload goes to the command's stdin byte for byte (no JSON is required);
* its stdout is the result (WORK_COMPLETE), byte for byte;
* a non-zero exit, or death by a signal, fails the job (WORK_FAIL);
* its stderr goes to the log, at most ``STDERR_LIMIT`` bytes, tagged with function and handle.

The command line is split like a shell would (:func:`shlex.split`) but not run through a
shell unless ``shell`` is set; the payload only ever goes to stdin. Each job's environment
has ``GEARJOB_FUNCTION``, ``GEARJOB_HANDLE`` and ``GEARJOB_UNIQUE``.

Each command starts in its own session (process group). At the deadline the whole group
(grandchildren too) gets SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds, and the child is
reaped. Output is read with :func:`select.poll` from non-blocking pipes, never more than
``max_output`` bytes: a command that writes more is killed and its job fails.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gearjob.errors import GearjobError, JobTimeout
from gearjob.runners import Job, Timed

log = logging.getLogger("gearjob.worker")

#: bytes of a command's stderr kept for the log, per job
STDERR_LIMIT = 8192
#: default cap on a command's stdout (the job's result)
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
#: seconds between SIGTERM and SIGKILL to a command's process group
KILL_GRACE = 5.0
_CHUNK = 65536
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_POLL_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR


class CommandFailed(GearjobError):
    """A command job failed: it could not start, exited non-zero, was killed, timed out
    or wrote too much."""


@dataclass(frozen=True)
class CommandSpec:
    """How to run a command: ``line`` as configured, ``argv`` as it is run."""

    line: str
    shell: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None
    max_output: int = DEFAULT_MAX_OUTPUT
    kill_grace: float = KILL_GRACE

    @property
    def argv(self) -> list[str]:
        if self.shell:
            return ["/bin/sh", "-c", self.line]
        return shlex.split(self.line)

    def problem(self) -> str | None:
        """Why the command cannot run as configured (not found, not executable), or None."""
        try:
            argv = self.argv
        except ValueError as exc:
            return f"command {self.line!r} cannot be split into arguments: {exc}"
        if not argv:
            return "the command is empty"
        program = argv[0]
        path = os.environ.get("PATH") if "PATH" not in self.env else self.env["PATH"]
        if os.sep in program and self.cwd and not os.path.isabs(program):
            program = os.path.join(self.cwd, program)
        found = shutil.which(program, path=path)
        if found is None:
            if os.path.exists(program):
                return f"{program} is not executable (chmod +x it, or fix the command)"
            return f"{argv[0]} is not found (give its full path, or fix PATH)"
        if self.cwd is not None and not os.path.isdir(self.cwd):
            return f"the working directory {self.cwd} does not exist"
        return None


class CommandRunner:
    """Runs a job's command; ``origin`` says where the function came from."""

    kind = "command"

    def __init__(self, spec: CommandSpec, origin: str) -> None:
        self.spec = spec
        self.origin = origin
        self.timeout = spec.timeout
        self._env = {**os.environ, **spec.env}

    def describe(self) -> str:
        return f"command {self.spec.line!r}" + (" (shell)" if self.spec.shell else "")

    def run(self, job: Job, timed: Timed) -> bytes:
        env = dict(self._env)
        env["GEARJOB_FUNCTION"] = job.name
        env["GEARJOB_HANDLE"] = job.handle
        env["GEARJOB_UNIQUE"] = job.unique.decode("utf-8", "replace")
        limit = job.limit
        deadline = time.monotonic() + limit if limit else None
        proc = _start(self.spec, env)
        result = _Output(self.spec.max_output)
        try:
            outcome = _communicate(proc, job.workload, result, deadline)
            if outcome is None:
                outcome = _wait(proc, deadline)
        except BaseException:  # a second SIGTERM, SIGINT: nothing may outlive the worker
            _kill_group(proc, 0.0)
            raise
        finally:
            _close(proc)
        if outcome != "exit":
            _kill_group(proc, self.spec.kill_grace)
        result.log_stderr(job, failed=outcome != "exit" or proc.returncode != 0)
        if outcome == "timeout":
            raise JobTimeout(
                f"job {job.name} timed out after {limit:g} s: its command "
                f"{self.spec.line!r} and its process group were killed",
                job_name=job.name,
                handle=job.handle,
                timeout=limit,
            )
        if outcome == "too much":
            raise CommandFailed(
                f"job {job.name}: its command {self.spec.line!r} wrote more than "
                f"max_output = {self.spec.max_output} bytes to stdout and was killed; raise "
                "max_output for this command group, or have the command write large "
                "results to a file and print its path"
            )
        code = proc.returncode
        assert code is not None
        if code != 0:
            raise CommandFailed(f"job {job.name}: command {self.spec.line!r} {_status(code)}")
        return result.stdout()


class _Output:
    """stdout (capped: over the cap, the job fails) and stderr (capped: the rest dropped)."""

    def __init__(self, max_output: int) -> None:
        self.max_output = max_output
        self.out: list[bytes] = []
        self.out_size = 0
        self.err = bytearray()
        self.err_dropped = 0

    def add_out(self, data: bytes) -> bool:
        """False when the output went over the cap."""
        self.out_size += len(data)
        if self.out_size > self.max_output:
            self.out.clear()
            return False
        self.out.append(data)
        return True

    def add_err(self, data: bytes) -> None:
        room = STDERR_LIMIT - len(self.err)
        self.err += data[:room]
        self.err_dropped += max(0, len(data) - room)

    def stdout(self) -> bytes:
        return b"".join(self.out)

    def log_stderr(self, job: Job, *, failed: bool) -> None:
        if not self.err:
            return
        text = self.err.decode("utf-8", "replace").rstrip("\n")
        if self.err_dropped:
            text += f" [... {self.err_dropped} more byte(s) dropped]"
        level = logging.WARNING if failed else logging.INFO
        log.log(level, "job %s %s stderr: %s", job.name, job.handle, text)


class _Child:
    """A command started with :func:`os.posix_spawn` (no cwd to change): the part of
    :class:`subprocess.Popen` the runner uses, at a fraction of its cost per job."""

    def __init__(self, program: str, argv: list[str], env: dict[str, str]) -> None:
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]  # stdin, stdout, stderr
        child_ends = (pipes[0][0], pipes[1][1], pipes[2][1])
        try:
            self.pid = os.posix_spawn(
                program,
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(child_ends)],
                setsid=True,
            )
        except BaseException:
            for r, w in pipes:
                os.close(r)
                os.close(w)
            raise
        for fd in child_ends:
            os.close(fd)
        self.stdin = os.fdopen(pipes[0][1], "wb", buffering=0)
        self.stdout = os.fdopen(pipes[1][0], "rb", buffering=0)
        self.stderr = os.fdopen(pipes[2][0], "rb", buffering=0)
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            _, status = os.waitpid(self.pid, 0)
        else:
            deadline = time.monotonic() + timeout
            delay = 0.0005
            while True:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout)
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


_Process = _Child | subprocess.Popen[bytes]
_found: dict[tuple[str, str], str] = {}


def _program(name: str, path: str) -> str:
    """The file to run for ``name`` in ``path`` (cached while it exists)."""
    program = _found.get((name, path))
    if program is None or not os.access(program, os.X_OK):
        program = shutil.which(name, path=path)
        if program is None:
            raise FileNotFoundError(errno.ENOENT, "not found", name)
        if len(_found) < 1000:
            _found[(name, path)] = program
    return program


def _start(spec: CommandSpec, env: dict[str, str]) -> _Process:
    try:
        argv = spec.argv
        if not argv:
            raise ValueError("empty command")
        if spec.cwd is None:
            return _Child(_program(argv[0], env.get("PATH", os.defpath)), argv, env)
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        why = spec.problem() or (getattr(exc, "strerror", None) or str(exc))
        raise CommandFailed(f"cannot run the command {spec.line!r}: {why}") from None


def _communicate(
    proc: _Process, workload: bytes, output: _Output, deadline: float | None
) -> str | None:
    """Feed stdin and read stdout/stderr until both close; "timeout" or "too much" when
    the command must be killed, None when its output ended."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    poller = select.poll()
    fds: dict[int, str] = {}
    for stream, kind, mask in (
        (proc.stdout, "out", _POLL_IN),
        (proc.stderr, "err", _POLL_IN),
        (proc.stdin, "in", _POLL_OUT),
    ):
        fileno = stream.fileno()
        os.set_blocking(fileno, False)
        fds[fileno] = kind
        poller.register(fileno, mask)
    view = memoryview(workload)
    if workload:  # most workloads fit in the pipe: written now, without a poll first
        view = _write(proc, poller, fds, proc.stdin.fileno(), view)
    else:
        _stop_writing(proc, poller, fds)
    while "out" in fds.values() or "err" in fds.values():
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if wait == 0.0:
            return "timeout"
        events = poller.poll(None if wait is None else max(1, int(wait * 1000)))
        for fd, _ in events:
            name = fds.get(fd)
            if name == "in":
                view = _write(proc, poller, fds, fd, view)
            elif name is not None and not _read(poller, fds, fd, name, output):
                return "too much"
    return None


def _write(
    proc: _Process,
    poller: select.poll,
    fds: dict[int, str],
    fd: int,
    view: memoryview,
) -> memoryview:
    try:
        view = view[os.write(fd, view[:_CHUNK]) :]
    except BlockingIOError:
        return view
    except OSError as exc:  # EPIPE: the command does not read all of it (like gearman -w)
        if exc.errno not in (errno.EPIPE, errno.EINVAL):
            raise
        view = view[:0]
    if not view:
        _stop_writing(proc, poller, fds)
    return view


def _stop_writing(proc: _Process, poller: select.poll, fds: dict[int, str]) -> None:
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    poller.unregister(fd)
    fds.pop(fd, None)
    with contextlib.suppress(OSError):
        proc.stdin.close()


def _read(poller: select.poll, fds: dict[int, str], fd: int, name: str, output: _Output) -> bool:
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return True
    if not data:
        poller.unregister(fd)
        fds.pop(fd)
        return True
    if name == "out":
        return output.add_out(data)
    output.add_err(data)
    return True


def _wait(proc: _Process, deadline: float | None) -> str:
    """Wait for the child once its output ended (it may have closed stdout early)."""
    try:
        proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return "timeout"
    return "exit"


def _kill_group(proc: _Process, grace: float) -> None:
    """SIGTERM to the command's process group, SIGKILL after ``grace`` seconds (to the
    group again: grandchildren that outlived the child go too), and reap the child."""
    pgid = proc.pid  # start_new_session: the child leads its own group
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        if grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        proc.wait()


def _close(proc: _Process) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _status(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by {name}"
    return f"exited with status {code}"


def run_list_command(
    line: str, *, shell: bool, env: Mapping[str, str], cwd: str | None, timeout: float
) -> list[str]:
    """Run a list command: one function name per line (blank lines ignored). CommandFailed
    when it cannot run, fails, times out or its output is not text."""
    spec = CommandSpec(line, shell=shell, env=env, cwd=cwd, max_output=1024 * 1024)
    job = Job("(list)", "functions_from", b"", b"", timeout)
    runner = CommandRunner(spec, "functions_from")
    try:
        data = runner.run(job, _untimed)
    except JobTimeout:
        raise CommandFailed(f"list command {line!r} did not end within {timeout:g} s") from None
    except CommandFailed as exc:
        raise CommandFailed(str(exc).replace("job (list): ", "list ")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandFailed(
            f"list command {line!r} printed bytes that are not UTF-8 ({exc})"
        ) from None
    return [name.strip() for name in text.splitlines() if name.strip()]


def _untimed(call: object, limit: float, job: Job) -> None:  # pragma: no cover
    raise AssertionError("commands keep their own deadline")
