#!/usr/bin/env bash
# The device side on a real Python 3.9 (issue 17, item 7): a Debian bullseye userland
# (Python 3.9.2, stock pip 20.3) made with debootstrap and entered with chroot, where
#   pip install '.[agent]'   (what a Raspberry Pi / Jetson user runs) + the test tools,
#   pytest                   the agent's tests, the profiles' tests and a smoke test of
#                            every device-side `edgekit` command (tests/device_cli/).
# The chroot is cached outside the clone ($EDGEKIT_PY39_ROOT) and reused once complete
# (stamp file); the venv is made afresh on every run from pip's cache inside the chroot.
# Everything mounted is unmounted on exit, failure included. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${EDGEKIT_PY39_ROOT:-/var/cache/edgekit/bullseye-py39}
MIRROR=${EDGEKIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}
# Bump LAYOUT when PACKAGES change: a chroot without this layout's stamp is rebuilt.
LAYOUT=1
PACKAGES=python3,python3-venv,mosquitto,ca-certificates
STAMP="$ROOT/.edgekit-bullseye-layout-$LAYOUT"
TEST_TOOLS=("pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" "onnx>=1.16")
TESTS=(tests/edge_agent tests/hardware_profiles tests/device_cli)

if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then exec sudo -E bash "$0" "$@"; fi
  if [ "${EDGEKIT_PY39_REQUIRED:-0}" = 1 ]; then
    echo "py39: needs root or passwordless sudo (debootstrap, mount, chroot)" >&2; exit 1
  fi
  echo "py39: SKIPPED: needs root or passwordless sudo (CI runs it: .ci/run)"; exit 0
fi
SECONDS=0
MOUNTED=()

say() { echo "py39: $* (${SECONDS}s)"; }

mounts_under() {  # mount points at or below $1, deepest first
  findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r
}

unmount_under() {
  local m
  for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m"; done
}

stop_chroot_processes() {  # what the tests started in there (brokers, agents) and left
  local p sig
  for sig in TERM KILL; do
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && kill -"$sig" "${p#/proc/}" 2>/dev/null
    done
    [ "$sig" = TERM ] && sleep 1
  done
  return 0
}

cleanup() {
  stop_chroot_processes
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}"
  done
  if [ -n "$(mounts_under "$ROOT")" ]; then unmount_under "$ROOT"; fi
  return 0
}

build_root() {
  say "building the bullseye chroot at $ROOT (cached for later runs)"
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local partial="$ROOT.partial"
  unmount_under "$partial"  # a debootstrap killed half-way leaves its /proc mounted
  unmount_under "$ROOT"
  rm -rf --one-file-system "$partial" "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include="$PACKAGES" bullseye "$partial" "$MIRROR" \
    >"$partial.log" 2>&1 || { tail -30 "$partial.log"; unmount_under "$partial"; exit 1; }
  unmount_under "$partial"
  mv "$partial" "$ROOT"
  touch "$STAMP"
  say "chroot ready"
}

mount_into() {  # mount_into TARGET mount-args...
  local target="$ROOT/$1"; shift
  mount "$@" "$target"
  MOUNTED+=("$target")
}

enter() {  # run a command in the chroot with a clean environment
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/py39/bin:/usr/bin:/bin \
    EDGEKIT_TEST_TFLITE=/fixtures/tiny.tflite PYTHONDONTWRITEBYTECODE=1 \
    PIP_CERT=/etc/ssl/host-ca-certificates.crt "$@"
}

# One run at a time per chroot; with the lock held, whatever is still mounted there was
# left by a run that was killed (SIGKILL skips the trap): take it down first.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock -w 3600 9 || { echo "py39: another run holds $ROOT.lock" >&2; exit 1; }
trap cleanup EXIT  # only now: a run waiting for the lock must not touch the holder's mounts
trap 'exit 130' INT  # a signal ends the script through the EXIT trap (bash's default skips it)
trap 'exit 143' TERM HUP
if [ -n "$(mounts_under "$ROOT")" ]; then stop_chroot_processes; unmount_under "$ROOT"; fi
[ -f "$STAMP" ] || build_root

mount_into proc -t proc proc
mount_into sys -t sysfs sysfs
mount_into dev --bind /dev
mount --make-rslave "$ROOT/dev"  # nothing mounted below it reaches the host's /dev
mount_into dev/shm -t tmpfs -o mode=1777 shm
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's CA bundle: it trusts whatever the host's network needs (a TLS proxy) for PyPI.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"

# The working tree as git sees it (tracked + untracked, not ignored): no host venv, no caches.
rm -rf --one-file-system "$ROOT/src" "$ROOT/fixtures"
mkdir -p "$ROOT/src" "$ROOT/fixtures"
git ls-files -z -co --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null \
  | tar -xf - -C "$ROOT/src"
# What only the build side can make (litert-torch + torch): a TFLite model, made on the host.
"$HOST_PY" -c "import sys; from pathlib import Path; from tests.models import make_tiny_tflite;
make_tiny_tflite(Path(sys.argv[1]))" "$ROOT/fixtures/tiny.tflite" >"$ROOT/fixtures/make.log" 2>&1 \
  || { tail -20 "$ROOT/fixtures/make.log"; echo "py39: making the TFLite fixture failed" >&2; exit 1; }
say "source and fixtures copied in"

enter /bin/rm -rf /opt/py39
enter /usr/bin/python3 -m venv /opt/py39
enter /opt/py39/bin/pip --version
enter /bin/sh -c "cd /src && pip install -q --disable-pip-version-check '.[agent]' \
  $(printf "'%s' " "${TEST_TOOLS[@]}")"
say "venv: pip install '.[agent]' done"

enter /bin/sh -c "cd /tmp && python --version && edgekit --version"
enter /bin/sh -c "cd /src && exec python -m pytest -q -p no:cacheprovider ${TESTS[*]}"
