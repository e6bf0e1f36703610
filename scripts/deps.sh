#!/usr/bin/env bash
# Installs the Debian packages Kintsugi needs to build, test and run the demo.
# Idempotent: only calls apt-get when something is missing.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev
            libcurl4-openssl-dev libsqlite3-dev libcmocka-dev libhwloc-dev hwloc-nox
            sqlite3 bzip2 ca-certificates libgnutls28-dev libpq-dev libzstd-dev)
test_pkgs=(qemu-system-x86 libvirt-clients socat clang libclang-rt-14-dev python3-jsonschema
           python3 curl chromium postgresql systemd)

want=("${build_pkgs[@]}")
if [ "${1:-}" = "--test" ]; then want+=("${test_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
