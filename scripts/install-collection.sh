#!/usr/bin/env bash
# Build the gearjob.ops Ansible collection from this checkout and install the tarball, offline,
# into a collections path, the way a user installs it:
#
#   scripts/install-collection.sh DIR
#
# makes DIR/gearjob-ops-VERSION.tar.gz (`ansible-galaxy collection build`) and installs it with
# `ansible-galaxy collection install --offline -p DIR`, so that DIR/ansible_collections/gearjob/ops
# holds the roles (gearjob.ops.gearman_server, ...) and the playbooks (gearjob.ops.site, ...).
# The collections it depends on (community.mysql, community.postgresql) are taken from the
# configured collections path (.collections, made by scripts/bootstrap.sh): nothing is fetched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 1 ] || { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
dest="$1"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
galaxy="$ROOT/.venv-ansible/bin/ansible-galaxy"
[ -x "$galaxy" ] || galaxy=ansible-galaxy
version="$(sed -n 's/^version: *//p' "$ROOT/galaxy.yml")"
tarball="$dest/gearjob-ops-$version.tar.gz"
rm -f "$tarball"
run() {  # quiet unless it fails
    local out
    out="$(cd "$ROOT" && "$@" 2>&1)" || { printf '%s\n' "$out" >&2; echo "install-collection: $* failed" >&2; exit 1; }
}
run "$galaxy" collection build --force --output-path "$dest"
# galaxy.yml's build_ignore must keep tests, scenarios, benchmarks and caches out
stray="$(tar tzf "$tarball" | grep -E '(^|/)(tests|molecule|bench|scripts|\.venv[^/]*|\.[a-z]+_cache|__pycache__|[^/]*\.egg-info)/' | head -5)" || true
[ -z "$stray" ] || { echo "install-collection: $tarball holds what build_ignore should keep out:" >&2
    echo "$stray" >&2; exit 1; }
run "$galaxy" collection install --offline --force -p "$dest" "$tarball"
[ -f "$dest/ansible_collections/gearjob/ops/MANIFEST.json" ] || {
    echo "install-collection: $tarball did not install into $dest" >&2; exit 1; }
echo "$tarball"
