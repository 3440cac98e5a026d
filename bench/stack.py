"""The stack benchmark: the whole gearjob stack as site.yml provisions it, measured in place.

It starts ONE systemd container (like scripts/demo.sh), provisions it with site.yml as job
server (gearmand), worker host (gearjob-worker@1..W, serving the jobs of bench/stack_jobs) and
client, and times the full converge and an idempotent second run (whose changed count must be
0). Then, for each queue type (memory, sqlite, mysql = MariaDB, postgres = PostgreSQL, both in
the same container; each switch is a converge of site.yml with gearman_server_queue_type and the
database variables), bench/stack_agent.py measures inside the container, on the provisioned
gearmand:

- background: N jobs submitted by the C client (bench/gearbench.c) with every worker stopped,
  then drained by the W provisioned gearjob units, and N more drained by W C workers
  (gearbench worker): submit jobs/s, both drain rates and their ratio;
- foreground: M sequential jobs through the W units, by the C client and the gearjob client,
  and M through W C workers by the C client (the C pair, the reference for the gearjob pair):
  jobs/s, p50/p99 latency, and the pair's ratio;
- the resident memory of the idle units.

Then a foreground batch of CPU-bound jobs (stackbench_burn, MS ms of CPU each) through 1 and
through W units: the speedup. It prints the table, the targets met or MISSED, and exits 0 only
if every target is met. The container and its network are removed whatever happens.

Run it with bench/stack.sh, which runs scripts/bootstrap.sh and builds the C peer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STATE = ROOT / ".cache" / "gearjob-stackbench"
AGENT_DIR = "/opt/gearjob-stackbench"
AGENT_PYTHON = "/opt/gearjob/bin/python"
LABEL = "org.gearjob.stackbench"
QUEUES = ["memory", "sqlite", "mysql", "postgres"]
# Jobs per background case, as a fraction of --jobs: the database queues are 5-50x slower than
# the memory queue, and the same number of jobs would make them take most of the run.
QUEUE_SHARE = {"memory": 1.0, "sqlite": 0.1, "mysql": 0.25, "postgres": 0.25}
# The targets of the stack benchmark (issue 6).
DRAIN_RATIO = 0.9
FG_PAIR_RATIO = 0.9  # issue 16: the foreground pair (gearjob client and worker) against the C pair
SPEEDUP = 1.8
RERUN_SECONDS = 20.0


def say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)


def docker(*args: str, check: bool = True, capture: bool = False) -> str:
    out = subprocess.run(
        ["docker", *args], check=check, text=True, capture_output=capture, timeout=600
    )
    return out.stdout if capture else ""


class Container:
    def __init__(self, name: str, image: str):
        self.name, self.image, self.network = name, image, f"{name}-net"

    def start(self) -> None:
        self.remove()
        docker("network", "create", "--label", LABEL, self.network, capture=True)
        # systemd as PID 1 without --privileged: the settings of scripts/demo.sh and Molecule
        docker(
            "run", "--detach", "--name", self.name, "--hostname", self.name,
            "--network", self.network, "--label", LABEL,
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--cgroupns", "host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",
            self.image, "/lib/systemd/systemd",
            capture=True,
        )  # fmt: skip
        state = ""
        for _ in range(60):
            state = self.run("systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return
            time.sleep(1)
        raise RuntimeError(f"systemd in {self.name} did not boot (state: {state or 'unknown'})")

    def run(self, *cmd: str, check: bool = True) -> str:
        return docker("exec", self.name, *cmd, check=check, capture=True)

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False, capture=True)
        docker("network", "rm", self.network, check=False, capture=True)


def inventory(
    name: str, queue_type: str, args: argparse.Namespace, passwords: dict[str, str]
) -> dict:
    """The inventory of one queue type: the container is every group's host."""
    workers: dict[str, object] = {
        "gearjob_worker_instances": args.workers,
        "gearjob_worker_packages": [str(HERE / "stack_jobs")],
        "gearjob_worker_jobs": {
            "bench_echo": "gearjob_stackbench.jobs:echo",
            "stackbench_burn": "gearjob_stackbench.jobs:burn",
        },
    }
    if args.worker_log_level:
        workers["gearjob_worker_log_level"] = args.worker_log_level
    server: dict[str, object] = {"gearman_server_queue_type": queue_type}
    if queue_type in ("mysql", "postgres"):
        server |= {
            "gearman_server_manage_database": True,
            f"gearman_server_{queue_type}_host": "127.0.0.1",
            f"gearman_server_{queue_type}_password": passwords[queue_type],
        }
    host = {name: {}}
    groups: dict[str, dict] = {
        "gearman_servers": {"hosts": host, "vars": server},
        "gearjob_workers": {"hosts": host, "vars": workers},
        "gearjob_clients": {"hosts": host},
    }
    if queue_type in ("mysql", "postgres"):
        groups["gearman_queue_db"] = {
            "hosts": host,
            "vars": {
                "gearman_queue_db_listen_address": "127.0.0.1",
                "gearman_queue_db_allowed_networks": ["127.0.0.1/32"],
            },
        }
    connection: dict[str, object] = {"ansible_connection": "community.docker.docker"}
    if queue_type == "postgres":
        # The role becomes the postgres system user to create the queue database and its user
        # (an inventory ansible_become: false would override that task's become: true); the
        # container has no sudo, and su from root to root is harmless.
        connection |= {"ansible_become": True, "ansible_become_method": "ansible.builtin.su"}
    else:
        connection["ansible_become"] = False  # Ansible is root in the container already
    return {"all": {"vars": connection, "children": groups}}


