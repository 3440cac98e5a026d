#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, the package tests against real gearmand processes, and
# every Molecule scenario in systemd containers. Installs what it needs on a fresh Debian/Ubuntu machine.
# Among them: the gearjob.ops collection built and installed from its tarball (lint and the default
# scenario), promtool's unit tests of the alert rules, the dashboard's queries against a real
# Prometheus and the docs' snippets (package tests), the no-worker alert firing and resolving (stack).
#
# Usage: scripts/test.sh [--no-molecule] [--image IMAGE ...] [--images LIST] [SCENARIO ...]
#   --no-molecule   lint and package tests only (no docker needed)
#   --image IMAGE   run the scenarios on IMAGE (default gearjob-systemd:debian-12); repeatable
#   --images LIST   run them on each gearjob-systemd:NAME of a comma-separated LIST
#                   (debian-12,debian-13,ubuntu-22.04,ubuntu-24.04)
#   SCENARIO        run only these Molecule scenarios (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

molecule=1
image_args=()
scenarios=()
while (($#)); do
    case "$1" in
        --no-molecule) molecule=0 ;;
        --image) image_args+=(--image "$2"); shift ;;
        --images) image_args+=(--images "$2"); shift ;;
        -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;  # the comment block
        -*) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done

passed=0
failed=0
failures=()
step() {
    local name=$1; shift
    local start=$SECONDS
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - start)) s)"
    fi
}

scripts/setup-python.sh
if ((molecule)); then scripts/bootstrap.sh; fi

lint_python() {
    (cd worker && ../.venv/bin/ruff check . ../bench && ../.venv/bin/ruff format --check . ../bench && ../.venv/bin/mypy)
}
lint_ansible() {  # yamllint, ansible-lint, the workflow schema and the unit tests of the roles
    scripts/molecule.sh lint
}

step "lint: python (ruff, mypy --strict)" lint_python
if ((molecule)); then step "lint: ansible (yamllint, ansible-lint, workflow schema, role unit tests)" lint_ansible; fi
step "package tests (pytest, real gearmand)" .venv/bin/pytest -q worker/tests
if ((molecule)); then
    ((${#scenarios[@]})) || scenarios=(all)
    step "molecule: ${scenarios[*]}" scripts/molecule.sh "${image_args[@]}" "${scenarios[@]}"
fi

echo
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "suites: $passed passed, $failed failed"
((failed == 0))
