#!/usr/bin/env bash
# Benchmarks reapi-server end to end on this machine.
#
#   benches/run.sh [RESULTS_DIR]
#
# Builds reapi-server and reapi-bench (release), measures the machine's own
# limits (SHA-256, disk, loopback, process spawn, synced commits), starts the
# server on a free port of 127.0.0.1 with a fresh data directory, runs every
# scenario, measures memory (index per blob, per queued action), writes one
# JSON file per scenario run into RESULTS_DIR and prints a Markdown summary.
# Stops every server it started. Talks to 127.0.0.1 only; every step is
# bounded in time.
#
# Environment:
#   PIN=1          pin the server to CPU 0 and reapi-bench to CPU 1 (default 0:
#                  both float over all CPUs; see BENCHMARKS.md)
#   DURATION=8s    measured phase of each duration-based run
#   WARMUP=2s      warm-up of each run
#   QUICK=1        1 s warm-up, 3 s runs, fewer queued actions (smoke test)
#   INDEX_TEST=0   skip `cargo test ... index_bytes_per_blob` (1 M-blob index)
#   NO_BUILD=1     use existing binaries (SERVER_BIN, BENCH_BIN or target/release)
#   DATA_PARENT    where data directories go (default: target/bench-data; its
#                  file system is the one measured with dd)
#   KEEP_DATA=1    keep the data directories
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${1:-$ROOT/target/bench-results/$(date +%Y%m%d-%H%M%S)}
PIN=${PIN:-0}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
QUEUED=${QUEUED:-100000}
if [ "${QUICK:-0}" = 1 ]; then
    DURATION=3s
    WARMUP=1s
    QUEUED=${QUEUED_QUICK:-20000}
fi
DATA_PARENT=${DATA_PARENT:-$ROOT/target/bench-data}
STARTED_AT=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '\n== %s (+%ss)\n' "$*" "$(( $(date +%s) - STARTED_AT ))" >&2; }

mkdir -p "$RESULTS" "$DATA_PARENT"
RESULTS=$(cd "$RESULTS" && pwd)
RUN_DIR=$(mktemp -d "$DATA_PARENT/run.XXXXXX")

SERVER_PIDS=()
cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [ "${KEEP_DATA:-0}" != 1 ]; then
        rm -rf "$RUN_DIR"
    fi
}
trap cleanup EXIT

# --- build -----------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building reapi-server and reapi-bench (release)"
    (cd "$ROOT" && timeout 1800 cargo build --release -p reapi-server -p reapi-benches --bins)
fi
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/reapi-server}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/reapi-bench}
for bin in "$SERVER_BIN" "$BENCH_BIN"; do
    [ -x "$bin" ] || { echo "run.sh: $bin is missing" >&2; exit 1; }
done

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0)
    CLIENT_CPU=(taskset -c 1-$(( $(nproc) - 1 )))
    PINNING="pinned: server on CPU 0, reapi-bench on CPU 1"
else
    SERVER_CPU=()
    CLIENT_CPU=()
    PINNING="not pinned: server and reapi-bench share all $(nproc) CPUs"
fi

# --- machine limits ----------------------------------------------------------
log "machine limits"
SHA_MB_S=$(timeout 60 openssl speed -evp sha256 -seconds 2 -bytes 16384 2>/dev/null \
    | awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }')
SHA_MB_S=${SHA_MB_S:-0}
dd_rate() { awk '{ for (i = 1; i <= NF; i++) if ($i == "s,") { printf "%.0f", $1 / $(i-1) / 1e6; exit } }'; }
DD_FILE="$RUN_DIR/dd-test"
DISK_WRITE_MB_S=$(timeout 120 dd if=/dev/zero of="$DD_FILE" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1 | dd_rate)
DISK_READ_MB_S=$(timeout 120 dd if="$DD_FILE" of=/dev/null bs=1M iflag=direct 2>&1 | tail -1 | dd_rate)
rm -f "$DD_FILE"
# The disk store writes large blobs with O_DIRECT (docs/adr/0005).
DISK_WRITE_DIRECT_MB_S=$(timeout 120 dd if=/dev/zero of="$DD_FILE" bs=1M count=1024 oflag=direct conv=fdatasync 2>&1 | tail -1 | dd_rate)
rm -f "$DD_FILE"
timeout 120 "${CLIENT_CPU[@]}" "$BENCH_BIN" limits --dir "$RUN_DIR" --each 2s --json "$RESULTS/limits.json" >/dev/null
echo "SHA-256 (openssl): $SHA_MB_S MB/s; disk write $DISK_WRITE_MB_S MB/s ($DISK_WRITE_DIRECT_MB_S MB/s O_DIRECT), read $DISK_READ_MB_S MB/s" >&2

