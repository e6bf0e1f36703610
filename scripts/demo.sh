#!/usr/bin/env bash
# The Kintsugi demo: installs dependencies, builds, then runs the whole system on
# this machine and stops everything it started.
#
#   kintsugid (SQLite file in a temp dir, token auth)
#   + the real local agent (live discovery, self-tests with one injected fault,
#     QEMU driver when qemu-system-x86_64 is installed)
#   + simulated agents: real kintsugi-agent processes reporting recorded
#     machines from ../shared/fixtures, a third of them with defective
#     AVX-512 / AES units listed in an operator defect file
#   -> places a mix of VMs (plain, hybrid P+E, AVX-512-required, AES-required,
#      pool members), applies a feature ban, prints the capacity table with the
#      reclaimed figure, writes kintsugi-report.html.
#
# Options: --ci (quieter, same steps), --agents N (simulated agents, default 50),
#          --bin DIR (use binaries already built in DIR instead of building),
#          --out DIR (where kintsugi-report.html goes, default the checkout),
#          --keep (leave the temp dir for inspection).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

agents=50
ci=0
keep=0
bin=
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) ci=1 ;;
        --agents) agents=$2; shift ;;
        --bin) bin=$(cd "$2" && pwd); shift ;;
        --out) out=$(cd "$2" && pwd); shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

fixtures="${KS_FIXTURES_DIR:-$root/../shared/fixtures}"
report="${out:-$root}/kintsugi-report.html"
[ -d "$fixtures" ] || { echo "demo.sh: recorded machines not found at $fixtures" >&2; exit 2; }

if [ -z "$bin" ]; then
    ./scripts/build.sh
    bin="$root/build"
fi
kintsugid="$bin/api/kintsugid"
agent="$bin/agent/kintsugi-agent"
ctl_bin="$bin/cli/kintsugictl"

work=$(mktemp -d /tmp/kintsugi-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$keep" = 1 ]; then echo "demo: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

# --- kintsugid ------------------------------------------------------------------
say "starting kintsugid (SQLite: $work/kintsugi.db)"
db="$work/kintsugi.db"
admin_token=$("$kintsugid" token create --role admin --description demo-admin --db "$db" 2>/dev/null)
plan_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$kintsugid" --db "$db" --listen 127.0.0.1:0 --port-file "$work/port" \
    --agent-plan-token "$plan_token" --snapshot-interval 2 --lost-after 120 \
    --log-level warn >"$work/kintsugid.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "demo: kintsugid did not start:"; cat "$work/kintsugid.log"; exit 1; }
server="http://127.0.0.1:$(cat "$work/port")"
export KINTSUGI_SERVER="$server" KINTSUGI_TOKEN="$admin_token"
ctl() { "$ctl_bin" "$@"; }
echo "kintsugid at $server"

# --- agents ---------------------------------------------------------------------
agent_token() { "$kintsugid" token create --role agent --host "$1" --db "$db" 2>/dev/null; }

start_agent() { # host-id log-file args...
    local host=$1 log=$2
    shift 2
    KINTSUGI_AGENT_TOKEN=$(agent_token "$host") KINTSUGI_PLAN_TOKEN="$plan_token" \
        "$agent" run --server "$server" --host-id "$host" --listen 127.0.0.1:0 \
        --heartbeat 5 "$@" >"$log" 2>&1 &
    pids+=($!)
}

say "starting the real local agent (live discovery, self-tests, fault injected on cpu 0 aes)"
local_id="this-host-$(uname -n | cut -d. -f1 | sed 's/[^A-Za-z0-9._-]/-/g')"
driver=dry-run
if command -v qemu-system-x86_64 >/dev/null; then driver=qemu; fi
mkdir -p "$work/local-vmm"
start_agent "$local_id" "$work/agent-local.log" --driver "$driver" \
    --state-dir "$work/local-vmm" --accel auto --inject 0:aes --selftest-interval 0

