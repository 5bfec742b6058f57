#!/usr/bin/env bash
# The device side on a real Python 3.9 (issue 17, item 7): a Debian bullseye userland
# (Python 3.9.2, stock pip 20.3) made with debootstrap and entered with chroot, where
#   pip install '.[agent]'   (what a Raspberry Pi / Jetson user runs) + the test tools,
#   pytest                   the profiles' tests and a smoke test of every device-side
#                            `edgekit` command (tests/device_cli/) with nothing else there
#                            (no onnx, no torch: their tiny models are made on the host);
#   pip install onnx, pytest then the agent's tests, which write ONNX model variants.
# The chroot is cached outside the clone ($EDGEKIT_PY39_ROOT) and reused once complete
# (stamp file); the venv is made afresh on every run from pip's cache inside the chroot.
# Everything mounted is unmounted on exit, failure included. Needs root (or sudo).
# The host's network settings go in with it: proxy variables, pip's index settings
# (PIP_* and its config files; a local file:// index or find-links folder is bind-mounted
# read-only at the same path). The Debian mirror is the host's own (its apt sources) where
# it still serves bullseye, else archive.debian.org; $EDGEKIT_DEBIAN_MIRROR overrides both.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# Canonical (symlinks resolved): it is compared with /proc/PID/root and findmnt's targets.
ROOT=$(realpath -m "${EDGEKIT_PY39_ROOT:-/var/cache/edgekit/bullseye-py39}")
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}
# Bump LAYOUT when PACKAGES change: a chroot without this layout's stamp is rebuilt.
LAYOUT=1
PACKAGES=python3,python3-venv,mosquitto,ca-certificates
STAMP="$ROOT/.edgekit-bullseye-layout-$LAYOUT"
TEST_TOOLS=("pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100")
# Run with '.[agent]' + TEST_TOOLS only: a device command needing anything more fails here.
DEVICE_TESTS=(tests/hardware_profiles tests/device_cli)
# The agent's tests write ONNX model variants (seeds, NaN, slow) on the fly: onnx, then them.
MODEL_TOOLS=("onnx>=1.16")
AGENT_TESTS=(tests/edge_agent)
PROXY_VARS=(http_proxy https_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY)
PIP_VARS=(PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST PIP_NO_INDEX
          PIP_CONSTRAINT PIP_DEFAULT_TIMEOUT PIP_RETRIES)

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
  for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

stop_chroot_processes() {  # what the tests (or a debootstrap) started in there and left
  local p sig root
  for sig in TERM KILL; do
    for p in /proc/[0-9]*; do
      root=$(readlink "$p/root" 2>/dev/null) || continue
      if [ "$root" = "$ROOT" ] || [ "$root" = "$ROOT.partial" ]; then
        kill -"$sig" "${p#/proc/}" 2>/dev/null || true
      fi
    done
    [ "$sig" = TERM ] && sleep 1
  done
  return 0
}

cleanup() {  # runs under set -e: no step may stop it half-way
  stop_chroot_processes || true
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
  done
  unmount_under "$ROOT" || true
  unmount_under "$ROOT.partial" || true  # a debootstrap stopped half-way
  return 0
}

debian_mirrors() {  # the host's Debian archive URIs (apt sources: one-line and deb822)
  local f
  {
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                       print $i }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         { deb = 0; on = 1; uris = ""
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
             if ($i ~ /^Enabled:[ \t]*no/) on = 0
             if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
           }
           if (deb && on) { n = split(uris, u, /[ \t]+/); for (j = 1; j <= n; j++) print u[j] } }' "$f"
  done
  } | grep -E '^(https?|ftp)://[^ ]*/debian(/[0-9]{8}T[0-9]{6}Z)?/?$' | sed 's:/*$::'
}

serves_bullseye() {  # serves_bullseye MIRROR
  local url="$1/dists/bullseye/Release"
  if command -v curl >/dev/null; then
    curl -fsSL --max-time 30 -o /dev/null "$url" 2>/dev/null
  else
    "$HOST_PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)" \
      "$url" >/dev/null 2>&1
  fi
}

