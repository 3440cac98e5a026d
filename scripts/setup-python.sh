#!/usr/bin/env bash
# Prepares this machine for the package tests: Debian packages (gearmand, gearman-tools, PHP with the
# gearman extension, stunnel for the TLS tests, libgearman for the C benchmark) and the virtualenv .venv
# with gearjob installed in editable mode plus its test and lint tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gearman-job-server gearman-tools php-cli php-gearman stunnel4 openssl libgearman-dev gcc
          python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup-python: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # gearman-job-server's postinst starts a gearmand on port 4730 where systemd runs; the tests use
    # their own gearmand processes on free ports, so that one is harmless.
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
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
