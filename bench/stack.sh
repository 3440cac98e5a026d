#!/usr/bin/env bash
# The stack benchmark: provisions ONE systemd container with site.yml (gearmand, gearjob workers,
# client), times the converge and an idempotent re-run, measures background submit and drain for
# each queue type (memory, sqlite, MariaDB, PostgreSQL) with the provisioned workers and with C
# libgearman workers, foreground jobs, a CPU-bound batch on 1 vs 2 workers and the workers' memory,
# and prints the table with the targets. Exit 0 only if every target is met.
#
#   bench/stack.sh            the full run (10-15 minutes on 2 shared cores)
#   bench/stack.sh --quick    a short run to try it
#   bench/stack.sh --help     every option (bench/stack.py)
#
# Needs root (Docker; scripts/bootstrap.sh installs what is missing). The container and its network
# (gearjob-stackbench-host, gearjob-stackbench-host-net) are removed whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
# GEARJOB_STACKBENCH_NAME: another container name, for runs beside another one on the same host
NAME=${GEARJOB_STACKBENCH_NAME:-gearjob-stackbench-host}
for arg in "$@"; do
    case "$arg" in -h|--help) exec python3 bench/stack.py --help ;; esac
done
[ "$(id -u)" -eq 0 ] || { echo "stack.sh: run as root (Docker, apt-get): sudo $0" >&2; exit 1; }
GEARJOB_IMAGES=debian-12 scripts/bootstrap.sh
build=$(mktemp -d)
cleanup() {
    docker rm --force "$NAME" >/dev/null 2>&1 || true
    docker network rm "$NAME-net" >/dev/null 2>&1 || true
    rm -rf "$build"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# The image is Debian 12 like this machine: the binary runs there against the libgearman8 that
# gearman-tools (installed by the gearman_server role) depends on; bench/stack.py checks with ldd.
cc -O2 -Wall -Wextra -o "$build/gearbench" bench/gearbench.c -lgearman
python3 bench/stack.py --name "$NAME" --c-peer "$build/gearbench" "$@"
