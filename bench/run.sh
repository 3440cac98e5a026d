#!/usr/bin/env bash
# Runs the benchmark: builds the C peer on libgearman, prepares .venv-bench (gearjob + python3-gearman),
# and prints the table. Usage: bench/run.sh [--jobs N] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -q -e ./worker python3-gearman==0.1.0
fi
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cc -O2 -Wall -Wextra -o "$build/gearbench" bench/gearbench.c -lgearman
.venv-bench/bin/python bench/run.py --c-peer "$build/gearbench" "$@"
