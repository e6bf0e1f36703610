#!/bin/sh
# verify.sh BUILD_DIR - checks the files in deploy/ against the built binaries:
#   1. systemd-analyze verify accepts both units (ExecStart pointed at BUILD_DIR);
#   2. the KS_* keys of kintsugid.conf.example are exactly the settings in
#      kintsugid --help, and kintsugid accepts the example's values;
#   3. defects.json.example is valid JSON.
# Exit 0 when all hold; prints what failed otherwise.  Run by ctest (test_deploy).
set -eu
build=$(cd "${1:?usage: verify.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing (Debian package systemd)" >&2; exit 1; }
for u in kintsugid kintsugi-agent; do
    sed -e "s#/usr/bin/kintsugid#$build/api/kintsugid#" \
        -e "s#/usr/bin/kintsugi-agent#$build/agent/kintsugi-agent#" \
        "$here/$u.service" > "$tmp/$u.service"
done
# verify prints nothing for clean units; anything it says is a finding.
if ! out=$(cd "$tmp" && systemd-analyze verify ./kintsugid.service ./kintsugi-agent.service 2>&1) \
   || [ -n "$out" ]; then
    echo "systemd-analyze verify:" >&2; echo "$out" >&2; fail=1
fi

keys=$(grep -E '^#?KS_[A-Z_]+=' "$here/kintsugid.conf.example" | sed -e 's/^#//' -e 's/=.*//' | sort -u)
envs=$(grep -E '^KS_[A-Z_]+=' "$here/kintsugid.conf.example" | grep -v '^KS_DB=' || true)
# shellcheck disable=SC2086
if ! cfg=$(env -i $envs "$build/api/kintsugid" --print-config 2>&1); then
    echo "kintsugid refused kintsugid.conf.example: $cfg" >&2; fail=1
fi
for k in $keys; do
    flag=$(echo "$k" | sed -e 's/^KS_//' | tr 'A-Z_' 'a-z-')
    if ! "$build/api/kintsugid" --help | grep -q -- "--$flag\b.*\[$k\]"; then
        echo "kintsugid.conf.example: $k is not a kintsugid setting" >&2; fail=1
    fi
done

# ... and every setting kintsugid reads is documented in the example.
for k in $("$build/api/kintsugid" --help | grep -o '\[KS_[A-Z_]*\]' | tr -d '[]'); do
    echo "$keys" | grep -qx "$k" || { echo "kintsugid.conf.example does not document $k" >&2; fail=1; }
done

python3 -m json.tool "$here/defects.json.example" >/dev/null || { echo "defects.json.example: not JSON" >&2; fail=1; }
exit $fail
