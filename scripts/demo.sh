#!/usr/bin/env bash
# Try gearjob with one command, on a Debian or Ubuntu machine with git and python3:
#
#   scripts/demo.sh          set up the demo (or bring it up to date) and run jobs through it
#   scripts/demo.sh --down   remove the demo container and its network
#
# It runs scripts/bootstrap.sh (Docker, the systemd container image, the Ansible virtualenv
# and collections), starts ONE systemd container on its own Docker network, provisions it
# with site.yml exactly as a real host - gearmand with an SQLite queue, two gearjob workers
# (systemd units gearjob-worker@1 and @2) serving the example jobs of examples/jobs, and the
# client - then submits a foreground job, a background job and a batch, and prints the
# results. Running it again converges the same container (nothing changes, nothing restarts).
#
# Needs root (Docker, apt-get). Environment:
#   GEARJOB_DEMO_NAME   container name (default gearjob-demo; the network is NAME-net)
#   GEARJOB_DEMO_IMAGE  image (default gearjob-systemd:debian-12)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${GEARJOB_DEMO_NAME:-gearjob-demo}"
NETWORK="$NAME-net"
IMAGE="${GEARJOB_DEMO_IMAGE:-gearjob-systemd:debian-12}"
STATE="$ROOT/.cache/$NAME"
INVENTORY="$STATE/inventory.yml"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }
usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }

down() {
    if docker container inspect "$NAME" >/dev/null 2>&1; then
        docker rm --force "$NAME" >/dev/null
        echo "demo.sh: removed the container $NAME"
    fi
    if docker network inspect "$NETWORK" >/dev/null 2>&1; then
        docker network rm "$NETWORK" >/dev/null
        echo "demo.sh: removed the network $NETWORK"
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    "") ;;
    --down)
        command -v docker >/dev/null 2>&1 || die "docker is not installed: nothing to remove"
        down
        exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and uses Docker): sudo $0"

say "Bootstrap: Docker, the systemd image, the Ansible tools (scripts/bootstrap.sh)"
case "$IMAGE" in
    gearjob-systemd:*) GEARJOB_IMAGES="${IMAGE#gearjob-systemd:}" "$ROOT/scripts/bootstrap.sh" ;;
    *) "$ROOT/scripts/bootstrap.sh" ;;
esac
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found"

say "Container $NAME on network $NETWORK"
if ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
    docker network create --label org.gearjob.demo="$NAME" "$NETWORK" >/dev/null
fi
if [ "$(docker container inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
    docker rm --force "$NAME" >/dev/null 2>&1 || true
    # systemd as PID 1, without --privileged (the same settings as the Molecule scenarios).
    docker run --detach --name "$NAME" --hostname "$NAME" --network "$NETWORK" \
        --label org.gearjob.demo="$NAME" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --cgroupns host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
        --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 \
        "$IMAGE" /lib/systemd/systemd >/dev/null
    echo "started $NAME"
else
    echo "$NAME is running already"
fi
state=""
for _ in $(seq 1 60); do
    state="$(docker exec "$NAME" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running|degraded) break ;; esac
    sleep 1
done
case "$state" in
    running|degraded) echo "systemd is $state" ;;
    *) docker logs --tail 30 "$NAME" >&2 || true; die "systemd in $NAME did not boot (state: ${state:-unknown})" ;;
esac

mkdir -p "$STATE"
cat >"$INVENTORY" <<EOF
# Throw-away inventory of scripts/demo.sh: one container that is job server, worker and client.
all:
  vars:
    ansible_connection: community.docker.docker
    ansible_become: false
  children:
    gearman_servers:
      hosts:
        $NAME: {}
      vars:
        gearman_server_queue_type: sqlite
    gearjob_workers:
      hosts:
        $NAME: {}
      vars:
        gearjob_worker_instances: 2
        gearjob_worker_packages:
          - $ROOT/examples/jobs
        gearjob_worker_jobs:
          my_module_hello_world: my_module.jobs:hello_world
          my_module_slow: my_module.jobs:slow
          my_module_fail: my_module.jobs:fail
          my_module_record: my_module.jobs:record
    gearjob_clients:
      hosts:
        $NAME: {}
EOF

say "ansible-playbook -i $INVENTORY site.yml"
cd "$ROOT"
"$ROOT/.venv-ansible/bin/ansible-playbook" -i "$INVENTORY" "$ROOT/site.yml"

run() {
    printf '\n$ %s\n' "$*"
    docker exec "$NAME" "$@"
}

say "Jobs"
run gearjob submit my_module_hello_world Danny
run gearjob submit --background my_module_record "demo at $(date +%H:%M:%S)"
sleep 1
run tail -n 1 /var/lib/gearjob/my_module.jsonl
batch="$(for _ in $(seq 1 10); do printf '{"job_name": "my_module_slow", "args": [0.2]}\n'; done)"
printf '\n$ gearjob batch - <<< "10 x my_module_slow 0.2 s"   (results: the PID of the worker that ran each)\n'
docker exec -i "$NAME" gearjob batch - <<<"$batch"
run gearjob status
pids="$(docker exec "$NAME" systemctl show --property MainPID --value gearjob-worker@1 gearjob-worker@2 | xargs)"
echo
echo "worker PIDs: $pids"

say "Done"
cat <<EOF
The demo runs in the container $NAME. Try:
  docker exec $NAME gearjob submit my_module_hello_world "${USER:-world}"
  docker exec $NAME gearjob submit my_module_fail; echo "exit code: \$?"
  docker exec $NAME journalctl -u 'gearjob-worker@*' -n 20
  docker exec -it $NAME bash
Run scripts/demo.sh again to re-apply site.yml (idempotent), or tear it down:
  scripts/demo.sh --down
EOF
