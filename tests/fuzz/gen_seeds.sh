#!/usr/bin/env bash
# Writes the seed corpora of the fuzz harnesses into OUTDIR/<harness>/:
#   - the small hand-written seeds committed under tests/fuzz/seeds/<harness>/
#     (not the crash-* reproducers);
#   - the three example documents of docs/report-schema.md (report, VM request,
#     plan);
#   - host reports made by `kintsugi-agent report --fixture` on a few recorded
#     machines, when AGENT is given and works (and API request sequences that
#     PUT them, place a VM and read it back);
#   - the catalogue's feature names, per arch, as cpuinfo-style word lists.
# Generated files are never committed; re-running replaces them.
#   gen_seeds.sh OUTDIR [AGENT]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: gen_seeds.sh OUTDIR [AGENT]}
agent=${2:-}
fixtures=${KS_FIXTURES_DIR:-$src/../shared/fixtures}

for h in report vm_request plan feature api; do
    mkdir -p "$out/$h"
    # crash-* are reproducers of known bugs, replayed by their own test.
    find "$src/tests/fuzz/seeds/$h" -maxdepth 1 -type f ! -name 'crash-*' \
        -exec cp -f {} "$out/$h/" \;
done

# The n-th ```json block of the schema document.
json_block() {
    awk -v want="$1" '/^```json/ {n++; on = (n == want); next} /^```/ {on = 0} on' \
        "$src/docs/report-schema.md"
}
json_block 1 >"$out/report/doc-example.json"
json_block 2 >"$out/vm_request/doc-example.json"
json_block 3 >"$out/plan/doc-example.json"

# Feature names straight from the table rows: X("name", ...) for x86, A("name", ...) for arm64.
table=$src/common/ks_feature_table.c
{ printf '\0'; grep -oE '^\s*X\("[^"]+"' "$table" | sed -E 's/.*"(.*)"/\1/' | tr '\n' ' '; } \
    >"$out/feature/catalogue-x86.txt"
{ printf '\1'; grep -oE '^\s*A\("[^"]+"' "$table" | sed -E 's/.*"(.*)"/\1/' | tr '\n' ' '; } \
    >"$out/feature/catalogue-arm64.txt"
# QEMU spellings (7th field of X rows) exercise the alias path.
{ printf '\0'; grep -oE '^\s*X\("[^"]+", [^,]+, [^,]+, [^,]+, [^,]+, "[^"]+"' "$table" |
    sed -E 's/.*"(.*)"$/\1/' | tr '\n' ' '; } >"$out/feature/catalogue-qemu.txt"

n_agent=0
if [ -n "$agent" ] && [ -x "$agent" ]; then
    for f in Intel-RaptorLake-Corei7-1370P AMD-19h-Zen3-2xEpyc-7763 Hygon-Dhyana-32cores \
        Intel-SapphireRapids-2xXeonMax9460; do
        tb=$fixtures/hwloc-x86/$f.tar.bz2
        [ -f "$tb" ] || continue
        if "$agent" report --fixture "$tb" --host-id h-fuzz >"$out/report/agent-$f.json" \
            2>/dev/null && [ -s "$out/report/agent-$f.json" ]; then
            n_agent=$((n_agent + 1))
            {
                printf 'PUT /v1/hosts/h-fuzz/report\nContent-Type: application/json\n'
                printf 'Authorization: Bearer $agent\n\n'
                cat "$out/report/agent-$f.json"
                printf '\n###\nPOST /v1/vms\nContent-Type: application/json\n\n'
                printf '{"name":"vm-a","vcpus":2,"required_features":["sse2"]}\n'
                printf '###\nGET /v1/vms/vm-a\n\n###\nGET /v1/hosts/h-fuzz/cpus\n\n'
                printf '###\nGET /v1/capacity\n\n'
            } >"$out/api/agent-$f.txt"
        else
            rm -f "$out/report/agent-$f.json"
        fi
    done
fi
echo "gen_seeds: $(find "$out" -type f | wc -l) seeds in $out ($n_agent agent reports)"