pick_mirror() {
  if [ -n "${EDGEKIT_DEBIAN_MIRROR:-}" ]; then echo "$EDGEKIT_DEBIAN_MIRROR"; return; fi
  local m
  for m in $(debian_mirrors | awk '!seen[$0]++'); do
    if serves_bullseye "$m"; then echo "$m"; return; fi
  done
  echo http://archive.debian.org/debian  # bullseye once it has left the mirrors
}

build_root() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg mirror
  mirror=$(pick_mirror)
  say "building the bullseye chroot at $ROOT from $mirror (cached for later runs)"
  if ! command -v debootstrap >/dev/null || [ ! -f "$keyring" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap debian-archive-keyring \
      >/dev/null
  fi
  local partial="$ROOT.partial"
  unmount_under "$partial"  # a debootstrap killed half-way leaves its /proc mounted
  unmount_under "$ROOT"
  rm -rf --one-file-system "$partial" "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --include="$PACKAGES" --keyring="$keyring" \
    bullseye "$partial" "$mirror" \
    >"$partial.log" 2>&1 || { tail -30 "$partial.log"; unmount_under "$partial"; exit 1; }
  unmount_under "$partial"
  mv "$partial" "$ROOT"
  touch "$STAMP"
  say "chroot ready"
}

mount_into() {  # mount_into TARGET mount-args...
  local target="$ROOT/${1#/}"; shift
  mount "$@" "$target"
  MOUNTED+=("$target")
}

# What of the host's environment goes in: its proxies and pip's index settings.
PASS_ENV=()
for v in "${PROXY_VARS[@]}" "${PIP_VARS[@]}"; do
  if [ -n "${!v:-}" ]; then PASS_ENV+=("$v=${!v}"); fi
done

enter() {  # run a command in the chroot with a clean environment
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/py39/bin:/usr/bin:/bin \
    EDGEKIT_TEST_TFLITE=/fixtures/tiny.tflite EDGEKIT_TEST_ONNX=/fixtures/tiny.onnx \
    PYTHONDONTWRITEBYTECODE=1 PIP_CERT=/etc/ssl/host-ca-certificates.crt "${PASS_ENV[@]}" "$@"
}

pip_configs() {  # "HOST-FILE CHROOT-PATH" of each pip config file the host's pip reads
  local home f dirs
  if [ -f /etc/pip.conf ]; then echo "/etc/pip.conf /etc/pip.conf"; fi
  IFS=: read -ra dirs <<<"${XDG_CONFIG_DIRS:-/etc/xdg}"
  for f in "${dirs[@]/%//pip/pip.conf}"; do  # the first of them; inside, the default one
    if [ -f "$f" ]; then echo "$f /etc/xdg/pip/pip.conf"; break; fi
  done
  # The invoking user's (sudo -E may keep or reset HOME): inside, root's (HOME=/root).
  for home in "${HOME:-}" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)"; do
    for f in "$home/.config/pip/pip.conf" "$home/.pip/pip.conf"; do
      if [ -n "$home" ] && [ -f "$f" ]; then echo "$f /root/.config/pip/pip.conf"; return; fi
    done
  done
}

# The local paths pip's settings name: "dir PATH" (an index or find-links folder; a PEP 503
# index's files lie beside its simple/ folder, so a .../simple index brings its parent) or
# "file PATH" (a constraints file).
PIP_PATHS_PY='
import configparser, os, sys
from urllib.parse import unquote, urlparse

def local(item):
    if item.startswith("file:"):
        return unquote(urlparse(item).path)
    return item if item.startswith("/") else None

def emit(kind, value):
    for item in value.split():
        path = local(item)
        if not path:
            continue
        path = os.path.normpath(path)
        if kind == "file":
            if os.path.isfile(path):
                print("file", path)
            continue
        if os.path.isfile(path):  # a find-links page: its folder holds what it links
            path = os.path.dirname(path)
        if kind == "index" and os.path.basename(path) == "simple":
            path = os.path.dirname(path)
        if os.path.isdir(path):
            print("dir", path)

KINDS = {"index-url": "index", "extra-index-url": "index", "find-links": "links",
         "constraint": "file"}
for name in sys.argv[1:]:
    config = configparser.RawConfigParser()
    config.read(name)
    for section in config.sections():
        for key, value in config.items(section):
            kind = KINDS.get(key.replace("_", "-"))
            if kind:
                emit(kind, value)
