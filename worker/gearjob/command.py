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
import math
import os
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
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
        self._launch: _Launch | None = None  # built for the first job, kept for the next

    def describe(self) -> str:
        return f"command {self.spec.line!r}" + (" (shell)" if self.spec.shell else "")

    def run(self, job: Job, timed: Timed) -> bytes:
        limit = job.limit
        deadline = time.monotonic() + limit if limit else None
        child = self._start(job)
        output = _Output(self.spec.max_output)
        try:
            outcome = _communicate(child, job.workload, output, deadline)
            if outcome is None:
                outcome = "exit" if child.wait_until(deadline) else "timeout"
        except BaseException:  # a second SIGTERM, SIGINT: nothing may outlive the worker
            child.kill_group(0.0)
            raise
        finally:
            child.close()
        if outcome != "exit":
            child.kill_group(self.spec.kill_grace)
        code = child.returncode
        output.log_stderr(job, failed=outcome != "exit" or code != 0)
        if outcome != "exit" or code != 0:
            raise self._failure(job, outcome, code)
        return output.stdout()

    def _start(self, job: Job) -> _Child:
        """Start the job's command; CommandFailed when it cannot run."""
        launch = self._launch
        if launch is not None:
            try:
                return launch.start(job)
            except (OSError, ValueError, subprocess.SubprocessError):  # moved? look it up again
                self._launch = None
        try:
            launch = _Launch(self.spec, self._env)
            child = launch.start(job)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            why = self.spec.problem() or (getattr(exc, "strerror", None) or str(exc))
            raise CommandFailed(f"cannot run the command {self.spec.line!r}: {why}") from None
        self._launch = launch
        return child

    def _failure(self, job: Job, outcome: str, code: int | None) -> GearjobError:
        """The error that fails the job: a timeout, too much output, or the exit status."""
        if outcome == "timeout":
            return JobTimeout(
                f"job {job.name} timed out after {job.limit:g} s: its command "
                f"{self.spec.line!r} and its process group were killed",
                job_name=job.name,
                handle=job.handle,
                timeout=job.limit,
            )
        if outcome == "too much":
            return CommandFailed(
                f"job {job.name}: its command {self.spec.line!r} wrote more than "
                f"max_output = {self.spec.max_output} bytes to stdout and was killed; raise "
                "max_output for this command group, or have the command write large "
                "results to a file and print its path"
            )
        assert code is not None
        return CommandFailed(f"job {job.name}: command {self.spec.line!r} {_status(code)}")


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

    def add_err(self, data: bytes) -> bool:
        room = STDERR_LIMIT - len(self.err)
        self.err += data[:room]
        self.err_dropped += max(0, len(data) - room)
        return True

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


# Speed: the per-job path, in one place. A command job costs mostly the start of the
# command itself; what the worker adds per job is kept to the system calls it needs:
# - _Launch computes the argv, the program's path and the base environment once per command
#   group, as bytes (os.posix_spawn takes them as they are); only GEARJOB_FUNCTION,
#   GEARJOB_HANDLE and GEARJOB_UNIQUE are set per job. A program that moved is looked up
#   again (CommandRunner._start).
# - os.posix_spawn (a vfork-style start, setsid and the dup2s done by the C library) when no
#   cwd is set; subprocess.Popen, about twice as costly, only for groups with a cwd.
# - raw pipe fds (os.read / os.write), no file objects: no fstat per pipe. stdout and stderr
#   stay blocking, and are read only when poll says so (a read then never blocks); once the
#   command closed a pipe (POLLHUP) it is read to its end without another poll.
# - a workload of at most PIPE_BUF bytes fits in the empty stdin pipe: it is written at once
#   with a write that cannot block, and stdin is closed, with no poll on stdin. Larger
#   workloads are fed from a non-blocking stdin as poll allows, while the output is read.
# - the exit is reaped with one waitpid when it already happened, else a blocking waitpid
#   (no time limit) or a wait on a pidfd until the deadline (no sleep-and-retry loop).
_AT_ONCE = select.PIPE_BUF


