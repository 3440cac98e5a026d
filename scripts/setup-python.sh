#!/usr/bin/env bash
# Prepares this machine for the package tests: Debian packages (gearmand, gearman-tools, PHP with the
# gearman extension, stunnel for the TLS tests, MariaDB and PostgreSQL for the persistent-queue tests,
# libgearman for the C benchmark, Prometheus and node_exporter for the alert rules and the dashboard)
# and the virtualenv .venv with gearjob installed in editable mode plus its test and lint tools.
# Idempotent.
#
# The servers these packages bring are not started: the tests run their own throwaway gearmand,
# MariaDB, PostgreSQL and Prometheus processes on free ports, so the install keeps services from
# starting.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gearman-job-server gearman-tools php-cli php-gearman stunnel4 openssl libgearman-dev gcc
          python3-venv mariadb-server mariadb-client postgresql postgresql-client prometheus
          prometheus-node-exporter)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup-python: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # A policy-rc.d that says "no" keeps dpkg from starting gearmand, MariaDB and PostgreSQL.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
        "${sudo_cmd[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
        || status=$?
    if ((own_policy)); then "${sudo_cmd[@]}" rm -f "$policy"; fi
    ((status == 0)) || { echo "setup-python: apt-get install failed ($status)" >&2; exit "$status"; }
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup-python: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=.venv/.gearjob-installed
if [ ! -f "$stamp" ] || [ worker/pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e './worker[dev]'
    touch "$stamp"
fi
