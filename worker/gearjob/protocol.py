"""The Gearman binary protocol and admin text protocol over TCP (optionally TLS).

Lengths are counted in bytes (never characters); every argument is ``bytes``. A
:class:`Connection` keeps one receive buffer, parses packets in place and never accepts a
packet larger than ``max_packet_size``. Sockets are non-blocking once connected: waiting is
done with ``poll`` so that every read honours a timeout, and a :class:`Connection` can be
registered with :mod:`selectors` (see :meth:`Connection.read_available`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, cast

from .config import DEFAULT_MAX_PACKET, ServerAddress
from .errors import ProtocolError, ServerUnavailable

if TYPE_CHECKING:
    import ssl

__all__ = [
    "ARG_COUNT",
    "DEFAULT_MAX_PACKET",
    "MAGIC_REQ",
    "MAGIC_RES",
    "Cmd",
    "Connection",
    "FunctionStatus",
    "OversizePacket",
    "Packet",
    "admin_command",
    "pack",
    "server_status",
]

MAGIC_REQ = b"\0REQ"
MAGIC_RES = b"\0RES"
HEADER_SIZE = 12
RECV_SIZE = 65536
BIG_RECV_SIZE = 4 * 1024 * 1024
SMALL_LEFTOVER = 256 * 1024  # a partial packet this small is joined as bytes
#: an oversize packet that is skipped: how much of its body is looked at (leading arguments
#: such as a job handle, and the start of the last argument)
PEEK_SIZE = 4096
SINK_SIZE = 256 * 1024  # discard buffer while skipping an oversize packet's body
SKIP_READS = 64  # at most this many discarding reads per call (the caller's loop goes on)
HINT_WAIT_MS = 50  # longest sleep on an expect() hint before waking for any byte
#: admin commands whose answer is several lines ended by a line with a single "."
MULTILINE_ADMIN = frozenset(("status", "workers", "show", "prioritystatus"))
#: bounds of an admin text answer (a peer streaming lines must not fill the memory)
MAX_ADMIN_LINE = 64 * 1024
MAX_ADMIN_ANSWER = 16 * 1024 * 1024
_VERSION = re.compile(r"\d+(\.\d+)+[\w.+~-]*")


class Cmd(IntEnum):
    """Packet types of the Gearman binary protocol."""

    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


#: Number of NUL-separated arguments per command; the last one may contain NUL bytes.
ARG_COUNT: dict[Cmd, int] = {
    Cmd.CAN_DO: 1,
    Cmd.CANT_DO: 1,
    Cmd.RESET_ABILITIES: 0,
    Cmd.PRE_SLEEP: 0,
    Cmd.NOOP: 0,
    Cmd.SUBMIT_JOB: 3,
    Cmd.JOB_CREATED: 1,
    Cmd.GRAB_JOB: 0,
    Cmd.NO_JOB: 0,
    Cmd.JOB_ASSIGN: 3,
    Cmd.WORK_STATUS: 3,
    Cmd.WORK_COMPLETE: 2,
    Cmd.WORK_FAIL: 1,
    Cmd.GET_STATUS: 1,
    Cmd.ECHO_REQ: 1,
    Cmd.ECHO_RES: 1,
    Cmd.SUBMIT_JOB_BG: 3,
    Cmd.ERROR: 2,
    Cmd.STATUS_RES: 5,
    Cmd.SUBMIT_JOB_HIGH: 3,
    Cmd.SET_CLIENT_ID: 1,
    Cmd.CAN_DO_TIMEOUT: 2,
    Cmd.ALL_YOURS: 0,
    Cmd.WORK_EXCEPTION: 2,
    Cmd.OPTION_REQ: 1,
    Cmd.OPTION_RES: 1,
    Cmd.WORK_DATA: 2,
    Cmd.WORK_WARNING: 2,
    Cmd.GRAB_JOB_UNIQ: 0,
    Cmd.JOB_ASSIGN_UNIQ: 4,
    Cmd.SUBMIT_JOB_HIGH_BG: 3,
    Cmd.SUBMIT_JOB_LOW: 3,
    Cmd.SUBMIT_JOB_LOW_BG: 3,
    Cmd.SUBMIT_JOB_SCHED: 8,
    Cmd.SUBMIT_JOB_EPOCH: 4,
    Cmd.SUBMIT_REDUCE_JOB: 5,
    Cmd.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    Cmd.GRAB_JOB_ALL: 0,
    Cmd.JOB_ASSIGN_ALL: 5,
    Cmd.GET_STATUS_UNIQUE: 1,
    Cmd.STATUS_RES_UNIQUE: 6,
}

# Lookup tables indexed by the command number (faster than Cmd(n) per packet).
_NUM_CMDS = max(Cmd) + 1
_CMD_BY_NUM: list[Cmd | None] = [None] * _NUM_CMDS
_NARGS_BY_NUM: list[int] = [0] * _NUM_CMDS
for _cmd, _n in ARG_COUNT.items():
    _CMD_BY_NUM[_cmd] = _cmd
    _NARGS_BY_NUM[_cmd] = _n

_HEADER = struct.Struct(">4sII")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_JOB_CREATED = int(Cmd.JOB_CREATED)
_WORK_COMPLETE = int(Cmd.WORK_COMPLETE)


@dataclass(frozen=True, slots=True)
class Packet:
    """One binary packet: its command and its arguments."""

    cmd: Cmd
    args: tuple[bytes, ...]


def pack(cmd: Cmd, *args: bytes) -> bytes:
    """Build a request packet. Only the last argument may contain NUL bytes."""
    for arg in args[:-1]:
        if b"\0" in arg:
            raise ValueError(f"argument {arg!r} of {cmd.name} contains a NUL byte")
    body = b"\0".join(args)
    return _pack_header(MAGIC_REQ, cmd, len(body)) + body


def pack_unchecked(cmd: Cmd, *args: bytes) -> bytes:
    """:func:`pack` for arguments already known to be free of NUL bytes (a job name or
    unique key validated once), without checking them again."""
    body = b"\0".join(args)
    return _pack_header(MAGIC_REQ, cmd, len(body)) + body


def pack_response(cmd: Cmd, *args: bytes) -> bytes:
    """Build a response packet (what a job server sends); used by tests and tools."""
    body = b"\0".join(args)
    return _pack_header(MAGIC_RES, cmd, len(body)) + body


_monotonic = time.monotonic
_ceil = math.ceil


def _timeout_text(timeout: float | None, deadline: float) -> str:
    if timeout is not None:
        return f"{timeout:g} s"
    return "the deadline"


class OversizePacket(ProtocolError):
    """A packet larger than ``max_packet_size`` that the connection skips instead of closing.

    Raised (once) for a command the connection was told to skip (``skip_oversize``): the
    packet's body is then discarded as it arrives, without being buffered, and the
    connection stays usable. ``args_`` are the packet's leading arguments (a job handle,
    function name, unique key); ``head`` is the start of its last argument (at most
    PEEK_SIZE bytes, never the whole); ``size`` is the body length the header announced,
    ``limit`` the max_packet_size it exceeds.
    """

    def __init__(
        self,
        message: str,
        *,
        cmd: Cmd,
        size: int,
        limit: int,
        args: tuple[bytes, ...],
        head: bytes,
    ) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.size = size
        self.limit = limit
        self.args_ = args
        self.head = head

    def __reduce__(self) -> tuple[object, ...]:
        fields = {"cmd": self.cmd, "size": self.size, "limit": self.limit}
        return (_rebuild_oversize, (str(self), fields, self.args_, self.head))


def _rebuild_oversize(
    message: str, fields: dict[str, Any], args: tuple[bytes, ...], head: bytes
) -> OversizePacket:
    return OversizePacket(message, args=args, head=head, **fields)


def _describe(exc: BaseException) -> str:
    """A short lower-case reason for a socket error: "connection refused"."""
    if "ssl" in sys.modules:  # only TLS connections load it (it costs ~5 MB of memory)
        import ssl

        if isinstance(exc, ssl.SSLError):
            return _describe_tls(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        text = exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
        return text[:1].lower() + text[1:]
    return str(exc) or type(exc).__name__


def _describe_tls(exc: ssl.SSLError) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not accepted "
            f"({getattr(exc, 'verify_message', None) or exc.reason}); "
            "check the TLS ca_file and server_hostname"
        )
    reason = str(exc.reason or exc)
    hint = ""
    if "CERTIFICATE_REQUIRED" in reason:
        hint = "; the server wants a client certificate: set the TLS cert_file and key_file"
    elif "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason:
        hint = "; the server does not accept the client certificate"
    return f"TLS error: {reason}{hint}"


_NO_ERRORS: tuple[type[BaseException], ...] = ()


class Connection:
    """One connection to a job server (binary and admin protocol).

    A packet larger than ``max_packet_size`` closes the connection with a ProtocolError,
    except for the commands in ``skip_oversize``: such a packet raises
    :class:`OversizePacket` once and its body is discarded as it arrives (memory stays
    bounded), so that a worker can fail one oversize job and keep its connection.

    Not thread-safe: use one connection from one thread at a time.
    """

    def __init__(
        self,
        address: ServerAddress,
        *,
        connect_timeout: float = 5.0,
        max_packet_size: int = DEFAULT_MAX_PACKET,
        skip_oversize: Iterable[Cmd] = (),
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.max_packet_size = max_packet_size
        self.skip_oversize = frozenset(skip_oversize)
        for cmd in self.skip_oversize:
            if ARG_COUNT[cmd] < 2:
                raise ValueError(f"{cmd.name} packets cannot be skipped: they have no body to skip")
        self._skip = 0  # bytes of an oversize packet's body still to discard
        self._deferred: OversizePacket | None = None  # raised by the next read
        # exceptions meaning "try again later" (TLS adds its want-read/want-write errors)
        self._would_block: tuple[type[BaseException], ...] = (BlockingIOError,)
        self._want_read: tuple[type[BaseException], ...] = (BlockingIOError,)
        self._want_write: tuple[type[BaseException], ...] = _NO_ERRORS
        self._name = str(address)
        self._sock: socket.socket | None = None
        self._tls = False
        self._poller: select.poll | None = None
        self._ssl_context: ssl.SSLContext | None = None
        # Receive buffer: ``_buf[_pos:]`` is unparsed data. A received chunk is used as it is
        # (bytes) while it holds whole packets; it becomes a bytearray when data accumulates.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._out = bytearray()  # queued output for non-blocking writes (batches)
        self._lowat = 1  # the socket's SO_RCVLOWAT
        self._hint = 0  # bytes the next wait may sleep for (see expect())

    def __repr__(self) -> str:
        state = "connected" if self._sock is not None else "closed"
        return f"<Connection {self._name} {state}>"

    # -- connection management -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Connect (TCP, then TLS when the address has TLS settings).

        Raises ServerUnavailable("host:port: connection refused") and the like.
        """
        self.close()
        addr = self.address
        try:
            sock = socket.create_connection((addr.host, addr.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise ServerUnavailable(
                f"{self._name}: connect timed out after {self.connect_timeout:g} s",
                self._name,
            ) from exc
        except OSError as exc:
            raise ServerUnavailable(f"{self._name}: {_describe(exc)}", self._name) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
                if hasattr(socket, opt):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            if addr.tls is not None:
                if self._ssl_context is None:
                    self._ssl_context = addr.tls.context()
                sock = self._ssl_context.wrap_socket(
                    sock, server_hostname=addr.tls.server_hostname or addr.host
                )
        except TimeoutError as exc:
            sock.close()
            raise ServerUnavailable(
                f"{self._name}: TLS handshake timed out after {self.connect_timeout:g} s",
                self._name,
            ) from exc
        except OSError as exc:
            sock.close()
            what = "TLS handshake failed" if addr.tls is not None else "socket setup failed"
            raise ServerUnavailable(f"{self._name}: {what}: {_describe(exc)}", self._name) from exc
        self.adopt(sock)

    def adopt(self, sock: socket.socket) -> None:
        """Use an already connected socket (a socketpair in tests, an accepted socket)."""
        self.close()
        sock.setblocking(False)
        self._sock = sock
        self._tls = False
        self._would_block = self._want_read = (BlockingIOError,)
        self._want_write = _NO_ERRORS
        if "ssl" in sys.modules:  # a TLS socket means ssl is loaded
            import ssl

            if isinstance(sock, ssl.SSLSocket):
                self._tls = True
                self._want_read = (BlockingIOError, ssl.SSLWantReadError)
                self._want_write = (ssl.SSLWantWriteError,)
                self._would_block = (*self._want_read, *self._want_write)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._lowat = 1
        self._hint = 0

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._poller = None
        self._buf = b""
        self._pos = 0
        self._skip = 0
        self._deferred = None
        self._out.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def fileno(self) -> int:
        """The socket's file descriptor (-1 when closed), for selectors."""
        return self._sock.fileno() if self._sock is not None else -1

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise ServerUnavailable(f"{self._name}: not connected", self._name)
        return self._sock

    def _lost(self, exc: BaseException | None, what: str = "") -> ServerUnavailable:
        self.close()
        reason = what or (_describe(exc) if exc is not None else "connection lost")
        return ServerUnavailable(f"{self._name}: {reason}", self._name)

    def expect(self, nbytes: int) -> None:
        """Hint that the answer to the request just sent is at least ``nbytes`` long.

        The next wait for a packet then sleeps until that much has arrived (SO_RCVLOWAT;
        plain TCP only, at most HINT_WAIT seconds, then it wakes for any byte again). A
        foreground submit uses it to sleep through JOB_CREATED straight to the result,
        saving one wake-up per job.
        """
        if not self._tls and nbytes > 1:
            self._hint = nbytes

    def clear_hint(self) -> None:
        """Make the socket readable at one byte again (before a selector or admin wait)."""
        self._hint = 0
        if self._lowat != 1:
            self._set_lowat(1)

    def wake_when(self, nbytes: int) -> None:
        """Let select/poll report the socket readable only once ``nbytes`` have arrived
        (SO_RCVLOWAT; plain TCP only). Applied only while nothing is buffered (a partial
        packet may need fewer bytes to complete) and no oversize body is being skipped,
        otherwise the socket wakes at a byte. End of file and errors always wake."""
        if self._tls or self._skip or self._pos < len(self._buf):
            nbytes = 1
        if nbytes != self._lowat:
            self._set_lowat(nbytes)

    def _set_lowat(self, nbytes: int) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
            except OSError:
                self._hint = 0
                return
        self._lowat = nbytes

    def _wait(self, events: int, deadline: float | None) -> bool:
        """Wait until the socket is ready; False when the deadline passed."""
        poller = self._poller
        if poller is None:
            raise self._lost(None, "not connected")
        if self._lowat != 1:
            self.clear_hint()
        if deadline is None:
            ms: int | None = None
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ms = math.ceil(left * 1000)
        if events != select.POLLIN:
            poller.modify(self._require(), events)
        try:
            return bool(poller.poll(ms))
        finally:
            if events != select.POLLIN and self._poller is not None and self._sock is not None:
                self._poller.modify(self._sock, select.POLLIN)

    # -- writing ---------------------------------------------------------------------------

    def send(self, cmd: Cmd, *args: bytes) -> None:
        """Send one request packet completely; on error close and raise ServerUnavailable."""
        self.send_bytes(pack(cmd, *args))

    def send_bytes(self, data: bytes | memoryview, timeout: float | None = None) -> None:
        """Send already packed packets completely (one system call when the socket allows).

        Raises ServerUnavailable on a lost connection, TimeoutError after ``timeout``.
        """
        sock = self._sock
        if sock is None:
            raise ServerUnavailable(f"{self._name}: not connected", self._name)
        if self._out:
            self._out += data
            data = b""
            if not self._flush_out(None if timeout is None else time.monotonic() + timeout):
                raise TimeoutError(f"{self._name}: could not send within {timeout:g} s")
            return
        self._send_on(sock, data, timeout)

    def _send_on(
        self, sock: socket.socket, data: bytes | memoryview, timeout: float | None
    ) -> bool:
        """Send ``data`` with nothing queued before it: True when one system call took it
        all, False when the rest had to wait (sent by then, or an error raised)."""
        try:
            sent = sock.send(data)
        except self._would_block:
            sent = 0
        except OSError as exc:
            raise self._lost(exc) from exc
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            if not self._flush_out(None if timeout is None else time.monotonic() + timeout):
                raise TimeoutError(f"{self._name}: could not send within {timeout:g} s")
            return False
        return True

    def exchange(
        self,
        data: bytes,
        deadline: float | None,
        timeout: float | None = None,
        expect: int = 0,
    ) -> tuple[Cmd, tuple[bytes, ...]]:
        """Send packed request(s), then wait for the next packet: a client's hot path.

        The same as :meth:`send_bytes`, :meth:`expect` (when ``expect``) and
        :meth:`next_packet` in one call.
        """
        sock = self._sock
        if sock is None or self._out:
            self.send_bytes(data, timeout)
        else:
            self._send_on(sock, data, timeout)
        if expect > 1 and not self._tls:
            self._hint = expect
        return self.next_packet(deadline, timeout)

    def foreground(
        self,
        data: bytes,
        deadline: float | None,
        timeout: float | None,
        expect: int,
    ) -> tuple[bytes, bytes] | None:
        """Send a foreground submit packet and wait for its answer: a client's hottest path.

        When the first read holds exactly JOB_CREATED and the WORK_COMPLETE of its handle
        (a short job), both are consumed and ``(handle, result)`` is returned. Otherwise
        None, with nothing consumed: read on with :meth:`next_packet`. The first wait sleeps
        until ``expect`` bytes are here (SO_RCVLOWAT, as :meth:`expect`), at most
        HINT_WAIT_MS; it never raises TimeoutError (None when the deadline has passed).
        Raises ServerUnavailable as :meth:`send_bytes` and :meth:`next_packet` do.
        """
        sock = self._sock
        if sock is None or self._out or self._tls or self._pos < len(self._buf) or self._skip:
            self.send_bytes(data, timeout)  # something unusual: the general way
            return None
        if not self._send_on(sock, data, timeout):
            return None
        if deadline is None:
            ms = HINT_WAIT_MS
        else:
            left = deadline - _monotonic()
            if left <= 0:
                return None
            ms = min(_ceil(left * 1000), HINT_WAIT_MS)
        if self._lowat != expect:
            self._set_lowat(expect)
        poller = self._poller
        if poller is None or not poller.poll(ms) or not self._fill():
            return None
        buf = self._buf  # the chunk just read: the buffer was empty (checked above)
        have = len(buf)
        if type(buf) is not bytes or have < 2 * HEADER_SIZE:
            return None
        magic, num, size = _unpack_header(buf, 0)
        first_end = HEADER_SIZE + size
        if magic != MAGIC_RES or num != _JOB_CREATED or first_end + HEADER_SIZE > have:
            return None
        magic, num, size = _unpack_header(buf, first_end)
        if (
            magic != MAGIC_RES
            or num != _WORK_COMPLETE
            or first_end + HEADER_SIZE + size != have
            or size > self.max_packet_size
        ):
            return None
        handle = buf[HEADER_SIZE:first_end]
        start = first_end + HEADER_SIZE
        split = start + len(handle)
        if buf[start:split] != handle or buf[split : split + 1] != b"\0":
            return None
        self._pos = have
        return handle, buf[split + 1 :]

    def enqueue(self, data: bytes) -> None:
        """Queue packed packets for :meth:`flush_nowait` (non-blocking batch writes)."""
        self._require()
        self._out += data

    @property
    def pending_output(self) -> int:
        """Bytes queued by :meth:`enqueue` and not written yet."""
        return len(self._out)

    def flush_nowait(self) -> bool:
        """Write as much queued output as the socket takes now; True when all is written."""
        sock = self._require()
        out = self._out
        while out:
            try:
                sent = sock.send(out)
            except self._would_block:
                return False
            except OSError as exc:
                raise self._lost(exc) from exc
            del out[:sent]
        return True

    def _flush_out(self, deadline: float | None) -> bool:
        while not self.flush_nowait():
            if not self._wait(select.POLLOUT, deadline):
                return False
        return True

    # -- reading ---------------------------------------------------------------------------

    def _fill(self) -> bool:
        """One non-blocking read into the buffer (draining TLS); False if nothing was there.

        While an oversize packet is being skipped, its body is read into a scratch buffer
        and dropped (at most SKIP_READS reads per call)."""
        sock = self._sock
        if sock is None:
            raise self._lost(None, "not connected")
        buf = self._buf
        pos = self._pos
        if pos >= len(buf) and not self._tls and not self._skip:
            # nothing buffered (the usual case): one recv is all there is to do
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                return False
            except OSError as exc:
                raise self._recv_error(exc) from exc
            if not data:
                raise self._lost(None, "connection closed by the server")
            self._buf = data
            self._pos = 0
            return True
        size = RECV_SIZE
        if len(buf) - pos >= HEADER_SIZE:
            # a big packet is arriving: read larger chunks
            announced = _unpack_header(buf, pos)[2]
            want = HEADER_SIZE + announced - (len(buf) - pos)
            if want > RECV_SIZE and announced <= self.max_packet_size:
                size = min(want, BIG_RECV_SIZE)
        got = False
        sink: memoryview | None = None
        skipped_reads = 0
        while True:
            skip = self._skip
            try:
                if skip:
                    if sink is None:
                        sink = memoryview(bytearray(min(skip, SINK_SIZE)))
                    count = sock.recv_into(sink, min(skip, len(sink)))
                    data = b""
                else:
                    data = sock.recv(size)
                    count = len(data)
            except self._want_read:
                return got
            except self._want_write:
                self._wait(select.POLLOUT, time.monotonic() + self.connect_timeout)
                continue
            except OSError as exc:
                raise self._recv_error(exc) from exc
            if not count:
                raise self._lost(None, "connection closed by the server")
            got = True
            if skip:  # the body of an oversize packet: dropped
                self._skip -= count
                skipped_reads += 1
                if self._skip and skipped_reads >= SKIP_READS:
                    return True  # more to skip: the caller's loop calls again
                continue
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                self._buf = data
            elif isinstance(buf, bytes) and len(buf) - pos <= SMALL_LEFTOVER:
                self._buf = buf[pos:] + data  # stays bytes: the fast parsing path
            else:
                if isinstance(buf, bytes):
                    buf = bytearray(memoryview(buf)[pos:])
                elif pos:
                    del buf[:pos]
                buf += data
                self._buf = buf
            self._pos = 0
            if not self._tls or not cast("ssl.SSLSocket", sock).pending():
                return True

    def _recv_error(self, exc: OSError) -> ServerUnavailable:
        if exc.errno == errno.ECONNRESET:
            return self._lost(exc, "connection reset by the server")
        return self._lost(exc)

    def _take(self) -> tuple[Cmd, tuple[bytes, ...]] | None:
        """Take one complete packet off the buffer as (cmd, args), or None."""
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            raise deferred
        buf = self._buf
        pos = self._pos
        have = len(buf)
        if have - pos < HEADER_SIZE:
            if have > pos and buf[pos] != 0:
                raise self._garbage(buf, pos)
            return None
        magic, num, size = _unpack_header(buf, pos)
        if magic != MAGIC_RES or size > self.max_packet_size or num >= _NUM_CMDS:
            if magic == MAGIC_RES and num < _NUM_CMDS and _CMD_BY_NUM[num] in self.skip_oversize:
                self._skip_packet(buf, pos, num, size)  # raises once the head is here
                return None
            raise self._bad_header(buf, pos, num, size)
        cmd = _CMD_BY_NUM[num]
        if cmd is None:
            raise self._bad_header(buf, pos, num, size)
        start = pos + HEADER_SIZE
        end = start + size
        if end > have:
            return None
        self._pos = end
        nargs = _NARGS_BY_NUM[num]
        if isinstance(buf, bytes):
            if nargs == 1:
                return cmd, (buf[start:end],)
            if nargs == 0:
                if size:
                    raise self._bad_args(cmd, f"carries {size} unexpected bytes")
                return cmd, ()
            args = tuple(buf[start:end].split(b"\0", nargs - 1))
        else:
            if nargs == 0:
                if size:
                    raise self._bad_args(cmd, f"carries {size} unexpected bytes")
                return cmd, ()
            with memoryview(buf) as view:
                parts: list[bytes] = []
                for _ in range(nargs - 1):
                    nul = buf.find(0, start, end)
                    if nul < 0:
                        break
                    parts.append(bytes(view[start:nul]))
                    start = nul + 1
                parts.append(bytes(view[start:end]))
            args = tuple(parts)
        if len(args) != nargs:
            raise self._bad_args(cmd, f"has {len(args)} argument(s), expected {nargs}")
        return cmd, args

    def _skip_packet(self, buf: bytes | bytearray, pos: int, num: int, size: int) -> None:
        """An oversize packet of a command in ``skip_oversize``: once the first PEEK_SIZE
        bytes of its body are here, raise OversizePacket and skip the rest of the body.
        None: those bytes are not all here yet."""
        cmd = Cmd(num)
        start = pos + HEADER_SIZE
        peek_end = start + min(size, PEEK_SIZE)
        if len(buf) < peek_end:
            return None
        args: list[bytes] = []
        at = start
        for _ in range(_NARGS_BY_NUM[num] - 1):
            nul = buf.find(b"\0", at, peek_end)
            if nul < 0:
                self.close()
                raise ProtocolError(
                    f"{self._name}: {cmd.name} packet of {size} bytes announced, more than "
                    f"max_packet_size {self.max_packet_size}, and its first "
                    f"{peek_end - start} bytes do not hold its leading arguments; "
                    "connection closed"
                )
            args.append(bytes(buf[at:nul]))
            at = nul + 1
        head = bytes(buf[at:peek_end])
        taken = min(len(buf) - start, size)
        self._pos = start + taken
        self._skip = size - taken
        raise OversizePacket(
            f"{self._name}: {cmd.name} packet of {size} bytes, more than max_packet_size "
            f"{self.max_packet_size}; its body is skipped and the connection kept",
            cmd=cmd,
            size=size,
            limit=self.max_packet_size,
            args=tuple(args),
            head=head,
        )

    def _bad_header(self, buf: bytes | bytearray, pos: int, num: int, size: int) -> ProtocolError:
        if buf[pos : pos + 4] != MAGIC_RES:
            return self._garbage(buf, pos)
        self.close()
        if size > self.max_packet_size:
            return ProtocolError(
                f"{self._name}: packet of {size} bytes announced, more than max_packet_size "
                f"{self.max_packet_size}; connection closed (raise max_packet_size if results "
                "are really that large)"
            )
        return ProtocolError(f"{self._name}: unknown packet type {num}; connection closed")

    def _bad_args(self, cmd: Cmd, what: str) -> ProtocolError:
        self.close()
        return ProtocolError(f"{self._name}: {cmd.name} packet {what}; connection closed")

    def next_packet(
        self, deadline: float | None, timeout: float | None = None
    ) -> tuple[Cmd, tuple[bytes, ...]]:
        """Block for the next packet as ``(cmd, args)`` (no Packet object: for hot loops).

        ``deadline`` is a :func:`time.monotonic` value (None: wait forever); TimeoutError
        when it passes (its message names ``timeout``).
        """
        item = self._take()
        if item is not None:
            return item
        poller = self._poller
        if poller is None:
            raise self._lost(None, "not connected")
        while True:
            if deadline is None:
                ms = None
            else:
                left = deadline - _monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self._name}: no answer within {_timeout_text(timeout, deadline)}"
                    )
                ms = _ceil(left * 1000)
            sock = self._sock
            hint = self._hint
            if hint:
                self._hint = 0
                if self._pos >= len(self._buf):
                    if self._lowat != hint:
                        self._set_lowat(hint)
                    if not poller.poll(HINT_WAIT_MS if ms is None else min(ms, HINT_WAIT_MS)):
                        continue  # not that much yet: wait for any byte from now on
                    if self._fill():
                        item = self._take()
                        if item is not None:
                            return item
                    continue
            if self._lowat != 1:
                self._set_lowat(1)
            if self._tls and cast("ssl.SSLSocket", sock).pending():
                pass
            elif not poller.poll(ms):
                continue
            if self._fill():
                item = self._take()
                if item is not None:
                    return item

    def _garbage(self, buf: bytes | bytearray, pos: int) -> ProtocolError:
        snippet = bytes(buf[pos : pos + 16])
        self.close()
        return ProtocolError(
            f"{self._name}: received data that is not a Gearman response "
            f"(bad magic, starts with {snippet!r}); connection closed"
        )

    def has_buffered(self) -> bool:
        """True when reading needs no more data from the socket: a complete packet (or
        bytes that are not a packet, or an oversize packet to report) is buffered. Check
        it before select."""
        buf = self._buf
        pos = self._pos
        have = len(buf) - pos
        if not have:  # the usual case: everything read was handled
            return self._deferred is not None
        if self._deferred is not None:
            return True
        if have < HEADER_SIZE:
            return have > 0 and buf[pos] != 0
        magic: bytes
        num: int
        size: int
        magic, num, size = _unpack_header(buf, pos)
        if size > self.max_packet_size and magic == MAGIC_RES and num < _NUM_CMDS:
            if _CMD_BY_NUM[num] in self.skip_oversize:
                return have >= HEADER_SIZE + min(size, PEEK_SIZE)
            return True  # reading it raises ProtocolError
        return magic != MAGIC_RES or have >= HEADER_SIZE + size

    def partial_mark(self) -> int | None:
        """None, or when part of a packet has arrived and not the rest (or the body of an
        oversize packet is still being skipped), a number that changes as more arrives."""
        have = len(self._buf) - self._pos
        if self._skip or (have and not self.has_buffered()):
            return have - self._skip
        return None

    def read_available(self) -> list[Packet]:
        """Read what the socket has (call when a selector says readable) and return the
        complete packets (maybe none). EOF/reset: close + ServerUnavailable; garbage, bad
        magic, oversize packet: close + ProtocolError, except that an oversize packet of a
        ``skip_oversize`` command raises OversizePacket (after the packets before it were
        returned) and leaves the connection open."""
        return [Packet(cmd, args) for cmd, args in self.read_available_raw()]

    def read_available_raw(self) -> list[tuple[Cmd, tuple[bytes, ...]]]:
        """:meth:`read_available` as ``(cmd, args)`` tuples (no Packet objects)."""
        self._fill()
        packets: list[tuple[Cmd, tuple[bytes, ...]]] = []
        buf = self._buf
        if type(buf) is bytes and self._deferred is None:
            # the common case in one loop (many packets per read in a batch); anything
            # unusual (an error, an oversize packet) is left to _take below
            append = packets.append
            pos = self._pos
            have = len(buf)
            limit = self.max_packet_size
            while have - pos >= HEADER_SIZE:
                magic, num, size = _unpack_header(buf, pos)
                end = pos + HEADER_SIZE + size
                if magic != MAGIC_RES or num >= _NUM_CMDS or size > limit or end > have:
                    break
                cmd = _CMD_BY_NUM[num]
                nargs = _NARGS_BY_NUM[num]
                if cmd is None:
                    break
                if nargs == 0:
                    if size:
                        break
                    append((cmd, ()))
                elif nargs == 1:
                    append((cmd, (buf[pos + HEADER_SIZE : end],)))
                else:
                    args = tuple(buf[pos + HEADER_SIZE : end].split(b"\0", nargs - 1))
                    if len(args) != nargs:
                        break
                    append((cmd, args))
                pos = end
            self._pos = pos
            if pos == have:
                return packets
        take = self._take
        while True:
            try:
                item = take()
            except OversizePacket as exc:
                if not packets:
                    raise
                self._deferred = exc  # report the packets before it first
                return packets
            if item is None:
                return packets
            packets.append(item)

    def recv(self, timeout: float | None = None) -> Packet:
        """Block for the next packet; TimeoutError after ``timeout`` seconds."""
        item = self._take()
        if item is None:
            deadline = None if timeout is None else _monotonic() + timeout
            item = self.next_packet(deadline, timeout)
        return Packet(*item)

    # -- admin text protocol ---------------------------------------------------------------

    def _read_line(self, deadline: float | None, timeout: float) -> str:
        while True:
            buf = self._buf
            nl = buf.find(b"\n", self._pos)
            if nl >= 0:
                line = bytes(buf[self._pos : nl])
                self._pos = nl + 1
                if len(line) > MAX_ADMIN_LINE:
                    break
                return line.rstrip(b"\r").decode("utf-8", "replace")
            if len(buf) - self._pos > MAX_ADMIN_LINE:
                break
            if not self._wait(select.POLLIN, deadline):
                raise TimeoutError(f"{self._name}: no admin answer within {timeout:g} s")
            self._fill()
        self.close()
        raise ProtocolError(
            f"{self._name}: a line of the admin answer is longer than {MAX_ADMIN_LINE} bytes; "
            "is this a Gearman job server?"
        )

    def admin(self, command: str, timeout: float = 5.0) -> list[str]:
        """Run an admin text command on this connection and return its answer lines.

        Multi-line answers (status, workers, show ..., prioritystatus) are returned without
        the final "."; other commands give their one line. ``ERR ...`` raises ProtocolError.
        """
        if "\n" in command or "\r" in command:
            raise ValueError(f"admin command {command!r} must be a single line")
        self.send_bytes(command.encode("utf-8") + b"\n", timeout)
        deadline = time.monotonic() + timeout
        words = command.split()
        multiline = bool(words) and words[0] in MULTILINE_ADMIN
        lines: list[str] = []
        size = 0
        while True:
            line = self._read_line(deadline, timeout)
            size += len(line) + 1
            if size > MAX_ADMIN_ANSWER:
                self.close()
                raise ProtocolError(
                    f"{self._name}: the answer to admin command {command!r} is longer than "
                    f"{MAX_ADMIN_ANSWER} bytes; is this a Gearman job server?"
                )
            if not lines and line.startswith("ERR"):
                raise ProtocolError(f"{self._name}: admin command {command!r} failed: {line}")
            if not multiline:
                return [line]
            if line == ".":
                return lines
            lines.append(line)


