#!/usr/bin/env bash
# Command jobs: gearjob's worker (--exec) beside the C `gearman -w -- CMD` worker.
# Usage: bench/commands.sh [--jobs N] [--rounds N] [--processes 1,2,4] [--syscalls]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh >/dev/null
.venv/bin/python bench/commands.py "$@"
