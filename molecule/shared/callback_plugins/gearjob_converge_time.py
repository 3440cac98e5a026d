"""Ansible callback: the wall time of a Molecule converge, in total and per role.

At the end of each run of a scenario's converge playbook it prints one line, for example

    stack: idempotent re-run 17.9 s, 0 changed (per role: gearjob_worker 7.1 s, ...)

"converge" for the first run of the scenario, "idempotent re-run" for the next ones (the
idempotence step of `molecule test`): a marker file in $MOLECULE_EPHEMERAL_DIRECTORY tells
them apart. The line is also appended to $GEARJOB_MOLECULE_REPORT when it is set, so that
scripts/molecule.sh prints it with the scenario's other figures. A figure, never a check:
the idempotence step itself fails on a changed task.

The time of a task (until the next one starts, or the run ends) counts for its role;
tasks outside a role count as "(play)". Enabled by .config/molecule/config.yml.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: gearjob_converge_time
type: aggregate
short_description: wall time of a Molecule converge, in total and per role
description:
  - Prints the wall time and the changed count of a converge, and the time of each role.
requirements:
  - enabled in callbacks_enabled
"""

MARKER = "gearjob-converged"


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gearjob_converge_time"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._converge = False
        self._start = 0.0
        self._current: str | None = None
        self._current_start = 0.0
        self._roles: dict[str, float] = {}

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._converge = Path(playbook._file_name).name == "converge.yml"
        self._start = time.monotonic()

    def _close_task(self, now: float) -> None:
        if self._current is not None:
            self._roles[self._current] = self._roles.get(self._current, 0.0) + (
                now - self._current_start
            )
            self._current = None

    def v2_playbook_on_task_start(
        self, task: Any, is_conditional: bool = False
    ) -> None:
        now = time.monotonic()
        self._close_task(now)
        role = getattr(task, "_role", None)
        self._current = role.get_name(include_role_fqcn=False) if role else "(play)"
        self._current_start = now

    # Ansible calls this one with the task alone.
    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def v2_playbook_on_stats(self, stats: Any) -> None:
        now = time.monotonic()
        self._close_task(now)
        if not self._converge:
            return
        changed = sum(stats.changed.values())
        ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
        marker = Path(ephemeral, MARKER) if ephemeral else None
        rerun = marker is not None and marker.exists()
        if marker is not None and not rerun and not stats.failures and not stats.dark:
            marker.write_text("converged\n", encoding="utf-8")
        roles = ", ".join(
            f"{name} {seconds:.1f} s"
            for name, seconds in sorted(self._roles.items(), key=lambda item: -item[1])
        )
        line = (
            f"{os.environ.get('MOLECULE_SCENARIO_NAME', 'converge')}: "
            f"{'idempotent re-run' if rerun else 'converge'} {now - self._start:.1f} s, "
            f"{changed} changed (per role: {roles})"
        )
        self._display.display(line)
        report = os.environ.get("GEARJOB_MOLECULE_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