def converge(label: str, inv: dict) -> tuple[float, int, float]:
    """Run site.yml with ``inv``: (seconds, changed tasks, CPU seconds of ansible-playbook and
    its children on the controller). The log goes to .cache/."""
    STATE.mkdir(parents=True, exist_ok=True)
    path = STATE / "inventory.json"
    path.write_text(json.dumps(inv, indent=2))
    path.chmod(0o600)
    log = STATE / f"{label}.log"
    say(f"ansible-playbook site.yml: {label} (log: {log.relative_to(ROOT)})")
    # The docker connection takes pipelining from the environment, not from ansible.cfg's
    # [ssh_connection] section, which gives it to real hosts.
    env = dict(
        os.environ,
        ANSIBLE_PIPELINING="true",
        ANSIBLE_FORCE_COLOR="false",
        # the time of each task, at the end of the log
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
    )
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [str(ROOT / ".venv-ansible/bin/ansible-playbook"), "-i", str(path), "site.yml"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    text = log.read_text()
    if proc.returncode:
        print(text[-3000:], file=sys.stderr)
        raise RuntimeError(f"site.yml failed ({label}), see {log}")
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", text.split("PLAY RECAP")[-1]))
    print(
        f"   {seconds:.1f} s ({cpu_s:.1f} s of CPU on the controller), changed={changed}",
        file=sys.stderr,
        flush=True,
    )
    return seconds, changed, cpu_s


def agent(box: Container, *args: str) -> dict[str, float]:
    out = subprocess.run(
        ["docker", "exec", box.name, AGENT_PYTHON, f"{AGENT_DIR}/stack_agent.py", *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=3600,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def install_agent(box: Container, c_peer: str) -> None:
    """Copy the agent, bench/run.py (whose helpers it uses), the peers and the C peer."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp, "stage")
        shutil.copytree(HERE / "peers", stage / "peers", ignore=shutil.ignore_patterns("__py*"))
        for name in ("run.py", "stack_agent.py"):
            shutil.copy(HERE / name, stage / name)
        shutil.copy(c_peer, stage / "gearbench")
        box.run("rm", "-rf", AGENT_DIR)
        docker("cp", f"{stage}/.", f"{box.name}:{AGENT_DIR}", capture=True)
    missing = [
        ln for ln in box.run("ldd", f"{AGENT_DIR}/gearbench").splitlines() if "not found" in ln
    ]
    if missing:
        raise RuntimeError(f"the C peer misses libraries in the container: {missing}")


def check(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report_variants(w: int, mem: dict[str, float], v: dict[str, float]) -> None:
    print(
        f"\nMemory queue, {mem['jobs']:,} jobs drained by {w} workers (variants: one run each):\n"
    )
    print("| drained by | jobs/s | / C |\n|---|---:|---:|")
    for label, rate in (
        (f"{w} C workers (median above)", mem["drain_c_jobs_s"]),
        (f"{w} gearjob-worker@ units as provisioned (median above)", mem["drain_gearjob_jobs_s"]),
        ("transient units, Type=notify, info (a summary a minute)", v["drain_notify_info_jobs_s"]),
        (
            "transient units, Type=notify, info, --log-each-job (a journal line per job)",
            v["drain_notify_info_each_job_jobs_s"],
        ),
        ("transient units, Type=exec, info", v["drain_exec_info_jobs_s"]),
        ("transient units, Type=notify, warning", v["drain_notify_warning_jobs_s"]),
        ("transient units, Type=exec, warning", v["drain_exec_warning_jobs_s"]),
    ):
        print(f"| {label} | {rate:,.0f} | {rate / mem['drain_c_jobs_s']:.2f}x |")


def report(args: argparse.Namespace, r: dict) -> bool:
    w = args.workers
    q = r["queues"]
    print(
        f"\nStack benchmark: one container provisioned by site.yml (gearmand -t 1, {w} gearjob "
        f"workers as systemd units, log level {args.worker_log_level or 'info'}), measured "
        f"inside it; {os.cpu_count()} cores, load average "
        f"{r['load_before']:.1f} before, {r['load_after']:.1f} after; median of {args.rounds} "
        f"round(s); wall time {r['wall_s'] / 60:.1f} min\n"
    )
    print("| per queue type | " + " | ".join(args.queues) + " |")
    print("|---|" + "---:|" * len(args.queues))
    rows = [
        ("background jobs per case", lambda f: f"{f['jobs']:,}"),
        ("bg submit, C client, jobs/s", lambda f: f"{f['submit_jobs_s']:,.0f}"),
        (f"bg drain, {w} gearjob units, jobs/s", lambda f: f"{f['drain_gearjob_jobs_s']:,.0f}"),
        (f"bg drain, {w} C workers, jobs/s", lambda f: f"{f['drain_c_jobs_s']:,.0f}"),
        (
            f"drain gearjob / C (target >= {DRAIN_RATIO}x)",
            lambda f: f"{f['ratio']:.2f}x {check(f['ratio'] >= DRAIN_RATIO)}",
        ),
        ("fg sequential, C client, jobs/s", lambda f: f"{f['fg_c_jobs_s']:,.0f}"),
        ("fg C client p50 / p99, ms", lambda f: f"{f['fg_c_p50_ms']:.2f} / {f['fg_c_p99_ms']:.2f}"),
        ("fg sequential, gearjob client, jobs/s", lambda f: f"{f['fg_gearjob_jobs_s']:,.0f}"),
        (
            "fg gearjob client p50 / p99, ms",
            lambda f: f"{f['fg_gearjob_p50_ms']:.2f} / {f['fg_gearjob_p99_ms']:.2f}",
        ),
        (
            "fg sequential, C pair (C client, C workers), jobs/s",
            lambda f: f"{f['fg_cpair_jobs_s']:,.0f}",
        ),
        (
            "fg C pair p50 / p99, ms",
            lambda f: f"{f['fg_cpair_p50_ms']:.2f} / {f['fg_cpair_p99_ms']:.2f}",
        ),
        (
            "fg pair, gearjob / C (median of the rounds' ratios)",
            lambda f: f"{f['fg_pair_ratio']:.2f}x",
        ),
        ("idle worker RSS after the jobs, MB", lambda f: f"{f['rss_mb']:.1f}"),
        ("converge to this queue type, s", lambda f: f"{f['converge_s']:.1f}"),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(q[t]) for t in args.queues) + " |")

    b = r["batch"]
    speedup_ok = b["speedup"] >= SPEEDUP
    rerun_ok = r["rerun_s"] < RERUN_SECONDS and r["rerun_changed"] == 0
    print("\n| stack | |\n|---|---:|")
    print(
        f"| full converge of site.yml (fresh container, memory queue), s (controller CPU) | "
        f"{r['converge_s']:.1f} ({r['converge_cpu_s']:.1f}) |"
    )
    print(
        f"| idempotent re-run, s (controller CPU) / changed | {r['rerun_s']:.1f} "
        f"({r['rerun_cpu_s']:.1f}) / {r['rerun_changed']} {check(rerun_ok)} |"
    )
    print(
        f"| CPU batch, {args.batch_jobs} x {args.burn_ms:g} ms, 1 unit, s | {b['batch_1_s']:.2f} |"
    )
    print(f"| CPU batch, {w} units, s | {b[f'batch_{w}_s']:.2f} |")
    print(f"| speedup (target >= {SPEEDUP}x) | {b['speedup']:.2f}x {check(speedup_ok)} |")
    print(f"| idle worker RSS, fresh units, MB | {r['rss_fresh_mb']:.1f} |")
    if "variants" in r:
        report_variants(w, q["memory"], r["variants"])

    checks = [
        (
            f"drain {t}: gearjob / C {q[t]['ratio']:.2f}x >= {DRAIN_RATIO}x",
            q[t]["ratio"] >= DRAIN_RATIO,
        )
        for t in args.queues
    ]
    checks += [
        (
            f"fg pair {t}: gearjob / C {q[t]['fg_pair_ratio']:.2f}x >= {FG_PAIR_RATIO}x",
            q[t]["fg_pair_ratio"] >= FG_PAIR_RATIO,
        )
        for t in args.queues
    ]
    checks += [
        (f"CPU batch speedup {b['speedup']:.2f}x >= {SPEEDUP}x with {w} workers", speedup_ok),
        (
            f"idempotent re-run {r['rerun_s']:.1f} s < {RERUN_SECONDS:g} s with "
            f"{r['rerun_changed']} changed (0 wanted)",
            rerun_ok,
        ),
    ]
    print()
    for label, ok in checks:
        print(f"{'met ' if ok else 'MISSED'} {label}")
    return all(ok for _, ok in checks)


def measure(args: argparse.Namespace, box: Container) -> dict:
    passwords = {t: secrets.token_hex(16) for t in ("mysql", "postgres")}
    r: dict = {"load_before": os.getloadavg()[0], "queues": {}}
    say(f"container {box.name} ({box.image}) on network {box.network}")
    box.start()
    r["converge_s"], _, r["converge_cpu_s"] = converge(
        "full-converge", inventory(box.name, "memory", args, passwords)
    )
    r["rerun_s"], r["rerun_changed"], r["rerun_cpu_s"] = converge(
        "idempotent-rerun", inventory(box.name, "memory", args, passwords)
    )
    install_agent(box, args.c_peer)
    fresh = agent(box, "rss")
    r["rss_fresh_mb"] = max(v for k, v in fresh.items() if k.endswith("_rss_mb"))
    for queue_type in args.queues:
        if queue_type == "memory":
            converge_s = r["converge_s"]
        else:
            converge_s, _, _ = converge(
                f"queue-{queue_type}", inventory(box.name, queue_type, args, passwords)
            )
        jobs = max(200, int(args.jobs * QUEUE_SHARE[queue_type]))
        say(f"{queue_type} queue: {jobs} background jobs per case, {args.fg_jobs} foreground")
        figures = agent(
            box, "queue", "--jobs", str(jobs), "--fg-jobs", str(args.fg_jobs),
            "--workers", str(args.workers), "--rounds", str(args.rounds),
        )  # fmt: skip
        figures |= {
            "jobs": jobs,
            "converge_s": converge_s,
            "ratio": figures["drain_gearjob_jobs_s"] / figures["drain_c_jobs_s"],
        }
        r["queues"][queue_type] = figures
        if queue_type == "memory":
            say("memory queue: what Type=notify, the log level and a journal line per job cost")
            r["variants"] = agent(
                box, "variants", "--jobs", str(jobs), "--workers", str(args.workers)
            )
    say(f"CPU-bound batch: {args.batch_jobs} x {args.burn_ms:g} ms, 1 vs {args.workers} units")
    r["batch"] = agent(
        box, "batch", "--jobs", str(args.batch_jobs), "--ms", str(args.burn_ms),
        "--workers", str(args.workers), "--rounds", str(args.rounds),
    )  # fmt: skip
    r["load_after"] = os.getloadavg()[0]
    return r


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--c-peer", required=True, help="path of the compiled gearbench binary")
    parser.add_argument(
        "--jobs",
        type=int,
        default=20_000,
        help="background jobs per case on the memory queue; mysql and postgres get a quarter,\n"
        "sqlite a tenth (default 20000)",
    )
    parser.add_argument(
        "--fg-jobs", type=int, default=3_000, help="sequential foreground jobs (default 3000)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker units W (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; medians (default 2)")
    parser.add_argument(
        "--batch-jobs", type=int, default=40, help="jobs of the CPU-bound batch (default 40)"
    )
    parser.add_argument(
        "--burn-ms", type=float, default=40, help="CPU ms per CPU-bound job (default 40)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run to try it: --jobs 5000 --fg-jobs 1000 --rounds 1 --batch-jobs 20",
    )
    parser.add_argument(
        "--queues",
        type=lambda text: text.split(","),
        default=QUEUES,
        help=f"the queue types to measure, comma-separated (default {','.join(QUEUES)});\n"
        "each one but memory costs a converge of site.yml",
    )
    parser.add_argument(
        "--worker-log-level",
        choices=["debug", "info", "warning", "error"],
        help="gearjob_worker_log_level of the units (default: the role's, info: a summary\n"
        "line per function a minute)",
    )
    parser.add_argument(
        "--name", default="gearjob-stackbench-host", help="container name (the network: NAME-net)"
    )
    parser.add_argument("--image", default="gearjob-systemd:debian-12")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    unknown = set(args.queues) - set(QUEUES)
    if unknown:
        parser.error(f"unknown queue type(s) {', '.join(sorted(unknown))}: choose from {QUEUES}")
    if args.quick:
        args.jobs, args.fg_jobs, args.rounds, args.batch_jobs = 5_000, 1_000, 1, 20

    box = Container(args.name, args.image)

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    start = time.perf_counter()
    try:
        results = measure(args, box)
    finally:
        say(f"removing {box.name} and {box.network}")
        box.remove()
    results["wall_s"] = time.perf_counter() - start
    (STATE / "results.json").write_text(json.dumps(results, indent=2))
    ok = report(args, results)
    if args.json:
        print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