class _Launch:
    """How a command group starts its command: argv, program and base environment (bytes),
    computed once by the first job."""

    def __init__(self, spec: CommandSpec, env: Mapping[str, str]) -> None:
        argv = spec.argv
        if not argv:
            raise ValueError("empty command")
        self.argv = [os.fsencode(arg) for arg in argv]
        self.env = {os.fsencode(key): os.fsencode(value) for key, value in env.items()}
        self.cwd = spec.cwd
        self.program: bytes | None = None  # None: started by subprocess.Popen (cwd)
        if spec.cwd is None:
            found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "not found", argv[0])
            self.program = os.fsencode(found)

    def start(self, job: Job) -> _Child:
        env = self.env.copy()
        env[b"GEARJOB_FUNCTION"] = job.name.encode("utf-8", "surrogateescape")
        env[b"GEARJOB_HANDLE"] = job.handle.encode("utf-8", "surrogateescape")
        env[b"GEARJOB_UNIQUE"] = job.unique.decode("utf-8", "replace").encode("utf-8")
        fds: list[int] = []
        try:
            for _ in range(3):  # stdin, stdout, stderr: read end, write end
                fds += os.pipe2(os.O_CLOEXEC)
            ends = (fds[0], fds[3], fds[5])  # the child's: stdin's read end, the write ends
            popen = None
            if self.program is not None:
                pid = os.posix_spawn(
                    self.program,
                    self.argv,
                    env,
                    file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(ends)],
                    setsid=True,
                    setsigdef=_DEFAULT_SIGNALS,
                )
            else:
                popen = subprocess.Popen(
                    self.argv,
                    stdin=ends[0],
                    stdout=ends[1],
                    stderr=ends[2],
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
                pid = popen.pid
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in ends:
            os.close(fd)
        return _Child(pid, fds[1], fds[2], fds[4], popen)


#: signals Python ignores that a command gets back at their default, as subprocess does
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


class _Child:
    """A started command: its pid, the parent's ends of its pipes (raw fds, -1 once closed)
    and, once reaped, its exit code (negative: the signal that killed it)."""

    def __init__(
        self,
        pid: int,
        stdin: int,
        stdout: int,
        stderr: int,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.popen = popen
        self.returncode: int | None = None

    def close_stdin(self) -> None:
        fd, self.stdin = self.stdin, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self.close_stdin()
        for fd in (self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdout = self.stderr = -1

    def wait_until(self, deadline: float | None) -> bool:
        """Reap the child, waiting until ``deadline`` (time.monotonic; None: as long as it
        takes). False when it still runs at the deadline."""
        if self.returncode is not None:
            return True
        if deadline is None:
            _, status = os.waitpid(self.pid, 0)
        else:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if not pid:
                if not _exits_by(self.pid, deadline):
                    return False
                _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        if self.popen is not None:
            self.popen.returncode = self.returncode  # reaped here: Popen must not wait again
        return True

    def kill_group(self, grace: float) -> None:
        """SIGTERM to the command's process group, SIGKILL after ``grace`` seconds (to the
        group again: grandchildren that outlived the child go too), and reap the child."""
        pgid = self.pid  # setsid: the child leads its own group
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            if grace > 0:
                self.wait_until(time.monotonic() + grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            self.wait_until(None)


def _exits_by(pid: int, deadline: float) -> bool:
    """Whether the child ``pid`` exits (without reaping it) before the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfds (Linux < 5.3)
        return _exit_by_polling(pid, deadline)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(math.ceil(left * 1000)):
                return True
    finally:
        os.close(fd)


def _exit_by_polling(pid: int, deadline: float) -> bool:
    """Without pidfds: look for the exit (without reaping it) at growing intervals."""
    delay = 0.0005
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # not ours to wait for: the waitpid that follows says so
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def _communicate(
    child: _Child, workload: bytes, output: _Output, deadline: float | None
) -> str | None:
    """Feed stdin and read stdout/stderr until both close; "timeout" or "too much" when
    the command must be killed, None when its output ended."""
    poller = select.poll()
    reading: dict[int, Callable[[bytes], bool]] = {
        child.stdout: output.add_out,
        child.stderr: output.add_err,
    }
    for fd in reading:
        poller.register(fd, _POLL_IN)
    pending = memoryview(workload)
    if len(workload) <= _AT_ONCE:
        _write_at_once(child, workload)
    else:
        os.set_blocking(child.stdin, False)
        poller.register(child.stdin, _POLL_OUT)
        pending = _feed(child, poller, pending)
    while reading:
        if deadline is None:
            events = poller.poll()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            events = poller.poll(math.ceil(left * 1000))
        for fd, revents in events:
            if fd == child.stdin:
                pending = _feed(child, poller, pending)
            elif fd in reading and not _drain(poller, reading, fd, revents):
                return "too much"
    return None


def _write_at_once(child: _Child, workload: bytes) -> None:
    """Write a workload of at most PIPE_BUF bytes to the empty stdin pipe (a blocking write
    that cannot block: the pipe holds at least PIPE_BUF) and close stdin."""
    try:
        if workload:
            os.write(child.stdin, workload)
    except OSError as exc:  # EPIPE: the command exited without reading (like gearman -w)
        if exc.errno not in (errno.EPIPE, errno.EINVAL):
            raise
    child.close_stdin()


def _feed(child: _Child, poller: select.poll, pending: memoryview) -> memoryview:
    """Write what the non-blocking stdin takes; close it when all is written."""
    try:
        pending = pending[os.write(child.stdin, pending[:_CHUNK]) :]
    except BlockingIOError:
        return pending
    except OSError as exc:  # EPIPE: the command does not read all of it (like gearman -w)
        if exc.errno not in (errno.EPIPE, errno.EINVAL):
            raise
        pending = pending[:0]
    if not pending:
        poller.unregister(child.stdin)
        child.close_stdin()
    return pending


def _drain(
    poller: select.poll, reading: dict[int, Callable[[bytes], bool]], fd: int, revents: int
) -> bool:
    """Read what poll announced on stdout or stderr (to the end once the writers are gone);
    False when stdout went over max_output."""
    add = reading[fd]
    while True:
        data = os.read(fd, _CHUNK)
        if not data:
            poller.unregister(fd)
            del reading[fd]
            return True
        if not add(data):
            return False
        if not revents & select.POLLHUP:  # the command may write more: poll first
            return True


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
