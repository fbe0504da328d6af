#!/usr/bin/env bash
# Reproduces the figures of BENCHMARKS.md on a 2-core Linux machine: server
# pinned to CPU 0, load generator to CPU 1. Every server this script starts
# listens on 127.0.0.1, is stopped by its own PID, and every load run is
# bounded in time.
#
#   benches/run.sh import SIZE [sqlite|postgres]   generate and import a dataset
#   benches/run.sh load SIZE [SECONDS] [BACKEND]   Check/CheckBatch vs no-op, concurrency 16 and 64
#   benches/run.sh coldstart SIZE [sqlite|postgres] time from start to SERVING, RSS and peak RSS (VmHWM)
#   benches/run.sh writes                          single-grant Mutate calls/s and a 100k-grant batch (SQLite, S)
#   benches/run.sh writes-memory SIZE              resident memory under a minute of single-grant writes (SQLite)
#
# The server is started with the environment of this script: WARDEN_HUGE_PAGES=false
# measures it on 4 KiB pages; WARDEN_MALLOC_TUNED=1 with glibc's default thread
# caches (src/malloc.rs).
# SIZE is S, M or XL. Data goes to $WARDEN_BENCH_DIR (default /tmp/warden-bench);
# PostgreSQL databases are warden_bench_<size> at $WARDEN_BENCH_PG
# (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR="${WARDEN_BENCH_DIR:-/tmp/warden-bench}"
PG="${WARDEN_BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
PORT="${WARDEN_BENCH_PORT:-50151}"
# WARDEN_BIN serves another build of warden (an A/B run); the default is built first.
WARDEN="${WARDEN_BIN:-target/release/warden}"
export NO_COLOR=1 RUST_LOG="${RUST_LOG:-info,sqlx=warn}"

lower() { tr '[:upper:]' '[:lower:]' <<<"$1"; }

storage_flags() { # size backend
    local size; size=$(lower "$1")
    if [[ "${2:-sqlite}" == postgres ]]; then
        echo "--database-url $PG/warden_bench_$size"
    else
        echo "--data-dir $BENCH_DIR/$size"
    fi
}

build() {
    if [[ -z "${WARDEN_BIN:-}" ]]; then cargo build --release --bin warden >&2; fi
    cargo bench --bench loadgen --no-run >&2
}

cmd_import() { # size [backend]
    local size=$1 backend=${2:-sqlite}
    build
    if [[ $backend == postgres ]]; then
        local db; db="warden_bench_$(lower "$size")"
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
    else
        rm -rf "${BENCH_DIR:?}/$(lower "$size")"
    fi
    # shellcheck disable=SC2046
    /usr/bin/time -f "import: %e s wall, %M KiB max RSS" "$WARDEN" import --size "$size" $(storage_flags "$size" "$backend")
}

# Starts warden pinned to CPU 0 in the background; sets SERVER_PID and SERVER_LOG.
start_server() { # size backend
    SERVER_LOG=$(mktemp)
    # shellcheck disable=SC2046
    taskset -c 0 "$WARDEN" serve --listen "127.0.0.1:$PORT" $(storage_flags "$1" "$2") >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SERVER_STARTED=$(date +%s.%N)
    for _ in $(seq 1 12000); do
        if grep -q "index loaded" "$SERVER_LOG"; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$SERVER_LOG" >&2; return 1; fi
        sleep 0.05
    done
    echo "warden did not load its index within 10 minutes" >&2
    return 1
}

# The server moves its index onto huge pages after SERVING (src/huge_pages.rs);
# load runs start once that is done, so that it does not take CPU 0 from them.
wait_for_huge_pages() {
    [[ "${WARDEN_HUGE_PAGES:-true}" == false ]] && return 0
    for _ in $(seq 1 1200); do
        if grep -q "huge pages" "$SERVER_LOG"; then return 0; fi
        sleep 0.05
    done
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -f "$SERVER_LOG"
}

loadgen() {
    taskset -c 1 cargo bench --bench loadgen -q -- "$@"
}

