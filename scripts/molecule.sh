#!/usr/bin/env bash
# Run Molecule scenarios: create, prepare, converge, idempotence (zero changed
# tasks), verify (testinfra), destroy.
#
#   scripts/molecule.sh [--image IMAGE ...] [--keep-going|--fail-fast] SCENARIO...
#   scripts/molecule.sh [--image IMAGE ...] all  # every directory of molecule/ with a molecule.yml
#   scripts/molecule.sh --images debian-12,debian-13 all   # the same on each system in turn
#   scripts/molecule.sh lint                     # yamllint, ansible-lint, the workflow schema, role unit tests
#
#   --image IMAGE   container image of the hosts (default: $MOLECULE_IMAGE, else
#                   gearjob-systemd:debian-12); repeat it to run every scenario on
#                   each image in turn. gearjob-systemd:debian-12/-13 (and
#                   ubuntu-22.04/-24.04 where Ubuntu's archive is reachable) are
#                   built when missing
#   --images LIST   the same for gearjob-systemd:NAME, NAME from a comma-separated LIST
#
# Each scenario runs under a fresh MOLECULE_RUN_ID (container and network names
# carry it, so parallel runs never collide) and its containers and networks are
# removed whatever happens. Prints the wall time of each scenario and the
# figures the tests measured; exits non-zero if any scenario failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }  # the comment block at the top

IMAGES=()
KEEP_GOING=1
scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --image) [ $# -ge 2 ] || { usage >&2; exit 2; }; IMAGES+=("$2"); shift 2 ;;
        --image=*) IMAGES+=("${1#*=}"); shift ;;
        --images) [ $# -ge 2 ] || { usage >&2; exit 2; }
            for name in ${2//,/ }; do IMAGES+=("gearjob-systemd:$name"); done; shift 2 ;;
        --keep-going) KEEP_GOING=1; shift ;;
        --fail-fast) KEEP_GOING=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; echo "molecule.sh: unknown option $1" >&2; exit 2 ;;
        all)
            for f in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$f")")"); done
            shift ;;
        *) scenarios+=("$1"); shift ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || { usage >&2; exit 2; }

[ ${#IMAGES[@]} -gt 0 ] || IMAGES=("${MOLECULE_IMAGE:-gearjob-systemd:debian-12}")
GEARJOB_IMAGES=""
for image in "${IMAGES[@]}"; do
    case "$image" in
        gearjob-systemd:*) GEARJOB_IMAGES="$GEARJOB_IMAGES ${image#gearjob-systemd:}" ;;
    esac
done
GEARJOB_IMAGES="${GEARJOB_IMAGES# }" "$ROOT/scripts/bootstrap.sh" || exit 2
for image in "${IMAGES[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "molecule.sh: image $image not found" >&2; exit 2; }
done

export PATH="$ROOT/.venv-ansible/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 MOLECULE_NO_COLOR=1 NO_COLOR=1

run_lint() {
    # ansible-lint resolves gearjob.ops.* (molecule/default) in the collection built from here.
    local lint_collections
    lint_collections="$(mktemp -d /tmp/gearjob-lint.XXXXXX)"
    "$ROOT/scripts/install-collection.sh" "$lint_collections" >/dev/null || { rm -rf "$lint_collections"; return 1; }
    yamllint --strict . &&
        ANSIBLE_COLLECTIONS_PATH="$lint_collections:$ROOT/.collections" ansible-lint --profile production --offline &&
        check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml &&
        pytest -q -p no:cacheprovider molecule/shared/unit &&
        pytest -q -p no:cacheprovider roles/*/tests
    local rc=$?
    rm -rf "$lint_collections"
    return $rc
}

# Remove every container and network of one run, whatever state it is in.
cleanup_run() {
    local run_id="$1" ids
    ids="$(docker ps -aq --filter "label=org.gearjob.run=$run_id")"
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1
    ids="$(docker network ls -q --filter "label=org.gearjob.run=$run_id")"
    [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1
    return 0
}

current_run=""
current_tmp=""
on_exit() {
    [ -z "$current_run" ] || cleanup_run "$current_run"
    [ -z "$current_tmp" ] || rm -rf "$current_tmp"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

summary=()
failed=0
total=0
for IMAGE in "${IMAGES[@]}"; do
export MOLECULE_IMAGE="$IMAGE"
label=""
[ ${#IMAGES[@]} -eq 1 ] || label=" on ${IMAGE#gearjob-systemd:}"
for scenario in "${scenarios[@]}"; do
    if [ "$scenario" = lint ] && [ "$IMAGE" != "${IMAGES[0]}" ]; then continue; fi  # once
    total=$((total + 1))
    start=$(date +%s)
    figures=()
    if [ "$scenario" = lint ]; then
        echo "=== lint"
        run_lint
        rc=$?
    elif [ ! -f "molecule/$scenario/molecule.yml" ]; then
        echo "molecule.sh: no scenario molecule/$scenario" >&2
        rc=2
    else
        current_run="${MOLECULE_RUN_ID_PREFIX:-r}$(date +%s)$$${RANDOM}"
        current_tmp="$(mktemp -d /tmp/gearjob-molecule.XXXXXX)"
        echo "=== $scenario (image $IMAGE, run $current_run)"
        # A scenario that uses $GEARJOB_INSTALLED_COLLECTIONS (default) converges the roles
        # from the collection built and installed from this checkout, not from roles/.
        collections=""
        if grep -q GEARJOB_INSTALLED_COLLECTIONS "molecule/$scenario/molecule.yml"; then
            collections="$current_tmp/collections"
            mkdir -p "$collections/no-roles"
            if tarball="$("$ROOT/scripts/install-collection.sh" "$collections")"; then
                echo "collection: $tarball installed in $collections"
            else
                collections="$current_tmp/not-installed"  # the converge then fails on the first role
            fi
        fi
        GEARJOB_INSTALLED_COLLECTIONS="$collections" \
            MOLECULE_RUN_ID="$current_run" \
            MOLECULE_EPHEMERAL_DIRECTORY="$current_tmp/ephemeral" \
            GEARJOB_MOLECULE_REPORT="$current_tmp/figures" \
            molecule test -s "$scenario"
        rc=$?
        if [ $rc -ne 0 ]; then
            MOLECULE_RUN_ID="$current_run" MOLECULE_EPHEMERAL_DIRECTORY="$current_tmp/ephemeral" \
                molecule destroy -s "$scenario" >/dev/null 2>&1
        fi
        cleanup_run "$current_run"
        [ -f "$current_tmp/figures" ] && while IFS= read -r line; do figures+=("    $line"); done <"$current_tmp/figures"
        rm -rf "$current_tmp"
        current_run="" current_tmp=""
    fi
    elapsed=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then result=passed; else result="FAILED (rc $rc)"; failed=$((failed + 1)); fi
    summary+=("$(printf '%-10s %-16s %4d s' "$scenario" "$result" "$elapsed")$label" ${figures[@]+"${figures[@]}"})
    echo "=== $scenario$label: $result in ${elapsed} s"
    if [ $rc -ne 0 ] && [ $KEEP_GOING -eq 0 ]; then break 2; fi
done
done

echo
echo "scenario   result           wall time"
printf '%s\n' "${summary[@]}"
passed=$(( total - failed ))
echo "molecule: $passed passed, $failed failed"
[ $failed -eq 0 ]