def check_gearmand(address: ServerAddress, *, timeout: float = 5.0) -> str:
    """Make sure a Gearman job server listens at ``address``, and return its version.

    Any server may answer one line to ``version``: the peer must also answer it with a
    version number and echo an ECHO_REQ packet. ProtocolError says what it did instead."""
    conn = Connection(address, connect_timeout=timeout)
    conn.connect()
    try:
        line = conn.admin("version", timeout)[0]
        version = line.removeprefix("OK ")
        if not _VERSION.fullmatch(version):
            raise ProtocolError(
                f"{address}: not a Gearman job server: it answered the admin command "
                f"'version' with {line[:80]!r}"
            )
        token = os.urandom(8).hex().encode()
        conn.send(Cmd.ECHO_REQ, token)
        packet = conn.recv(timeout)
        if packet.cmd != Cmd.ECHO_RES or packet.args[0] != token:
            raise ProtocolError(
                f"{address}: not a Gearman job server: it answered ECHO_REQ with {packet.cmd.name}"
            )
        return version
    finally:
        conn.close()


def admin_command(address: ServerAddress, command: str, *, timeout: float = 5.0) -> list[str]:
    """Connect, run one admin command (see :meth:`Connection.admin`), disconnect."""
    conn = Connection(address, connect_timeout=timeout)
    conn.connect()
    try:
        return conn.admin(command, timeout)
    finally:
        conn.close()


@dataclass(frozen=True)
class FunctionStatus:
    """One line of the admin ``status`` answer."""

    function: str
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        return self.total - self.running


def parse_status(lines: list[str]) -> list[FunctionStatus]:
    """Parse the lines of the admin ``status`` answer."""
    result = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 4 or not all(f.isdigit() for f in fields[1:]):
            raise ProtocolError(f"unexpected line in the admin status answer: {line!r}")
        result.append(FunctionStatus(fields[0], int(fields[1]), int(fields[2]), int(fields[3])))
    return result


def server_status(address: ServerAddress, *, timeout: float = 5.0) -> list[FunctionStatus]:
    """The parsed admin ``status`` of a job server (one entry per known function)."""
    return parse_status(admin_command(address, "status", timeout=timeout))