cmd_load() { # size [seconds] [backend]
    local size=$1 seconds=${2:-10}
    build
    start_server "$size" "${3:-sqlite}"
    trap stop_server EXIT
    wait_for_huge_pages
    for concurrency in 16 64; do
        for rpc in noop check noop-batch check-batch; do
            local target=(--addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID")
            [[ $rpc == noop* ]] && target=(--noop-cpus 0)
            loadgen "${target[@]}" --size "$size" --rpc "$rpc" --concurrency "$concurrency" --connections 2 \
                --seconds "$seconds" --warmup 2 --batch 100 | grep -E '^(RESULT|  first error)'
        done
    done
    loadgen --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --size "$size" --rpc lookup-sites \
        --concurrency 1 --connections 1 --seconds 5 --warmup 1 | grep -E '^(RESULT|  first error)'
}

cmd_coldstart() { # size [backend]
    local size=$1 backend=${2:-sqlite}
    build
    start_server "$size" "$backend"
    local ready; ready=$(date +%s.%N)
    sed 's/\x1b\[[0-9;]*m//g' "$SERVER_LOG" | grep "index loaded"
    echo "start to SERVING: $(echo "$ready - $SERVER_STARTED" | bc) s (polled every 50 ms)"
    grep -E 'VmRSS|VmHWM' "/proc/$SERVER_PID/status" | sed 's/^/after load: /'
    # Resident memory under load: a short Check run.
    loadgen --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --size "$size" --rpc check \
        --concurrency 16 --connections 2 --seconds 5 --warmup 1 | grep -E '^(RESULT|  first error)'
    grep -E 'VmRSS|VmHWM' "/proc/$SERVER_PID/status" | sed 's/^/after load run: /'
    stop_server
}

cmd_writes() {
    build
    # A copy of the imported S dataset, so that writes do not change it for other runs.
    rm -rf "$BENCH_DIR/writes" && cp -r "$BENCH_DIR/s" "$BENCH_DIR/writes"
    SERVER_LOG=$(mktemp)
    taskset -c 0 "$WARDEN" serve --listen "127.0.0.1:$PORT" --data-dir "$BENCH_DIR/writes" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    trap stop_server EXIT
    for concurrency in 1 16; do
        loadgen --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --size S --rpc mutate-grant \
            --concurrency "$concurrency" --connections 1 --seconds 10 --warmup 2 | grep -E '^(RESULT|  first error)'
    done
    for batch in 40000 100000; do
        loadgen --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --size S --rpc mutate-batch --batch "$batch" \
            --concurrency 1 --connections 1 --seconds 30 --warmup 0 --max-requests 4 | grep -E '^(RESULT|  first error)'
    done
}

cmd_writes_memory() { # size
    local size; size=$(lower "$1")
    build
    # Served from a copy of the imported dataset, so that writes do not change it for other runs.
    WRITES_DIR="$BENCH_DIR/writes-$size"
    rm -rf "$WRITES_DIR" && cp -r "$BENCH_DIR/$size" "$WRITES_DIR"
    start_server "writes-$size" sqlite
    trap 'stop_server; rm -rf "$WRITES_DIR"' EXIT
    wait_for_huge_pages
    sleep 5
    grep -E 'VmRSS|VmHWM' "/proc/$SERVER_PID/status" | sed 's/^/after load: /'
    for concurrency in 1 16; do
        loadgen --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --size "$1" --rpc mutate-grant \
            --concurrency "$concurrency" --connections 1 --seconds 30 --warmup 0 | grep -E '^(RESULT|  first error)'
        grep -E 'VmRSS|VmHWM' "/proc/$SERVER_PID/status" | sed "s/^/after 30 s of writes at c$concurrency: /"
    done
}

case "${1:-}" in
    import) cmd_import "${2:?size}" "${3:-sqlite}" ;;
    load) cmd_load "${2:?size}" "${3:-10}" "${4:-sqlite}" ;;
    coldstart) cmd_coldstart "${2:?size}" "${3:-sqlite}" ;;
    writes) cmd_writes ;;
    writes-memory) cmd_writes_memory "${2:?size}" ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
