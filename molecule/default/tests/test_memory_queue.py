"""The memory queue is what it says: queued jobs do not survive a crash of gearmand."""

from __future__ import annotations

import uuid
from typing import Any

from gearjob_testinfra import main_pid, status, wait_for_restart

testinfra_hosts = ["ansible://gearman_servers"]


def test_queued_jobs_are_lost_on_kill_9(host: Any, gearman_vars: dict[str, Any]) -> None:
    port = gearman_vars["gearman_server_port"]
    function = f"memory_{uuid.uuid4().hex[:10]}"
    host.check_output(f"printf 'a\\nb\\nc\\n' | gearman -h 127.0.0.1 -p {port} -f {function} -b -N")
    assert status(host, function, port) == (3, 0, 0)
    before = main_pid(host)
    host.check_output(f"kill -9 {before}")
    wait_for_restart(host, before, port)
    assert status(host, function, port) is None
