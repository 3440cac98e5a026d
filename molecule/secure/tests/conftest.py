"""Attach the journals of stunnel, the firewall and the workers to every failed test of the
secure scenario (``group``, the hosts of an inventory group, comes from the shared
gearjob_testinfra plugin)."""

from __future__ import annotations

import sys
from pathlib import Path

from gearjob_testinfra import attach_journals, group_journals

# The helpers shared with the stack and cluster scenarios.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stack" / "tests"))

JOURNALS = {
    "gearman_servers": "--unit gearman-tls --unit gearjob-firewall --unit gearman-job-server",
    "gearjob_workers": "--unit 'gearjob-worker@*'",
}
for _group, _units in JOURNALS.items():
    attach_journals(group_journals(_group, _units))