INDEX_ALLOC=null
INDEX_RSS=null
if [ "${INDEX_TEST:-1}" = 1 ]; then
    log "index bytes per blob (reapi-cas ignored test, 1 M blobs)"
    if (cd "$ROOT" && timeout 900 cargo test -q -p reapi-cas --release --lib -- --ignored --nocapture index_bytes_per_blob) \
        >"$RESULTS/index_test.log" 2>&1; then
        INDEX_ALLOC=$(sed -n 's/.*: \([0-9.]*\) bytes\/blob allocated.*/\1/p' "$RESULTS/index_test.log" | head -1)
        INDEX_RSS=$(sed -n 's/.*, \([0-9.]*\) bytes\/blob RSS growth.*/\1/p' "$RESULTS/index_test.log" | head -1)
        INDEX_ALLOC=${INDEX_ALLOC:-null}
        INDEX_RSS=${INDEX_RSS:-null}
        grep 'bytes/blob' "$RESULTS/index_test.log" >&2 || true
    else
        echo "run.sh: the index test failed; see $RESULTS/index_test.log" >&2
    fi
fi

# --- server ------------------------------------------------------------------
rss_of() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# start_server NAME EXECUTORS DATA_DIR: sets SERVER_PID and SERVER_ADDR.
start_server() {
    local name=$1 executors=$2 data=$3
    local out="$RESULTS/server-$name.stdout" err="$RESULTS/server-$name.log"
    mkdir -p "$data"
    RUST_LOG=${SERVER_LOG:-warn} "${SERVER_CPU[@]}" "$SERVER_BIN" --listen 127.0.0.1:0 \
        --data-dir "$data" --executors "$executors" --orphan_timeout 1h >"$out" 2>"$err" &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    SERVER_ADDR=
    for _ in $(seq 600); do
        SERVER_ADDR=$(sed -n 's/^reapi-server listening on \([0-9.:]*\),.*/\1/p' "$out")
        [ -n "$SERVER_ADDR" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$err" >&2; echo "run.sh: server $name died" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$SERVER_ADDR" ] || { echo "run.sh: server $name did not start in 60 s" >&2; exit 1; }
    case "$SERVER_ADDR" in 127.0.0.1:*) ;; *) echo "run.sh: unexpected address $SERVER_ADDR" >&2; exit 1;; esac
}

stop_server() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# bench NAME ARGS...: one reapi-bench run against the current server.
bench() {
    local name=$1; shift
    log "$name: reapi-bench $*"
    timeout 600 "${CLIENT_CPU[@]}" "$BENCH_BIN" "$@" --target "grpc://$SERVER_ADDR" \
        --server-pid "$SERVER_PID" --json "$RESULTS/$name.json" \
        || echo "run.sh: $name failed (exit $?)" >&2
}

DATA="$RUN_DIR/main"
log "starting reapi-server (data in $DATA)"
start_server main 2 "$DATA"
MAIN_PID=$SERVER_PID
RSS_EMPTY=$(rss_of "$MAIN_PID")
echo "server $MAIN_PID on $SERVER_ADDR; RSS after start on an empty store: $RSS_EMPTY bytes" >&2

D=(--warmup "$WARMUP" --duration "$DURATION")

bench cas-write-64MiB-c1 cas-write --size 64MiB --concurrency 1 "${D[@]}"
bench cas-write-64MiB-c1-chunk16KiB cas-write --size 64MiB --chunk 16KiB --concurrency 1 "${D[@]}"
bench cas-write-64MiB-c2 cas-write --size 64MiB --concurrency 2 "${D[@]}"
bench cas-write-1GiB-c1 cas-write --size 1GiB --concurrency 1 --warmup 0s --count 2
bench cas-write-1MiB-c8 cas-write --size 1MiB --concurrency 8 "${D[@]}"
bench cas-write-4KiB-c16 cas-write --size 4KiB --concurrency 16 "${D[@]}"
bench cas-read-64MiB-c1 cas-read --size 64MiB --concurrency 1 "${D[@]}"
bench cas-read-64MiB-c4 cas-read --size 64MiB --concurrency 4 "${D[@]}"
bench cas-read-1MiB-c8 cas-read --size 1MiB --concurrency 8 "${D[@]}"
bench cas-read-4KiB-c32 cas-read --size 4KiB --concurrency 32 "${D[@]}"
bench batch-100x4KiB-c4 batch --blob-size 4KiB --per-request 100 --concurrency 4 "${D[@]}"
bench find-missing-10k-c1 find-missing --digests 10000 --present-fraction 0.5 --concurrency 1 "${D[@]}"
bench find-missing-10k-c4 find-missing --digests 10000 --present-fraction 0.5 --concurrency 4 "${D[@]}"
bench ac-c64 ac --concurrency 64 "${D[@]}"
bench ac-hit-c1 ac --ops hit --concurrency 1 "${D[@]}"
bench execute-unique-c1 execute --mode unique --concurrency 1 --pool 5000 "${D[@]}"
bench execute-unique-c8 execute --mode unique --concurrency 8 --pool 10000 "${D[@]}"
bench execute-cat-unique-c8 execute --mode unique --command cat --concurrency 8 --pool 10000 "${D[@]}"
bench execute-uncached-c8 execute --mode uncached --concurrency 8 "${D[@]}"
bench execute-identical-c8 execute --mode identical --concurrency 8 "${D[@]}"

