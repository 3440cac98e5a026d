#!/usr/bin/env bash
# Build a container image that boots systemd, for the Molecule scenarios.
#
#   scripts/build-image.sh DIST SUITE [MIRROR] [--keyring FILE] [--name IMAGE] [--force]
#
#   DIST      debian | ubuntu
#   SUITE     bookworm, trixie, jammy, noble, ...
#   MIRROR    package mirror (default: http://deb.debian.org/debian for debian,
#             http://archive.ubuntu.com/ubuntu for ubuntu)
#   --keyring FILE   keyring that signs the mirror's Release files (default: the
#             distribution's archive keyring under /usr/share/keyrings). The build
#             refuses to run without one: every package is verified.
#   --name IMAGE     image name (default: gearjob-systemd:DIST-VERSION, for example
#             gearjob-systemd:debian-12; the suite name when the version is unknown)
#   --force   rebuild even when the image exists and was built by this script as it is now
#   --quiet   say nothing when the image is up to date
#   --minimal leave out the database servers (MariaDB, PostgreSQL), which are
#             otherwise installed, disabled, to save the queue scenarios time
#
# The root file system comes from `debootstrap --variant=minbase` and is fed to
# `docker import`; nothing is pulled from a container registry. Needs root,
# debootstrap and docker. Takes about 80 s.
set -euo pipefail

die() { echo "build-image.sh: $*" >&2; exit 2; }

usage() { sed -n '2,22s/^# \{0,1\}//p' "$0"; }

DIST="" SUITE="" MIRROR="" KEYRING="" NAME="" FORCE=0 QUIET=0 MINIMAL=0
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --keyring) [ $# -ge 2 ] || die "--keyring needs a file"; KEYRING="$2"; shift 2 ;;
        --keyring=*) KEYRING="${1#*=}"; shift ;;
        --name) [ $# -ge 2 ] || die "--name needs an image name"; NAME="$2"; shift 2 ;;
        --name=*) NAME="${1#*=}"; shift ;;
        --force) FORCE=1; shift ;;
        --quiet) QUIET=1; shift ;;
        --minimal) MINIMAL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[ ${#positional[@]} -ge 2 ] && [ ${#positional[@]} -le 3 ] || { usage >&2; die "expected DIST SUITE [MIRROR]"; }
DIST="${positional[0]}" SUITE="${positional[1]}" MIRROR="${positional[2]:-}"

case "$DIST" in
    debian)
        MIRROR="${MIRROR:-http://deb.debian.org/debian}"
        KEYRING="${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
        COMPONENTS="main"
        FALLBACK_SCRIPT="sid"
        ;;
    ubuntu)
        MIRROR="${MIRROR:-http://archive.ubuntu.com/ubuntu}"
        KEYRING="${KEYRING:-/usr/share/keyrings/ubuntu-archive-keyring.gpg}"
        COMPONENTS="main,universe"
        FALLBACK_SCRIPT="gutsy"
        ;;
    *) die "DIST must be debian or ubuntu, not '$DIST'" ;;
esac

case "$SUITE" in
    bullseye) VERSION=11 ;; bookworm) VERSION=12 ;; trixie) VERSION=13 ;; forky) VERSION=14 ;;
    focal) VERSION=20.04 ;; jammy) VERSION=22.04 ;; noble) VERSION=24.04 ;;
    *) VERSION="$SUITE" ;;
esac
NAME="${NAME:-gearjob-systemd:${DIST}-${VERSION}}"

[ -r "$KEYRING" ] || die "keyring '$KEYRING' not found: pass --keyring FILE with the key that signs $MIRROR (unverified builds are refused)"
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v docker >/dev/null || die "docker is not installed (apt-get install docker.io)"

# Packages baked into the image: what systemd needs to boot, what Ansible needs
# to manage the host (python3, python3-apt), and the tools the tests read the
# host with (ss from iproute2, ps from procps). Everything the role itself needs
# is installed by the role.
INCLUDE="systemd,systemd-sysv,python3,python3-apt,iproute2,procps"
# The database servers of the queue scenarios take most of a scenario's time
# to install (PostgreSQL: ~40 s of dpkg and initdb), so they are in the image,
# installed but disabled: hosts that need one enable and start it (their
# apt tasks still run and find the package present).
PRESERVED_SERVICES="mariadb postgresql"
EXTRA_PACKAGES="mariadb-server postgresql"

