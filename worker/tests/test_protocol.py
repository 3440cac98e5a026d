"""The binary and admin protocol: packet framing, partial reads, limits, real gearmand."""

from __future__ import annotations

import itertools
import pickle
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearjob.config import ServerAddress
from gearjob.errors import ProtocolError, ServerUnavailable
from gearjob.protocol import (
    ARG_COUNT,
    MAGIC_REQ,
    MAGIC_RES,
    Cmd,
    Connection,
    FunctionStatus,
    OversizePacket,
    Packet,
    admin_command,
    pack,
    pack_response,
    parse_status,
    server_status,
)

if TYPE_CHECKING:
    from conftest import GearmanServer

FAKE = ServerAddress("fake", 1)


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A Connection reading from one end of a socketpair; the test writes the other end."""
    ours, theirs = socket.socketpair()
    conn = Connection(FAKE, max_packet_size=1 << 20)
    conn.adopt(ours)
    try:
        yield conn, theirs
    finally:
        conn.close()
        theirs.close()


def responses() -> list[tuple[Packet, bytes]]:
    """Sample packets of every shape a server sends, with their encoding."""
    samples = [
        (Cmd.NOOP, ()),
        (Cmd.JOB_CREATED, (b"H:host:1",)),
        (Cmd.WORK_COMPLETE, (b"H:host:1", "héllo wörld \U0001f389 €".encode())),
        (Cmd.WORK_COMPLETE, (b"H:host:2", bytes(range(256)) + b"\0\0tail\0")),
        (Cmd.WORK_STATUS, (b"H:host:2", b"3", b"10")),
        (Cmd.STATUS_RES, (b"H:host:2", b"1", b"0", b"3", b"10")),
        (Cmd.ERROR, (b"JOB_NOT_FOUND", b"Job given in work result not found")),
        (Cmd.JOB_ASSIGN_UNIQ, (b"H:h:3", b"fn", b"uniq", b"")),
        (Cmd.WORK_EXCEPTION, (b"H:h:3", b'{"type":"ValueError","message":"boom"}')),
        (Cmd.WORK_DATA, (b"H:h:3", b"")),
    ]
    return [(Packet(cmd, args), pack_response(cmd, *args)) for cmd, args in samples]


def test_pack_layout() -> None:
    data = pack(Cmd.SUBMIT_JOB, b"fn", b"uq", "ü".encode())
    assert data[:4] == MAGIC_REQ
    assert struct.unpack(">II", data[4:12]) == (Cmd.SUBMIT_JOB, len(data) - 12)
    # the length counts bytes, not characters: "ü" is two bytes
    assert struct.unpack(">I", data[8:12])[0] == len(b"fn\0uq\0") + 2
    assert data[12:] == b"fn\0uq\0\xc3\xbc"
    assert pack(Cmd.GRAB_JOB_UNIQ) == MAGIC_REQ + struct.pack(">II", 30, 0)


def test_pack_refuses_nul_in_leading_argument() -> None:
    with pytest.raises(ValueError, match="NUL"):
        pack(Cmd.SUBMIT_JOB, b"f\0n", b"", b"x")
    # the last argument may carry NUL bytes
    assert pack(Cmd.SUBMIT_JOB, b"fn", b"", b"a\0b").endswith(b"a\0b")


def test_arg_count_covers_every_command() -> None:
    assert set(ARG_COUNT) == set(Cmd)
    assert ARG_COUNT[Cmd.JOB_ASSIGN_UNIQ] == 4
    assert ARG_COUNT[Cmd.SUBMIT_JOB_SCHED] == 8


def test_parse_all_packets_in_one_read(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    samples = responses()
    peer.sendall(b"".join(raw for _, raw in samples))
    got: list[Packet] = []
    while len(got) < len(samples):
        got.extend(conn.read_available())
    assert got == [p for p, _ in samples]
    assert not conn.has_buffered()


def test_partial_reads_split_at_every_byte(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    samples = responses()
    stream = b"".join(raw for _, raw in samples)
    expected = [p for p, _ in samples]
    for cut in range(1, len(stream)):
        peer.sendall(stream[:cut])
        got = conn.read_available()
        peer.sendall(stream[cut:])
        while len(got) < len(expected):
            got.extend(conn.read_available())
        assert got == expected, f"split at byte {cut}"


def test_byte_by_byte(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    packet, raw = responses()[2]
    for i, byte in enumerate(raw):
        assert not conn.has_buffered()
        peer.sendall(bytes([byte]))
        got = conn.read_available()
        assert got == ([packet] if i == len(raw) - 1 else [])


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    texts=st.lists(st.text(max_size=50), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
)
def test_random_packets_and_splits(
    payloads: list[bytes], texts: list[str], cuts: list[int]
) -> None:
    ours, theirs = socket.socketpair()
    conn = Connection(FAKE)
    conn.adopt(ours)
    try:
        expected = [Packet(Cmd.WORK_COMPLETE, (b"H:x:1", p)) for p in payloads]
        expected += [
            Packet(Cmd.WORK_DATA, (b"H:x:2", t.encode("utf-8", "surrogatepass"))) for t in texts
        ]
        stream = b"".join(pack_response(p.cmd, *p.args) for p in expected)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        got: list[Packet] = []
        for a, b in itertools.pairwise(points):
            theirs.sendall(stream[a:b])
            got.extend(conn.read_available())
        while len(got) < len(expected):
            got.extend(conn.read_available())
        assert got == expected
    finally:
        conn.close()
        theirs.close()


def test_recv_returns_packets_one_by_one(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    samples = responses()
    peer.sendall(b"".join(raw for _, raw in samples))
    assert [conn.recv(5) for _ in samples] == [p for p, _ in samples]


def test_recv_times_out(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(MAGIC_RES)  # half a header
    with pytest.raises(TimeoutError, match=r"no answer within 0\.05 s"):
        conn.recv(0.05)
    assert conn.connected


def test_ten_megabyte_packet(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.max_packet_size = 64 << 20
    big = bytes(range(256)) * (10 * 4096)  # 10 MiB with every byte value
    raw = pack_response(Cmd.WORK_COMPLETE, b"H:x:9", big)
    writer = threading.Thread(target=peer.sendall, args=(raw,))
    writer.start()
    try:
        packet = conn.recv(30)
    finally:
        writer.join()
    assert packet.cmd == Cmd.WORK_COMPLETE
    assert packet.args[0] == b"H:x:9"
    assert packet.args[1] == big


def test_oversize_length_header_closes(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(MAGIC_RES + struct.pack(">II", Cmd.WORK_COMPLETE, 0xFFFFFFF0))
    with pytest.raises(ProtocolError, match=r"4294967280 bytes.*max_packet_size 1048576"):
        conn.recv(5)
    assert not conn.connected


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a Gearman response"),
        (b"E", "not a Gearman response"),
        (MAGIC_REQ + struct.pack(">II", Cmd.NOOP, 0), r"bad magic.*\\x00REQ"),
        (MAGIC_RES + struct.pack(">II", 99, 0), "unknown packet type 99"),
        (MAGIC_RES + struct.pack(">II", 0, 0), "unknown packet type 0"),
        (MAGIC_RES + struct.pack(">II", Cmd.WORK_COMPLETE, 3) + b"abc", "1 argument.*expected 2"),
        (MAGIC_RES + struct.pack(">II", Cmd.STATUS_RES, 3) + b"a\0b", "2 argument.*expected 5"),
        (MAGIC_RES + struct.pack(">II", Cmd.NOOP, 2) + b"xx", "NOOP packet carries 2"),
    ],
)
def test_garbage_is_a_protocol_error(
    pair: tuple[Connection, socket.socket], data: bytes, match: str
) -> None:
    conn, peer = pair
    peer.sendall(data)
    with pytest.raises(ProtocolError, match=match):
        conn.recv(5)
    assert not conn.connected


def test_eof_is_server_unavailable(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    peer.sendall(pack_response(Cmd.NOOP))
    peer.close()
    assert conn.recv(5) == Packet(Cmd.NOOP, ())
    with pytest.raises(ServerUnavailable, match=r"^fake:1: connection closed by the server$"):
        conn.recv(5)
    assert not conn.connected
    with pytest.raises(ServerUnavailable, match="not connected"):
        conn.send(Cmd.NOOP)


def test_non_blocking_queue_and_flush(pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = pair
    data = pack(Cmd.ECHO_REQ, b"x" * 100_000) * 20  # more than a socket buffer takes
    conn.enqueue(data)
    received = bytearray()
    peer.settimeout(5)
    while not conn.flush_nowait() or len(received) < len(data):
        received += peer.recv(1 << 20)
    assert conn.pending_output == 0
    assert bytes(received) == data


def test_connect_refused_message(unused_port: int) -> None:
    port = unused_port
    conn = Connection(ServerAddress("127.0.0.1", port))
    with pytest.raises(ServerUnavailable) as info:
        conn.connect()
    assert str(info.value) == f"127.0.0.1:{port}: connection refused"
    assert info.value.address == f"127.0.0.1:{port}"
    assert not conn.connected


def test_unresolvable_host() -> None:
    conn = Connection(ServerAddress("no-such-host.invalid", 4730), connect_timeout=2)
    with pytest.raises(ServerUnavailable, match=r"^no-such-host.invalid:4730: cannot resolve"):
        conn.connect()


def test_echo_round_trip_real_server(gearmand: GearmanServer) -> None:
    conn = Connection(gearmand.address)
    conn.connect()
    try:
        for data in ["plain", "ünïcödé ✓ \U0001f600", "\u0000nul inside"]:
            conn.send(Cmd.ECHO_REQ, data.encode())
            assert conn.recv(5) == Packet(Cmd.ECHO_RES, (data.encode(),))
        blob = bytes(range(256)) * 64
        conn.send(Cmd.ECHO_REQ, blob)
        assert conn.recv(5).args == (blob,)
        conn.send(Cmd.OPTION_REQ, b"exceptions")
        assert conn.recv(5) == Packet(Cmd.OPTION_RES, (b"exceptions",))
        # admin text commands work on the same connection between binary packets
        assert conn.admin("version")[0].startswith("OK 1.")
        conn.send(Cmd.ECHO_REQ, b"again")
        assert conn.recv(5).args == (b"again",)
    finally:
        conn.close()


def test_ten_megabyte_echo_real_server(gearmand: GearmanServer) -> None:
    conn = Connection(gearmand.address)
    conn.connect()
    try:
        big = ("€" * (5 * 1024 * 1024 // 3 * 2)).encode()  # ~10 MiB of 3-byte characters
        conn.send(Cmd.ECHO_REQ, big)
        assert conn.recv(30).args == (big,)
    finally:
        conn.close()


def test_admin_commands_real_server(gearmand: GearmanServer) -> None:
    address = gearmand.address
    assert admin_command(address, "version")[0].startswith("OK")
    assert server_status(address) == []
    conn = Connection(address)
    conn.connect()
    try:
        conn.send(Cmd.SUBMIT_JOB_BG, b"queued_fn", b"", b"{}")
        assert conn.recv(5).cmd == Cmd.JOB_CREATED
        conn.send(Cmd.GET_STATUS, b"H:nonexistent:1")
        status = conn.recv(5)
        assert status.cmd == Cmd.STATUS_RES
        assert status.args[1] == b"0"
    finally:
        conn.close()
    assert server_status(address) == [FunctionStatus("queued_fn", 1, 0, 0)]
    assert server_status(address)[0].queued == 1
    assert admin_command(address, "maxqueue queued_fn 5") == ["OK"]
    with pytest.raises(ProtocolError, match="admin command 'bogus' failed: ERR UNKNOWN_COMMAND"):
        admin_command(address, "bogus")
    with pytest.raises(ValueError, match="single line"):
        admin_command(address, "status\nshutdown")


def test_parse_status_rejects_junk() -> None:
    assert parse_status(["fn\t3\t1\t2"]) == [FunctionStatus("fn", 3, 1, 2)]
    with pytest.raises(ProtocolError, match="unexpected line"):
        parse_status(["fn 3 1 2"])


@pytest.fixture
def tcp_pair() -> Iterator[tuple[Connection, socket.socket]]:
    """A Connection over real loopback TCP (where SO_RCVLOWAT applies) and the server end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = Connection(ServerAddress("127.0.0.1", listener.getsockname()[1]))
        conn.connect()
        peer, _ = listener.accept()
    try:
        yield conn, peer
    finally:
        conn.close()
        peer.close()