# --- memory: index after a restart on this run's store -------------------------
log "memory: index load after a restart"
stop_server "$MAIN_PID"
BLOBS=$(find "$DATA/cas" -type f | wc -l)
start_server restart 2 "$DATA"
RESTART_PID=$SERVER_PID
sleep 1
RSS_LOADED=$(rss_of "$RESTART_PID")
stop_server "$RESTART_PID"
PER_BLOB=$(awk -v a="$RSS_LOADED" -v b="$RSS_EMPTY" -v n="$BLOBS" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "null" }')
echo "restart: $BLOBS blobs, RSS $RSS_EMPTY -> $RSS_LOADED bytes: $PER_BLOB B/blob" >&2

# --- memory: queued actions ------------------------------------------------------
log "memory: $QUEUED queued actions (one executor, kept busy)"
start_server queue 1 "$RUN_DIR/queue"
QUEUE_PID=$SERVER_PID
bench queue-fill queue-fill --count "$QUEUED" --concurrency 32 --max-time 300s
stop_server "$QUEUE_PID"

# --- dispatch: a scheduler and simulated workers ---------------------------------
# reapi-scheduler without workers of its own; reapi-bench links simulated
# workers over the cluster protocol. The backlog phase dispatches 1 k, 10 k
# and 100 k queued actions (the queued Execute streams are dropped, hence
# the long orphan timeout).
SCHEDULER_BIN=${SCHEDULER_BIN:-$(dirname "$SERVER_BIN")/reapi-scheduler}
for backlog in 1000 10000 $QUEUED; do
    log "dispatch: $backlog queued, 200 simulated workers x 4 executors"
    out="$RESULTS/scheduler-$backlog.stdout" err="$RESULTS/scheduler-$backlog.log"
    mkdir -p "$RUN_DIR/scheduler-$backlog"
    RUST_LOG=${SERVER_LOG:-warn} "${SERVER_CPU[@]}" "$SCHEDULER_BIN" --listen 127.0.0.1:0 \
        --data-dir "$RUN_DIR/scheduler-$backlog" --orphan_timeout 1h >"$out" 2>"$err" &
    SCHED_PID=$!
    SERVER_PIDS+=("$SCHED_PID")
    SCHED_ADDR=
    for _ in $(seq 600); do
        SCHED_ADDR=$(sed -n 's/^reapi-scheduler listening on \([0-9.:]*\),.*/\1/p' "$out")
        [ -n "$SCHED_ADDR" ] && break
        sleep 0.1
    done
    [ -n "$SCHED_ADDR" ] || { cat "$err" >&2; echo "run.sh: the scheduler did not start" >&2; exit 1; }
    timeout 900 "${CLIENT_CPU[@]}" "$BENCH_BIN" dispatch --target "grpc://$SCHED_ADDR" --server-pid "$SCHED_PID" \
        --workers 200 --executors 4 --queued "$backlog" --concurrency 32 \
        --warmup "$WARMUP" --duration "$DURATION" --max-time 300s --quiet \
        --json "$RESULTS/dispatch-$backlog.json" >&2
    stop_server "$SCHED_PID"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cat >"$RESULTS/machine.json" <<EOF
{
  "pinning": "$PINNING",
  "cores": $(nproc),
  "loadavg_start": "$LOAD_START",
  "loadavg_end": "$LOAD_END",
  "server_bin": "$SERVER_BIN",
  "sha256_openssl_mb_s": ${SHA_MB_S:-0},
  "disk_write_mb_s": ${DISK_WRITE_MB_S:-0},
  "disk_write_direct_mb_s": ${DISK_WRITE_DIRECT_MB_S:-0},
  "disk_read_mb_s": ${DISK_READ_MB_S:-0},
  "index_test_bytes_per_blob_alloc": $INDEX_ALLOC,
  "index_test_bytes_per_blob_rss": $INDEX_RSS,
  "index_restart_blobs": $BLOBS,
  "server_rss_empty_bytes": $RSS_EMPTY,
  "server_rss_loaded_bytes": $RSS_LOADED,
  "index_restart_bytes_per_blob": $PER_BLOB,
  "duration": "$DURATION",
  "warmup": "$WARMUP"
}
EOF

log "summary"
"$BENCH_BIN" summarize --results "$RESULTS" | tee "$RESULTS/summary.md"
echo >&2
echo "results in $RESULTS (total $(( $(date +%s) - STARTED_AT )) s)" >&2
