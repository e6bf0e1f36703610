#!/usr/bin/env bash
# Installs dependencies, builds, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
for bin in build/api/kintsugid build/agent/kintsugi-agent build/cli/kintsugictl; do
    [ -x "$bin" ] && "$bin" --version
done