def lowat(conn: Connection) -> int:
    with socket.socket(fileno=socket.dup(conn.fileno())) as sock:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


def test_exchange_with_hint_larger_than_the_answer(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    peer.sendall(pack_response(Cmd.JOB_CREATED, b"H:x:1"))  # less than the hint, nothing more
    cmd, args = conn.exchange(pack(Cmd.SUBMIT_JOB, b"f", b"", b"{}"), None, None, expect=1000)
    assert (cmd, args) == (Cmd.JOB_CREATED, (b"H:x:1",))
    assert peer.recv(100).startswith(MAGIC_REQ)
    # later waits (no hint) wake for any byte again
    peer.sendall(pack_response(Cmd.WORK_FAIL, b"H:x:1"))
    assert conn.recv(5) == Packet(Cmd.WORK_FAIL, (b"H:x:1",))
    assert lowat(conn) == 1


def test_exchange_with_hint_gets_both_packets(tcp_pair: tuple[Connection, socket.socket]) -> None:
    conn, peer = tcp_pair
    created = pack_response(Cmd.JOB_CREATED, b"H:x:2")
    peer.sendall(created + pack_response(Cmd.WORK_COMPLETE, b"H:x:2", b'"ok"'))
    first = conn.exchange(pack(Cmd.SUBMIT_JOB, b"f", b"", b"{}"), None, None, len(created) + 12)
    assert first == (Cmd.JOB_CREATED, (b"H:x:2",))
    assert conn.has_buffered()
    assert conn.next_packet(None) == (Cmd.WORK_COMPLETE, (b"H:x:2", b'"ok"'))
    assert lowat(conn) == len(created) + 12  # kept for the next job of the same kind


SUBMIT = pack(Cmd.SUBMIT_JOB, b"f", b"", b"{}")


def test_foreground_takes_job_created_and_result_in_one_read(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    created = pack_response(Cmd.JOB_CREATED, b"H:x:3")
    peer.sendall(created + pack_response(Cmd.WORK_COMPLETE, b"H:x:3", b'"ok\0"'))
    assert conn.foreground(SUBMIT, None, None, len(created) + 12) == (b"H:x:3", b'"ok\0"')
    assert peer.recv(100) == SUBMIT
    assert not conn.has_buffered()
    assert lowat(conn) == len(created) + 12  # kept for the next job of the same kind


@pytest.mark.parametrize(
    "answer",
    [
        # another job's result after JOB_CREATED (one abandoned earlier on this connection)
        [(Cmd.JOB_CREATED, (b"H:x:4",)), (Cmd.WORK_COMPLETE, (b"H:x:9", b"1"))],
        # a status update between them
        [
            (Cmd.JOB_CREATED, (b"H:x:4",)),
            (Cmd.WORK_STATUS, (b"H:x:4", b"1", b"2")),
            (Cmd.WORK_COMPLETE, (b"H:x:4", b"1")),
        ],
        # a failure, and a refusal
        [(Cmd.JOB_CREATED, (b"H:x:4",)), (Cmd.WORK_FAIL, (b"H:x:4",))],
        [(Cmd.ERROR, (b"ERR", b"no")), (Cmd.NOOP, ()), (Cmd.NOOP, ())],
        # the result of a handle that only starts like this one's
        [(Cmd.JOB_CREATED, (b"H:x:4",)), (Cmd.WORK_COMPLETE, (b"H:x:41", b"1"))],
    ],
)
def test_foreground_leaves_anything_else_to_next_packet(
    tcp_pair: tuple[Connection, socket.socket], answer: list[tuple[Cmd, tuple[bytes, ...]]]
) -> None:
    conn, peer = tcp_pair
    peer.sendall(b"".join(pack_response(cmd, *args) for cmd, args in answer))
    assert conn.foreground(SUBMIT, None, None, 24) is None
    assert [conn.next_packet(time.monotonic() + 5) for _ in answer] == answer
    assert not conn.has_buffered()


def test_foreground_result_still_arriving_is_read_by_next_packet(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    whole = pack_response(Cmd.JOB_CREATED, b"H:x:5") + pack_response(
        Cmd.WORK_COMPLETE, b"H:x:5", b"x" * 1000
    )
    peer.sendall(whole[:40])  # more than the hint: the wait ends, the result is not all here
    assert conn.foreground(SUBMIT, None, None, 30) is None
    peer.sendall(whole[40:])
    assert conn.next_packet(time.monotonic() + 5) == (Cmd.JOB_CREATED, (b"H:x:5",))
    assert conn.next_packet(time.monotonic() + 5) == (Cmd.WORK_COMPLETE, (b"H:x:5", b"x" * 1000))


def test_foreground_with_no_answer_yet_returns_after_the_hint_wait(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    assert conn.foreground(SUBMIT, time.monotonic() + 5, 5.0, 24) is None  # within HINT_WAIT_MS
    assert peer.recv(100) == SUBMIT
    peer.sendall(pack_response(Cmd.JOB_CREATED, b"H:x:6"))
    assert conn.next_packet(time.monotonic() + 5) == (Cmd.JOB_CREATED, (b"H:x:6",))


def test_foreground_server_gone_is_server_unavailable(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    peer.close()
    with pytest.raises(ServerUnavailable):
        conn.foreground(SUBMIT, time.monotonic() + 5, 5.0, 24)
    assert not conn.connected


def test_hint_is_cleared_for_admin_and_selectors(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    created = pack_response(Cmd.JOB_CREATED, b"H:x:3")
    peer.sendall(created + pack_response(Cmd.NOOP))
    hint = len(created) + 12
    conn.exchange(pack(Cmd.SUBMIT_JOB, b"f", b"", b"{}"), None, None, expect=hint)
    assert conn.next_packet(None) == (Cmd.NOOP, ())
    assert lowat(conn) == hint
    peer.sendall(b"OK\n")  # 3 bytes: an admin wait must see them
    assert conn.admin("maxqueue f 1", timeout=5) == ["OK"]
    assert lowat(conn) == 1
    conn.expect(500)
    conn.clear_hint()
    peer.sendall(pack_response(Cmd.NOOP))
    with selectors.DefaultSelector() as sel:
        sel.register(conn.fileno(), selectors.EVENT_READ)
        assert sel.select(5)
    assert conn.read_available() == [Packet(Cmd.NOOP, ())]


# -- oversize packets a worker skips ----------------------------------------------------------


@pytest.fixture
def skipping(pair: tuple[Connection, socket.socket]) -> tuple[Connection, socket.socket]:
    """``pair`` skipping oversize JOB_ASSIGN_UNIQ packets, max_packet_size 64 KiB."""
    conn, peer = pair
    conn.max_packet_size = 64 * 1024
    conn.skip_oversize = frozenset([Cmd.JOB_ASSIGN_UNIQ])
    return conn, peer


def read_until(conn: Connection, count: int) -> list[Packet]:
    """read_available() until `count` packets came (OversizePacket propagates)."""
    got: list[Packet] = []
    with selectors.DefaultSelector() as sel:
        sel.register(conn.fileno(), selectors.EVENT_READ)
        while len(got) < count:
            if not conn.has_buffered():
                assert sel.select(10), f"no data after {got}"
            got.extend(conn.read_available())
    return got


def test_oversize_assign_is_skipped_and_the_connection_kept(
    skipping: tuple[Connection, socket.socket],
) -> None:
    conn, peer = skipping
    workload = b'{"gearjob":1,"args":["' + b"x" * (3 << 20) + b'"]}'
    stream = (
        pack_response(Cmd.NOOP)
        + pack_response(Cmd.JOB_ASSIGN_UNIQ, b"H:x:7", b"resize", b"uq", workload)
        + pack_response(Cmd.NO_JOB)
    )
    writer = threading.Thread(target=peer.sendall, args=(stream,))
    writer.start()
    try:
        assert read_until(conn, 1) == [Packet(Cmd.NOOP, ())]
        with pytest.raises(OversizePacket) as info:
            read_until(conn, 1)
        assert read_until(conn, 1) == [Packet(Cmd.NO_JOB, ())]
    finally:
        writer.join()
    exc = info.value
    size = len(b"H:x:7\0resize\0uq\0") + len(workload)
    assert (exc.cmd, exc.size, exc.limit) == (Cmd.JOB_ASSIGN_UNIQ, size, 64 * 1024)
    assert exc.args_ == (b"H:x:7", b"resize", b"uq")
    assert workload.startswith(exc.head) and 0 < len(exc.head) <= 4096
    assert f"JOB_ASSIGN_UNIQ packet of {size} bytes, more than max_packet_size 65536" in str(exc)
    assert conn.connected
    assert not conn.has_buffered()
    copy = pickle.loads(pickle.dumps(exc))
    assert (str(copy), copy.cmd, copy.size, copy.args_) == (str(exc), exc.cmd, exc.size, exc.args_)


def test_oversize_packet_buffered_whole_with_packets_around_it(
    skipping: tuple[Connection, socket.socket],
) -> None:
    """The skipped packet already sits complete in the buffer between two others."""
    conn, peer = skipping
    conn.max_packet_size = 1024
    stream = (
        pack_response(Cmd.NOOP)
        + pack_response(Cmd.JOB_ASSIGN_UNIQ, b"H:x:8", b"f", b"", b"y" * 2000)
        + pack_response(Cmd.JOB_ASSIGN_UNIQ, b"H:x:9", b"f", b"", b"small")
    )
    peer.sendall(stream)
    assert conn.read_available() == [Packet(Cmd.NOOP, ())]
    assert conn.has_buffered()  # the oversize packet is there to be reported
    with pytest.raises(OversizePacket, match="packet of 2009 bytes"):
        conn.read_available()
    assert conn.has_buffered()
    assert conn.read_available() == [Packet(Cmd.JOB_ASSIGN_UNIQ, (b"H:x:9", b"f", b"", b"small"))]


def test_oversize_packet_without_leading_arguments_closes(
    skipping: tuple[Connection, socket.socket],
) -> None:
    conn, peer = skipping
    header = MAGIC_RES + struct.pack(">II", Cmd.JOB_ASSIGN_UNIQ, 1 << 20)
    peer.sendall(header + b"z" * 5000)  # no NUL in the first 4096 bytes: not a job
    with pytest.raises(ProtocolError, match="do not hold its leading arguments") as info:
        read_until(conn, 1)
    assert not isinstance(info.value, OversizePacket)
    assert not conn.connected


def test_oversize_packet_of_another_command_still_closes(
    skipping: tuple[Connection, socket.socket],
) -> None:
    conn, peer = skipping
    peer.sendall(MAGIC_RES + struct.pack(">II", Cmd.WORK_COMPLETE, 1 << 20) + b"H:1\0")
    with pytest.raises(ProtocolError, match=r"1048576 bytes announced.*connection closed"):
        read_until(conn, 1)
    assert not conn.connected


def test_skipping_needs_an_argument_to_skip() -> None:
    with pytest.raises(ValueError, match="NOOP packets cannot be skipped"):
        Connection(FAKE, skip_oversize=[Cmd.NOOP])


def test_wake_when_applies_only_with_nothing_buffered(
    tcp_pair: tuple[Connection, socket.socket],
) -> None:
    conn, peer = tcp_pair
    conn.wake_when(24)
    assert lowat(conn) == 24
    peer.sendall(pack_response(Cmd.NO_JOB) + pack_response(Cmd.NOOP)[:5])  # 17 bytes
    with selectors.DefaultSelector() as sel:
        sel.register(conn.fileno(), selectors.EVENT_READ)
        conn.wake_when(1)  # wakes at once: the bytes are there
        assert sel.select(5)
        assert conn.read_available() == [Packet(Cmd.NO_JOB, ())]
        conn.wake_when(24)  # a partial packet is buffered: 7 more bytes complete it
        assert lowat(conn) == 1
        peer.sendall(pack_response(Cmd.NOOP)[5:])
        assert sel.select(5)
    assert conn.read_available() == [Packet(Cmd.NOOP, ())]
