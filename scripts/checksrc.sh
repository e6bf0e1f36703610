#!/usr/bin/env bash
# Source checks that the compiler does not make (STYLE.md, "Naming and layout"):
# banned functions in the product's C files.  Exits 1 listing every hit.
#   sprintf strcpy strcat strtok gets  -> snprintf / memcpy with a known length
#   atoi atol strtol & co outside common/ks_parse.c -> ks_parse_u64 / ks_parse_i64
#   system() -> fork/exec with an argv; strerror() -> not thread-safe
set -uo pipefail
cd "$(dirname "$0")/.."
dirs=(common agent scheduler api db cli)
status=0
check() { # regex, message, files...
    local re=$1 msg=$2
    shift 2
    local hits
    hits=$(grep -nE "$re" "$@" 2>/dev/null | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)')
    if [ -n "$hits" ]; then
        echo "$hits" | sed "s|\$|   <- $msg|"
        status=1
    fi
}
mapfile -t files < <(find "${dirs[@]}" -name '*.c' -o -name '*.h' | sort)
check '(^|[^_a-z])(sprintf|vsprintf|strcpy|strcat|strtok|gets)\s*\(' "banned: use snprintf/memcpy" "${files[@]}"
check '(^|[^_a-z.>])(atoi|atol|atoll|atof)\s*\(' "banned: use ks_parse_*" "${files[@]}"
mapfile -t not_parse < <(printf '%s\n' "${files[@]}" | grep -v '^common/ks_parse\.c$')
check '(^|[^_a-z])strto(l|ll|ul|ull|d|f|imax|umax)\s*\(' "use ks_parse_* (common/ks_parse.h)" "${not_parse[@]}"
check '(^|[^_a-z.>])system\s*\(' "banned: fork/exec with an argv" "${files[@]}"
check '(^|[^_a-z])strerror\s*\(' "banned: strerror is not thread-safe (strerror_r)" "${files[@]}"
[ $status = 0 ] && echo "checksrc: ${#files[@]} files clean"
exit $status
