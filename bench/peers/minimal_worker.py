"""The least a Python Gearman worker can do per job: a floor for gearjob's worker, not a peer.

    python minimal_worker.py worker HOST PORT FUNCTION

One server, one function, no time limit, no reconnect, no signals, no checks: read the
JOB_ASSIGN_UNIQ, parse the Islandora envelope with json, call the function, send WORK_COMPLETE
and the next GRAB_JOB_UNIQ in one write; on NO_JOB, PRE_SLEEP and wait for the NOOP. Callgrind
on it (docs/benchmarks.md) tells how many instructions per job the interpreter needs at the
least, whatever a worker adds. Exits on SIGTERM (the default action).
"""

from __future__ import annotations

import json
import socket
import struct
import sys

from bench_jobs import echo

HEADER = struct.Struct(">4sII")
GRAB = HEADER.pack(b"\0REQ", 30, 0)  # GRAB_JOB_UNIQ
PRE_SLEEP = HEADER.pack(b"\0REQ", 4, 0)
ASSIGN, NO_JOB, NOOP = 31, 10, 6


def main(host: str, port: int, function: str) -> None:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    name = function.encode()
    sock.sendall(HEADER.pack(b"\0REQ", 1, len(name)) + name + GRAB)  # CAN_DO
    buf = b""
    while True:
        while len(buf) < 12 or len(buf) < 12 + HEADER.unpack_from(buf)[2]:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        _, cmd, size = HEADER.unpack_from(buf)
        body, buf = buf[12 : 12 + size], buf[12 + size :]
        if cmd == ASSIGN:
            handle, _function, _unique, workload = body.split(b"\0", 3)
            envelope = json.loads(workload)
            result = echo(*envelope["args"]).encode()
            reply = handle + b"\0" + result
            sock.sendall(HEADER.pack(b"\0REQ", 13, len(reply)) + reply + GRAB)  # WORK_COMPLETE
        elif cmd == NO_JOB:
            sock.sendall(PRE_SLEEP)
        elif cmd == NOOP:
            sock.sendall(GRAB)


if __name__ == "__main__":
    main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