# The image records a digest of its recipe; an image built from another recipe
# is rebuilt. Bump RECIPE when a change below alters what goes into the image.
RECIPE=4
SCRIPT_DIGEST="$(echo "$RECIPE $INCLUDE minimal=$MINIMAL $EXTRA_PACKAGES $MIRROR" | sha256sum | cut -c1-16)"
if [ "$FORCE" -eq 0 ] && current="$(docker image inspect -f '{{ index .Config.Labels "org.gearjob.build-script" }}' "$NAME" 2>/dev/null)" \
        && [ "$current" = "$SCRIPT_DIGEST" ]; then
    [ "$QUIET" -eq 1 ] || echo "build-image.sh: $NAME is up to date"
    exit 0
fi

# One build at a time on a machine (they are I/O and CPU heavy, and two builds
# of the same name would race).
exec 9>/var/lock/gearjob-build-image.lock
flock 9

SCRIPT="$SUITE"
[ -e "/usr/share/debootstrap/scripts/$SUITE" ] || SCRIPT="/usr/share/debootstrap/scripts/$FALLBACK_SCRIPT"

workdir="$(mktemp -d /var/tmp/gearjob-image.XXXXXX)"
cleanup() {
    mountpoint -q "$workdir/rootfs/proc" 2>/dev/null && umount "$workdir/rootfs/proc"
    rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT
rootfs="$workdir/rootfs"

start=$(date +%s)
echo "build-image.sh: debootstrap $DIST $SUITE from $MIRROR into $NAME"
# Downloaded packages are kept for the next build of the same suite.
cache="/var/cache/gearjob-debootstrap/$DIST-$SUITE"
mkdir -p "$cache"
if ! debootstrap --variant=minbase --keyring="$KEYRING" --components="$COMPONENTS" --cache-dir="$cache" \
        --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" "$SCRIPT" >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi

if [ "$MINIMAL" -eq 0 ]; then
    # Installed with every service start refused (policy-rc.d), then disabled.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    mount -t proc proc "$rootfs/proc"
    if ! { chroot "$rootfs" apt-get update -qq &&
           chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
               --no-install-recommends $EXTRA_PACKAGES; } >"$workdir/extra.log" 2>&1; then
        umount "$rootfs/proc"
        tail -n 30 "$workdir/extra.log" >&2
        die "installing $EXTRA_PACKAGES failed"
    fi
    umount "$rootfs/proc"
    chroot "$rootfs" systemctl disable $PRESERVED_SERVICES >/dev/null 2>&1
    rm -f "$rootfs/usr/sbin/policy-rc.d"
fi

# Package sources inside the image: the same mirror, plus the updates suite.
{
    echo "deb $MIRROR $SUITE ${COMPONENTS//,/ }"
    echo "deb $MIRROR $SUITE-updates ${COMPONENTS//,/ }"
    if [ "$DIST" = ubuntu ]; then
        echo "deb $MIRROR $SUITE-security ${COMPONENTS//,/ }"
    elif [ "$MIRROR" = "http://deb.debian.org/debian" ]; then
        echo "deb http://deb.debian.org/debian-security $SUITE-security main"
    fi
} >"$rootfs/etc/apt/sources.list"

# Smaller and faster package installs in throw-away test hosts.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-gearjob-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/01-gearjob-nolanguages"
# No fsync for every unpacked file: these hosts live for minutes, and package
# installs inside a container's overlay file system run about twice as fast.
echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/02-gearjob-unsafe-io"

# systemd generates a machine id at first boot; units that cannot work in a
# container are masked so the system reaches "running", not "degraded".
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
for unit in getty.target console-getty.service systemd-logind.service \
        systemd-remount-fs.service dev-hugepages.mount sys-fs-fuse-connections.mount \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
        systemd-firstboot.service systemd-udevd.service systemd-modules-load.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
ln -sf /lib/systemd/system/multi-user.target "$rootfs/etc/systemd/system/default.target"

chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/debootstrap "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# No package lists in the image: make them look stale, so that Ansible's
# apt cache_valid_time refreshes them on first use.
touch -d @0 "$rootfs/var/lib/apt/lists"

previous="$(docker image inspect -f '{{ .Id }}' "$NAME" 2>/dev/null || true)"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change "LABEL org.gearjob.build-script=$SCRIPT_DIGEST" \
    --change "LABEL org.gearjob.source=$DIST-$SUITE" \
    - "$NAME" >/dev/null
# The image this one replaces, unless a container still uses it.
[ -z "$previous" ] || docker rmi "$previous" >/dev/null 2>&1 || true
echo "build-image.sh: built $NAME in $(( $(date +%s) - start )) s"
