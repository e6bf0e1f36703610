#!/usr/bin/env bash
# Coverage-guided fuzzing of Kintsugi's decoders and REST API with libFuzzer
# (docs/reliability.md#fuzzing).
#
#   ./scripts/fuzz.sh [SECONDS] [HARNESS...]
#
# Builds the harnesses of tests/fuzz/ with clang, libFuzzer, ASan and UBSan in
# build-fuzz/ (KS_FUZZ_BUILD_DIR overrides), writes the seed corpora, then runs
# each harness (default: all of report vm_request plan feature api) for SECONDS
# (default 30) one after the other.  Prints executions and executions per
# second per harness; exits non-zero when any harness found a crash, a leak, a
# timeout, UB or a broken property (the input is kept under
# build-fuzz/fuzz-artifacts/<harness>/, the log under build-fuzz/fuzz-logs/).
# New interesting inputs accumulate in build-fuzz/fuzz-work/<harness>/ and are
# reused by the next run.  KS_FUZZ_ALLOW=id,... tolerates known findings (see
# tests/fuzz/ks_fuzz.h); KS_AGENT=path names a kintsugi-agent for the seeds;
# KS_FUZZ_RUNS=N also stops each harness after N executions (libFuzzer -runs),
# for a run that must reach a number of executions within a time cap.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
case "$secs" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number" >&2; exit 2 ;; esac
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=(report vm_request plan feature api); fi
build=${KS_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${KS_FUZZ_JOBS:-2}
runs=${KS_FUZZ_RUNS:-}
case "$runs" in *[!0-9]*) echo "fuzz.sh: KS_FUZZ_RUNS must be a number" >&2; exit 2 ;; esac

./scripts/deps.sh --test
# -Werror is off here only: clang warns about things gcc does not, and a
# warning in code under test must not stop the fuzzing (scripts/test.sh keeps
# -Werror).  RelWithDebInfo: libFuzzer wants optimised code with line info.
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DKS_FUZZ=ON -DKS_SANITIZE=ON -DKS_WERROR=OFF \
    -DKS_BUILD_TESTS=OFF -DKS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
if ! cmake --build "$build" -j"$jobs" --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1; then
    grep -E 'error' "$build/fuzz-build.log" | head -20 >&2
    echo "fuzz.sh: the harnesses did not build (see $build/fuzz-build.log)" >&2
    exit 1
fi

agent=${KS_AGENT:-}
if [ -z "$agent" ]; then
    # Best effort: the seeds are still useful without agent reports.
    if cmake --build "$build" -j"$jobs" --target kintsugi-agent >/dev/null 2>&1; then
        agent=$build/agent/kintsugi-agent
    fi
fi
bash tests/fuzz/gen_seeds.sh "$build/fuzz-corpus" ${agent:+"$agent"}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
printf '%-11s %12s %10s %8s  %s\n' harness execs exec/s cov result
for h in "${harnesses[@]}"; do
    work=$build/fuzz-work/$h
    art=$build/fuzz-artifacts/$h
    log=$build/fuzz-logs/$h.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    rc=0
    "$build/tests/fuzz/fuzz_$h" "$work" "$build/fuzz-corpus/$h" \
        -max_total_time="$secs" ${runs:+-runs="$runs"} -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
        -dict="tests/fuzz/dict/$h.dict" -artifact_prefix="$art/" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc, see $log)"
        failed+=("$h")
    fi
    printf '%-11s %12s %10s %8s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
    for h in "${failed[@]}"; do
        echo "---- fuzz_$h: last lines of $build/fuzz-logs/$h.log" >&2
        grep -E 'ERROR|SUMMARY|property failed|Test unit written|leak' \
            "$build/fuzz-logs/$h.log" | head -20 >&2 || true
    done
    exit 1
fi