say "starting $agents simulated agents from recorded machines"
mkdir -p "$work/fixtures"
machines=()
for t in "$fixtures"/hwloc-x86/*.tar.bz2 "$fixtures"/hwloc-linux/20em64t-hybrid*.tar.bz2 \
         "$fixtures"/hwloc-linux/128arm*.tar.bz2; do
    name=$(basename "$t" .tar.bz2)
    tar -xjf "$t" -C "$work/fixtures"
    dir="$work/fixtures/$name"
    [ -d "$dir" ] || dir=$(find "$work/fixtures" -maxdepth 1 -type d -name "${name}*" | head -1)
    machines+=("$name=$dir")
done
# Which machines have AVX-512 (they get AVX-512 defects); every x86 one may get AES defects.
has_avx512() { case "$1" in *Skylake*|*CascadeLake*|*SapphireRapids*|*KnightsLanding*) return 0;; esac; return 1; }
is_arm() { case "$1" in *arm*) return 0;; esac; return 1; }

n_defective=0
for i in $(seq -w 1 "$agents"); do
    m=${machines[$(( (10#$i - 1) % ${#machines[@]} ))]}
    name=${m%%=*}
    dir=${m#*=}
    host="sim-$i-${name%%-*}"
    args=(--fixture "$dir" --driver dry-run --state-dir "$work/vmm-$i")
    if [ $(( 10#$i % 3 )) = 0 ] && ! is_arm "$name"; then
        # An operator defect list, as a vendor scan or fleet test would produce it.
        defects="$work/defects-$i.json"
        if has_avx512 "$name"; then
            echo '[{"cpu":1,"features":["avx512f"],"reason":"OpenDCDiag: avx512 fma mismatch"},
                   {"cpu":2,"features":["avx512f"],"reason":"OpenDCDiag: avx512 fma mismatch"},
                   {"cpu":3,"features":["aes"],"reason":"aes known-answer failure"},
                   {"cpu":5,"quarantine":true,"reason":"IFS scan failed"}]' >"$defects"
        else
            echo '[{"cpu":1,"features":["aes"],"reason":"aes known-answer failure"},
                   {"cpu":2,"features":["avx2"],"reason":"avx2 mismatch in fleet test"}]' >"$defects"
        fi
        args+=(--defects "$defects")
        n_defective=$((n_defective + 1))
    else
        args+=(--defects "$work/no-defects.json")
    fi
    start_agent "$host" "$work/agent-$i.log" "${args[@]}"
done
echo '[]' >"$work/no-defects.json"
echo "$n_defective simulated hosts carry defective units"

want=$((agents + 1))
for _ in $(seq 300); do
    n=$(ctl -o json hosts list 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [ "$n" -ge "$want" ] && break
    sleep 0.2
done
echo "$n of $want hosts registered"
[ "$n" -ge "$want" ] || { echo "demo: not every agent registered; see $work/agent-*.log"; keep=1; exit 1; }
[ "$ci" = 1 ] || ctl hosts list | sed -n '1,16p' # sed reads everything: no SIGPIPE

# --- placements -----------------------------------------------------------------
say "pools: every AVX-512 host forms a migration pool"
ctl pools create avx512-pool --feature avx512f >/dev/null
ctl pools show avx512-pool | grep -E '^(name|baseline_size|baseline_cpus|members|narrowing)' || true

say "placing VMs"
placed=0 failed=0
place() {
    if ctl -o json vms create "$@" >"$work/last-vm.json" 2>"$work/last-vm.err"; then
        placed=$((placed + 1))
    else
        failed=$((failed + 1))
        [ "$ci" = 1 ] || sed 's/^/  /' "$work/last-vm.err"
    fi
}
for i in $(seq -w 1 40); do place "web-$i" --vcpus 4 --memory 4096; done
for i in $(seq -w 1 8);  do place "hybrid-$i" --performance 2 --efficiency 4 --memory 8192; done
for i in $(seq -w 1 12); do place "hpc-$i" --vcpus 8 --require avx512f,fma --memory 16384; done
for i in $(seq -w 1 10); do place "tls-$i" --vcpus 4 --require aes,pclmulqdq --memory 4096; done
for i in $(seq -w 1 6);  do place "mig-$i" --vcpus 4 --pool avx512-pool --placement spread; done
for i in $(seq -w 1 4);  do place "db-$i" --vcpus 8 --anti-affinity db --smt isolate; done
place "local-vm" --vcpus 2 --host "$local_id" --memory 128
echo "placed $placed VMs ($failed refused: see the reasons above)"
ctl vms show hpc-01 | grep -E '^(name|host|state|generation|plan.topology)' || true

say "degraded cores at work: least capable fit gives them to VMs that never need the broken unit"
busy=$(ctl -o json capacity --by host | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(next((i["scope"] for i in d.get("items", []) if i.get("reclaimed", 0) > 0), ""))')
if [ -n "$busy" ]; then
    ctl cpus list --host "$busy" --state degraded
fi

if [ "$driver" = qemu ]; then
    say "the local agent runs 'local-vm' in QEMU ($(qemu-system-x86_64 --version | head -1))"
    for _ in $(seq 100); do
        applied=$(ctl -o json vms show local-vm | python3 -c 'import json,sys; print(json.load(sys.stdin).get("applied_generation",0))')
        [ "$applied" -ge 1 ] && break
        sleep 0.2
    done
    ctl vms show local-vm | grep -E '^(host|applied_generation|apply_error|plan.features.model)' || true
    pgrep -a -f "qemu-system-x86_64.*local-vm" | cut -c1-160 || echo "(QEMU not running: see $work/agent-local.log)"
fi

# --- a fleet-wide ban -------------------------------------------------------------
say "banning rdrand/rdseed fleet-wide: VMs that saw them get a new plan without them"
ctl bans add rdrand,rdseed --reason "SRBDS (CrossTalk): RNG output observable across cores" \
    | grep -E '^(id|n_affected|features)' || true
ctl vms show web-01 | grep -E '^(name|generation|applied_generation|plan.features.disable)' | cut -c1-150 || true
ctl bans list

# --- capacity ---------------------------------------------------------------------
say "capacity by core kind"
ctl capacity --by kind
say "fleet capacity"
ctl capacity
reclaimed=$(ctl -o json capacity | python3 -c '
import json,sys
d=json.load(sys.stdin); items=d.get("items", d if isinstance(d,list) else [d])
print(sum(int(i.get("reclaimed",0)) for i in items))')
echo "reclaimed CPUs: $reclaimed  (allocated on degraded cores that a disable-the-core policy would have lost)"

sleep 2 # one more capacity snapshot for the trend line
ctl report --html "$report"
echo "report written to $report"

say "done in $(( $(date +%s) - start )) s"
[ "$reclaimed" -gt 0 ] || { echo "demo: expected reclaimed capacity > 0"; exit 1; }