for var, kind in (("PIP_INDEX_URL", "index"), ("PIP_EXTRA_INDEX_URL", "index"),
                  ("PIP_FIND_LINKS", "links"), ("PIP_CONSTRAINT", "file")):
    emit(kind, os.environ.get(var, ""))
'

pip_setup() {  # the host's pip configs, and the local folders they name, into the chroot
  local host inside kind path configs=()
  rm -f "$ROOT/etc/pip.conf" "$ROOT/etc/xdg/pip/pip.conf" "$ROOT/root/.config/pip/pip.conf"
  while read -r host inside; do
    mkdir -p "$(dirname "$ROOT$inside")"
    cp "$host" "$ROOT$inside"
    configs+=("$host")
  done < <(pip_configs)
  while read -r kind path; do
    if [ "$kind" = file ]; then
      mkdir -p "$(dirname "$ROOT$path")"; cp "$path" "$ROOT$path"; continue
    fi
    # Never hide the chroot's own files (only an empty or new folder is mounted over) nor
    # reach outside it (a symlink in there pointing out).
    case $(realpath -m "$ROOT$path") in "$ROOT"/*) ;; *)
      echo "py39: not mounting $path: it leads outside the chroot" >&2; continue ;;
    esac
    if [ -n "$(ls -A "$ROOT$path" 2>/dev/null)" ]; then
      echo "py39: not mounting $path: the chroot has its own files there" >&2; continue
    fi
    mkdir -p "$ROOT$path"
    mount_into "$path" --bind -o ro "$path"
  done < <("$HOST_PY" -c "$PIP_PATHS_PY" "${configs[@]}" | sort -u)
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
pip_setup
# The host's CA bundle: it trusts whatever the host's network needs (a TLS proxy) for PyPI.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"

# The working tree as git sees it (tracked + untracked, not ignored): no host venv, no caches.
rm -rf --one-file-system "$ROOT/src" "$ROOT/fixtures"
mkdir -p "$ROOT/src" "$ROOT/fixtures"
git -c safe.directory="$REPO" ls-files -z -co --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$ROOT/src"
# What only the build side can make (litert-torch + torch, onnx): the tiny TFLite and ONNX
# models, made on the host (as root after sudo -E: no __pycache__ left in the checkout).
PYTHONDONTWRITEBYTECODE=1 "$HOST_PY" -c "import sys; from pathlib import Path
from tests.models import make_tiny_onnx, make_tiny_tflite
make_tiny_tflite(Path(sys.argv[1])); make_tiny_onnx(Path(sys.argv[2]))" \
  "$ROOT/fixtures/tiny.tflite" "$ROOT/fixtures/tiny.onnx" >"$ROOT/fixtures/make.log" 2>&1 \
  || { tail -20 "$ROOT/fixtures/make.log"; echo "py39: making the model fixtures failed" >&2; exit 1; }
say "source and fixtures copied in"

enter /bin/rm -rf /opt/py39
enter /usr/bin/python3 -m venv /opt/py39
enter /opt/py39/bin/pip --version
pip_install() {  # pip_install ARGS (quoted for sh): pip 20.3 warns of every package that a
  # local index lacks ("Url 'file:///...' is ignored: it is neither a file nor a directory")
  enter /bin/sh -c "cd /src && pip install -q --disable-pip-version-check $*" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install "'.[agent]'" "$(printf "'%s' " "${TEST_TOOLS[@]}")"
say "venv: pip install '.[agent]' done"

enter /bin/sh -c "cd /tmp && python --version && edgekit --version"
for module in onnx torch; do  # the device tests prove the agent extra is enough: only it
  if enter python -c "import importlib.util as u, sys; sys.exit(u.find_spec('$module') is None)"
  then echo "py39: $module is installed with '.[agent]'; the device tests need it absent" >&2
    exit 1
  fi
done
enter /bin/sh -c "cd /src && exec python -m pytest -q -p no:cacheprovider ${DEVICE_TESTS[*]}"
say "device tests passed with only '.[agent]' installed"
pip_install "$(printf "'%s' " "${MODEL_TOOLS[@]}")"
enter /bin/sh -c "cd /src && exec python -m pytest -q -p no:cacheprovider ${AGENT_TESTS[*]}"
say "agent tests passed"
