#!/usr/bin/env bash
# Builds the optimised tree (build/, via scripts/build.sh) and runs every
# benchmark, then prints their one-line summaries (bench=<name> key=value ...).
#
#   scripts/bench.sh            full scale (10,000 hosts ~ 1.29M CPUs; scaling to 20,000)
#   scripts/bench.sh --quick    small scale (a minute or two)
#   scripts/bench.sh --no-build use the existing build/
#
# Full logs go to build/bench-logs/<name>.log; see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
build=1
for a in "$@"; do
    case "$a" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    -h | --help)
        sed -n '2,9p' "$0"
        exit 0
        ;;
    *)
        echo "bench.sh: unknown option '$a' (--quick, --no-build)" >&2
        exit 2
        ;;
    esac
done

if [ "$build" = 1 ]; then
    ./scripts/build.sh
fi
B=build/bench
for t in fleetsim bench_place bench_reclaim bench_api; do
    if [ ! -x "$B/$t" ]; then
        echo "bench.sh: $B/$t is missing (build failed?)" >&2
        exit 1
    fi
done
if [ -z "${KS_FIXTURES_DIR:-}" ]; then
    KS_FIXTURES_DIR="$(cd .. && pwd)/shared/fixtures"
fi
export KS_FIXTURES_DIR
logs=build/bench-logs
mkdir -p "$logs"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ks-bench.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if [ "$quick" = 1 ]; then
    fleetsim_args=(--hosts 500 --trace-steps 2000)
    place_args=(--hosts 1000 --ops 5000 --scaling 250,500,1000)
    reclaim_args=(--hosts 1000 --trace-steps 5000)
    api_args=(--hosts 200 --requests 10000 --clients 32)
    place_bench_args=(--hosts 1000 --ops 20000)
    pg_args=(--replicas 1,2,3 --vms 600)
    agent_runs=1
else
    fleetsim_args=(--hosts 10000 --trace-steps 20000)
    place_args=(--hosts 10000 --ops 20000 --scaling 1000,2000,5000,10000,20000)
    reclaim_args=(--hosts 10000 --trace-steps 50000)
    api_args=(--hosts 1000 --requests 40000 --clients 32)
    place_bench_args=(--hosts 1000,10000)
    pg_args=(--replicas 1,2,3 --vms 3000)
    agent_runs=5
fi

status=0
run() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    if "$@" >"$logs/$name.log" 2>"$logs/$name.err"; then
        cat "$logs/$name.log"
    else
        local rc=$?
        cat "$logs/$name.log"
        echo "bench.sh: $name exited with $rc (stderr in $logs/$name.err)" >&2
        status=1
    fi
}

run fleetsim "$B/fleetsim" --seed 1 --defect-rate 0.05 --db "$tmp/fleet.db" "${fleetsim_args[@]}"
run bench_place "$B/bench_place" "${place_args[@]}"
run bench_reclaim "$B/bench_reclaim" "${reclaim_args[@]}"
run bench_api "$B/bench_api" --kintsugid build/api/kintsugid "${api_args[@]}"
# Benchmarks owned by other parts (scheduler, discovery), run as they are.
if [ -x "$B/place_bench" ]; then
    run place_bench "$B/place_bench" "${place_bench_args[@]}"
fi
if [ -x "$B/agent_report" ]; then
    run agent_report "$B/agent_report" --runs "$agent_runs"
fi
# PostgreSQL replicas next to SQLite (bench_pg starts a throwaway cluster; it
# needs the server from Debian's postgresql package, a test dependency).
if [ -x "$B/bench_pg" ]; then
    ./scripts/deps.sh --test
    run bench_pg "$B/bench_pg" "${pg_args[@]}"
fi

echo
echo "== summary =="
cat "$logs"/*.log | grep -E '^(bench=|place_bench |agent_report\.)' || true
exit "$status"
