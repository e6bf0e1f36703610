#!/usr/bin/env bash
# pg-test-cluster.sh start|stop|url DIR - a throwaway PostgreSQL cluster for tests
# and benchmarks, listening only on a Unix socket in DIR (no TCP port, so
# parallel runs never collide).
#
#   start DIR   initdb DIR/data, start the server, create database "kintsugi",
#               print the connection URL (postgresql:///kintsugi?host=DIR&user=postgres)
#   stop DIR    stop the server (fast shutdown) and remove DIR
#   url DIR     print the URL of a running cluster
#
# PostgreSQL refuses to run as root: when started as root the cluster belongs to
# the system user "kspg" (created when missing) and DIR is handed over to it.
# Uses Debian's postgresql package (PG_BIN overrides /usr/lib/postgresql/15/bin).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop|url DIR" >&2
    exit 2
fi

find_bin() {
    if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then echo "$PG_BIN"; return 0; fi
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

url() { echo "postgresql:///kintsugi?host=$1&user=postgres"; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u kspg -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    bin=$(find_bin) || { echo "pg-test-cluster: PostgreSQL server binaries not found" \
                              "(apt-get install postgresql)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # The socket path must fit in sun_path (107 bytes) with ".s.PGSQL.5432".
    if [ ${#dir} -gt 90 ]; then
        echo "pg-test-cluster: directory path too long for a Unix socket: $dir" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        if ! id kspg >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin kspg
        fi
        chown kspg: "$dir"
        chmod 700 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale \
                 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # fsync stays on: the tests kill servers and connections and want the
    # commits they were acknowledged.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
             -o "-k $dir -c listen_addresses='' -c max_connections=100 \
                 -c shared_buffers=64MB -c max_locks_per_transaction=128" \
             start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    if ! as_owner "$bin/psql" -h "$dir" -U postgres -d postgres -tAq \
             -c "SELECT 1 FROM pg_database WHERE datname = 'kintsugi'" | grep -q 1; then
        as_owner "$bin/createdb" -h "$dir" -U postgres kintsugi
    fi
    url "$dir"
    ;;
stop)
    bin=$(find_bin) || exit 0
    if [ -d "$dir" ]; then
        dir=$(cd "$dir" && pwd)
        if [ -f "$dir/data/postmaster.pid" ]; then
            as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
        fi
        rm -rf "$dir"
    fi
    ;;
url)
    dir=$(cd "$dir" && pwd)
    url "$dir"
    ;;
*)
    echo "usage: $0 start|stop|url DIR" >&2
    exit 2
    ;;
esac
