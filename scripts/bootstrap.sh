#!/usr/bin/env bash
# Prepare this machine for the Ansible test harness (Molecule + testinfra):
#
#   * Debian packages: docker.io (unless a Docker engine is there), debootstrap,
#     python3-venv;
#   * a running Docker daemon (started in the background when `docker info`
#     fails; machines without systemd have no service manager to do it);
#   * .venv-ansible: the controller tools pinned in requirements-ansible.txt;
#   * .collections: the Ansible collections the roles and scenarios use, taken
#     out of the `ansible` release named in requirements-ansible.txt;
#   * .cache/collections/ansible_collections/gearjob/ops: a link to this checkout, so
#     that site.yml and the scenarios find the collection's filters (gearjob.ops.*);
#   * the systemd container images (scripts/build-image.sh); by default
#     gearjob-systemd:debian-12, more with GEARJOB_IMAGES="debian-12 debian-13".
#
# Idempotent and quiet; takes a few seconds when everything is in place.
# Needs root (apt-get, dockerd, debootstrap).
#
#   scripts/bootstrap.sh               # everything: deploy and run the Molecule tests
#   scripts/bootstrap.sh --controller  # only what deploying needs: python3-venv,
#                                      # .venv-ansible and .collections (no Docker, no images)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-ansible"
COLLECTIONS="$ROOT/.collections"
REQUIREMENTS="$ROOT/requirements-ansible.txt"
PYTHON="${GEARJOB_PYTHON:-/usr/bin/python3}"
COLLECTION_NAMES=(community.docker community.library_inventory_filtering_v1 community.mysql
    community.postgresql ansible.posix)

say() { echo "bootstrap: $*"; }
die() { echo "bootstrap: $*" >&2; exit 1; }

controller_only=false
case "${1:-}" in
    "") ;;
    --controller) controller_only=true ;;
    *) die "unknown argument '$1' (usage: scripts/bootstrap.sh [--controller])" ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and starts dockerd)"

# --- Debian packages ---------------------------------------------------------
wanted=(python3-venv ca-certificates)
if ! $controller_only; then
    wanted+=(debootstrap)
    command -v dockerd >/dev/null 2>&1 || wanted+=(docker.io)
fi
missing=()
for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Docker daemon -----------------------------------------------------------
if ! $controller_only && ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: /var/log/dockerd.log)"
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 20 /var/log/dockerd.log >&2; die "dockerd did not come up"; }
fi

# --- controller virtualenv -----------------------------------------------------
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the controller tools into .venv-ansible"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
fi

# --- collections -------------------------------------------------------------
release="$(sed -n 's/^# collections-from: //p' "$REQUIREMENTS")"
[ -n "$release" ] || die "requirements-ansible.txt names no '# collections-from: ansible==X' release"
cstamp="$COLLECTIONS/.release"
if [ "$(cat "$cstamp" 2>/dev/null)" != "$release ${COLLECTION_NAMES[*]}" ]; then
    say "extracting ${COLLECTION_NAMES[*]} from $release"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        "$release" -d "$tmp" >/dev/null
    rm -rf "$COLLECTIONS/ansible_collections"
    mkdir -p "$COLLECTIONS"
    "$VENV/bin/python" - "$tmp" "$COLLECTIONS" "${COLLECTION_NAMES[@]}" <<'EOF'
import sys
import zipfile
from pathlib import Path

source, target, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
wheel = next(source.glob("ansible-*.whl"))
prefixes = tuple("ansible_collections/{}/{}/".format(*name.split(".")) for name in names)
with zipfile.ZipFile(wheel) as archive:
    members = [m for m in archive.namelist() if m.startswith(prefixes)]
    found = {m.split("/")[1] + "." + m.split("/")[2] for m in members}
    lost = set(names) - found
    if lost:
        sys.exit(f"{wheel.name} holds no {', '.join(sorted(lost))}")
    archive.extractall(target, members)
EOF
    echo "$release ${COLLECTION_NAMES[*]}" >"$cstamp"
fi

# --- this checkout as the gearjob.ops collection ---------------------------------
link="$ROOT/.cache/collections/ansible_collections/gearjob/ops"
if [ "$(readlink "$link" 2>/dev/null)" != "../../../.." ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn ../../../.. "$link"
fi

# --- systemd images ----------------------------------------------------------
$controller_only && { say "ready (controller tools only)"; exit 0; }
for image in ${GEARJOB_IMAGES:-debian-12}; do
    case "$image" in
        debian-12) recipe=(debian bookworm) ;;
        debian-13) recipe=(debian trixie) ;;
        ubuntu-22.04) recipe=(ubuntu jammy) ;;
        ubuntu-24.04) recipe=(ubuntu noble) ;;
        *) die "no recipe for image '$image' (known: debian-12 debian-13 ubuntu-22.04 ubuntu-24.04)" ;;
    esac
    "$ROOT/scripts/build-image.sh" --quiet --name "gearjob-systemd:$image" "${recipe[@]}"
done
say "ready"
