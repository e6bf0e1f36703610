#!/usr/bin/env bash
# The one test command: installs what is missing, builds with ASan+UBSan into
# build-test/, and runs the whole ctest suite.  Exits non-zero on any failure.
#   ./scripts/test.sh            all tests
#   ./scripts/test.sh -L unit    only one label (extra args go to ctest)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
build=${KS_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DKS_SANITIZE=ON -DKS_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
