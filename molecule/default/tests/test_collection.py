"""The operator playbooks run as collection playbooks from the installed gearjob.ops
tarball (scripts/molecule.sh installs it; the converge used its roles by FQCN)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

testinfra_hosts = ["ansible://gearman_servers"]


def test_queue_status_runs_as_a_collection_playbook(host: Any) -> None:
    installed = Path(os.environ["GEARJOB_INSTALLED_COLLECTIONS"]) / "ansible_collections/gearjob/ops"
    assert (installed / "playbooks/queue_status.yml").is_file()
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    run = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "--inventory", str(inventory),
         "gearjob.ops.queue_status", "--extra-vars", "ansible_become=false"],  # root, no sudo
        capture_output=True, text=True, timeout=300, env=os.environ, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    # the play and its included task file (ansible/tasks/) from the installed collection
    assert "PLAY [Show the queues of the job servers]" in output
    assert "total: 0 queued" in output, output[-4000:]


def test_every_collection_playbook_loads_from_the_installed_tarball() -> None:
    installed = Path(os.environ["GEARJOB_INSTALLED_COLLECTIONS"]) / "ansible_collections/gearjob/ops"
    names = sorted(p.stem for p in (installed / "playbooks").glob("*.yml"))
    assert names == [
        "clear_queue", "queue_database", "queue_status", "restart_workers", "scale_workers",
        "site", "status", "stop_workers",
    ]  # fmt: skip
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    for name in names:
        run = subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")), "--inventory", str(inventory),
             "--syntax-check", f"gearjob.ops.{name}"],
            capture_output=True, text=True, timeout=120, env=os.environ, check=False,
        )  # fmt: skip
        assert run.returncode == 0, (name, run.stdout[-2000:], run.stderr[-2000:])
        assert str(installed / "playbooks" / f"{name}.yml") in run.stdout, (name, run.stdout)
