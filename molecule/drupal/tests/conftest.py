"""Attach the workers' journals to every failed test of the drupal scenario (``group``, the
hosts of an inventory group, comes from the shared gearjob_testinfra plugin)."""

from __future__ import annotations

import sys
from pathlib import Path

from gearjob_testinfra import attach_journals, group_journals

# The helpers shared with the stack scenario.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stack" / "tests"))

attach_journals(group_journals("gearjob_workers", "--unit 'gearjob-worker@*'"))
