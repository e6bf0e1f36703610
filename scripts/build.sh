#!/usr/bin/env bash
# Configures and builds an optimised tree in build/ (used by demo.sh and bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKS_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
