"""What the job-context hook costs a worker: instructions per job (valgrind's callgrind) of
the worker daemon of this tree and of a baseline revision, side by side, with their ratio.

    .venv/bin/python bench/hook_cost.py --baseline REV

REV is a git revision without the change to measure (say, the commit before it). Each
worker serves the benchmark's echo job (bench/peers/bench_jobs.py), which does not use
``gearjob.current_job()``; gearjob's client drives both (its instructions are not counted).
Per job: the difference of a run of 1,300 and one of 300 jobs, over 1,000 (start-up is not
counted), for foreground jobs and for a drained queue of background jobs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import FUNCTION, PEERS, Stack, worker_instructions  # noqa: E402


def export(revision: str, into: Path) -> Path:
    """The worker/ package of ``revision`` in ``into`` (git archive, no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", revision, "worker/gearjob"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "worker"


def stack(name: str, package: Path) -> Stack:
    path = os.pathsep.join((str(package), str(PEERS)))
    worker = [sys.executable, "-m", "gearjob", "worker", "--server", "127.0.0.1:{port}"]
    worker += ["--job", f"{FUNCTION}=bench_jobs:echo", "--log-level", "warning"]
    return Stack(name, worker, [], dict(os.environ, PYTHONPATH=path))


def per_job(worker: Stack, driver: Stack, mode: str) -> float:
    runs = [worker_instructions(worker, driver, mode, n) for n in (300, 1300)]
    return (runs[1] - runs[0]) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision without the change")
    args = parser.parse_args()
    driver = Stack(
        "driver", [], [sys.executable, str(PEERS / "gearjob_peer.py")], stack("", HERE).env
    )
    driver.env["PYTHONPATH"] = os.pathsep.join((str(HERE.parent / "worker"), str(PEERS)))
    with tempfile.TemporaryDirectory() as tmp:
        baseline = stack(args.baseline, export(args.baseline, Path(tmp)))
        current = stack("this tree", HERE.parent / "worker")
        print("| per job, instructions | baseline | this tree | ratio |")
        print("|---|---:|---:|---:|")
        for mode, label in (("fg", "worker, foreground job"), ("bg", "worker, drained bg job")):
            before = per_job(baseline, driver, mode)
            after = per_job(current, driver, mode)
            print(f"| {label} | {before:,.0f} | {after:,.0f} | {after / before:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
