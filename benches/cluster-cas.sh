#!/usr/bin/env bash
# The cluster CAS against a single node, measured in one sitting.
#
#   benches/cluster-cas.sh [RESULTS_DIR]
#
# 1. A single reapi-server: ByteStream write and read of 64 MiB blobs
#    (c=1), the baseline.
# 2. reapi-scheduler + 5 CAS-only reapi-workers (replica_count 3): the same
#    runs through the scheduler, which streams every write to 3 workers and
#    reads from the first holder. Printed as ratios to the baseline.
# 3. FindMissingBlobs of 10,000 digests through the scheduler (one batched
#    request per worker), c=4: digests per second.
# 4. Repair: REPAIR_GIB (default 1) of 64 MiB blobs are written, one worker
#    is killed (SIGKILL), and the time until every blob it held has 3
#    copies again on the survivors' disks is measured, as a ratio to the
#    disk's sequential write speed (dd, fdatasync) for the bytes copied.
#
# Talks to 127.0.0.1 only; stops every process it started.
# Environment: NO_BUILD=1, DURATION (default 8s), REPAIR_GIB (default 2),
# DATA_PARENT (default target/bench-data). Needs about 8 * REPAIR_GIB + 6
# GiB of free disk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${1:-$ROOT/target/bench-results/cluster-cas-$(date +%Y%m%d-%H%M%S)}
DURATION=${DURATION:-8s}
REPAIR_GIB=${REPAIR_GIB:-1}
DATA_PARENT=${DATA_PARENT:-$ROOT/target/bench-data}
WORKERS=5
mkdir -p "$RESULTS" "$DATA_PARENT"
RESULTS=$(cd "$RESULTS" && pwd)
RUN=$(mktemp -d "$DATA_PARENT/cluster.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
log() { printf '\n== %s\n' "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reapi-server -p reapi-benches --bins)
fi
BIN=$ROOT/target/release

# start NAME ARGS...: runs a binary in the background, logging to $RUN/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.out" 2>"$RUN/$name.log" &
    PIDS+=($!)
    echo $!
}

# wait_line FILE PATTERN: waits up to 60 s for a line matching PATTERN.
wait_line() {
    for _ in $(seq 600); do
        if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    return 1
}

# bench NAME TARGET ARGS...: one reapi-bench run; prints its JSON's figure.
bench() {
    local name=$1 target=$2
    shift 2
    log "$name: reapi-bench $* --target $target"
    "$BIN/reapi-bench" "$@" --target "$target" --quiet --json "$RESULTS/$name.json" >&2
}
figure() { jq -r ".reports[0].$2" "$RESULTS/$1.json"; }
# cpu_ticks PID...: user + system CPU the processes used so far, in ticks.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
    echo "$total"
}
TICK=$(getconf CLK_TCK)
WRITE_GB=$(echo "24 * 64 * 1048576 / 1000000000" | bc -l)

# --- single node -------------------------------------------------------------
log "single node"
start single "$BIN/reapi-server" --listen 127.0.0.1:0 --data-dir "$RUN/single" >/dev/null
wait_line "$RUN/single.out" "listening on"
SINGLE=grpc://$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$RUN/single.out" | head -1)
# Writes are counted, not timed: a timed run at disk speed fills the disk.
WRITES=(--count 24 --warmup 0s)
TIMED=(--duration "$DURATION" --warmup 2s)
T0=$(cpu_ticks "${PIDS[0]}")
bench single-write "$SINGLE" cas-write --size 64MiB --concurrency 1 "${WRITES[@]}"
SINGLE_CPU=$(echo "($(cpu_ticks "${PIDS[0]}") - $T0) / $TICK" | bc -l)
bench single-read "$SINGLE" cas-read --size 64MiB --concurrency 1 "${TIMED[@]}"
kill -TERM "${PIDS[0]}"
sleep 1
rm -rf "$RUN/single"

# --- cluster -----------------------------------------------------------------
log "cluster: 1 scheduler + $WORKERS workers, replica_count 3"
start scheduler "$BIN/reapi-scheduler" --listen 127.0.0.1:0 --data-dir "$RUN/scheduler" >/dev/null
wait_line "$RUN/scheduler.out" "listening on"
SCHED_ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$RUN/scheduler.out" | head -1)
WORKER_PIDS=()
for i in $(seq 0 $((WORKERS - 1))); do
    WORKER_PIDS+=("$(start "worker-$i" "$BIN/reapi-worker" --schedulers "$SCHED_ADDR" \
        --executors 0 --data-dir "$RUN/worker-$i" --disk_size 20GiB)")
done
# Started in a subshell, so `start` could not record them for cleanup.
PIDS+=("${WORKER_PIDS[@]}")
for i in $(seq 0 $((WORKERS - 1))); do wait_line "$RUN/worker-$i.out" "ready"; done
wait_line "$RUN/scheduler.log" "cluster CAS members changed: .*,.*,.*,.*,"
CLUSTER=grpc://$SCHED_ADDR
SCHED_PID=${PIDS[1]}
S0=$(cpu_ticks "$SCHED_PID")
W0=$(cpu_ticks "${WORKER_PIDS[@]}")
bench cluster-write "$CLUSTER" cas-write --size 64MiB --concurrency 1 "${WRITES[@]}"
SCHED_CPU=$(echo "($(cpu_ticks "$SCHED_PID") - $S0) / $TICK" | bc -l)
WORKERS_CPU=$(echo "($(cpu_ticks "${WORKER_PIDS[@]}") - $W0) / $TICK" | bc -l)
bench cluster-read "$CLUSTER" cas-read --size 64MiB --concurrency 1 "${TIMED[@]}"
bench cluster-find-missing "$CLUSTER" find-missing --digests 10000 --present-fraction 0.5 --concurrency 4 "${TIMED[@]}"

# --- repair ------------------------------------------------------------------
log "repair: writing $REPAIR_GIB GiB of 64 MiB blobs"
"$BIN/reapi-bench" cas-write --target "$CLUSTER" --size 64MiB --concurrency 2 \
    --count $((REPAIR_GIB * 16)) --warmup 0s --seed 7 --quiet --json "$RESULTS/repair-fill.json" >&2
blobs_of() { find "$RUN/$1/cas/cas" -type f -name '*-*' -printf '%f\n' 2>/dev/null | sort; }
VICTIM=0
blobs_of "worker-$VICTIM" >"$RUN/victim.list"
VICTIM_BLOBS=$(wc -l <"$RUN/victim.list")
VICTIM_BYTES=$(du -sb "$RUN/worker-$VICTIM/cas/cas" | cut -f1)
kill -KILL "${WORKER_PIDS[$VICTIM]}"
KILLED_AT=$(date +%s.%N)
log "killed worker $VICTIM holding $VICTIM_BLOBS blobs ($VICTIM_BYTES bytes); waiting for 3 copies of each"
REPAIRED=""
for _ in $(seq 3000); do
    missing=0
    for i in $(seq 0 $((WORKERS - 1))); do
        [ "$i" = "$VICTIM" ] && continue
        blobs_of "worker-$i"
    done | sort | uniq -c | awk '$1 >= 3 {print $2}' >"$RUN/repaired.list"
    missing=$(comm -23 "$RUN/victim.list" "$RUN/repaired.list" | wc -l)
    if [ "$missing" = 0 ]; then
        REPAIRED=$(date +%s.%N)
        break
    fi
    sleep 0.2
done
[ -n "$REPAIRED" ] || { echo "repair did not finish in 10 minutes" >&2; exit 1; }
REPAIR_S=$(echo "$REPAIRED - $KILLED_AT" | bc -l)
log "repaired in $REPAIR_S s"

log "disk write speed (dd, 1 GiB, fdatasync)"
DD_OUT=$(dd if=/dev/zero of="$RUN/dd.bin" bs=4M count=256 conv=fdatasync 2>&1 | tail -1)
rm -f "$RUN/dd.bin"
DD_MBS=$(echo "$DD_OUT" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[GM]B\/s$/) { v = $(i-1); if ($i == "GB/s") v *= 1000; print v }}')

# --- summary -----------------------------------------------------------------
SW=$(figure single-write mb_per_s); SR=$(figure single-read mb_per_s)
CW=$(figure cluster-write mb_per_s); CR=$(figure cluster-read mb_per_s)
FM=$(figure cluster-find-missing items_per_s)
REPAIR_MBS=$(echo "$VICTIM_BYTES / 1000000 / $REPAIR_S" | bc -l)
{
    echo "| measure | single node | cluster (3 copies of 5) | ratio |"
    echo "|---|---|---|---|"
    printf '| ByteStream write 64 MiB, c=1 | %.0f MB/s | %.0f MB/s | %.2f x |\n' "$SW" "$CW" "$(echo "$CW / $SW" | bc -l)"
    printf '| CPU seconds per GB written | server %.2f | scheduler %.2f + workers %.2f (3 copies) | %.2f x |\n' \
        "$(echo "$SINGLE_CPU / $WRITE_GB" | bc -l)" "$(echo "$SCHED_CPU / $WRITE_GB" | bc -l)" \
        "$(echo "$WORKERS_CPU / $WRITE_GB" | bc -l)" "$(echo "($SCHED_CPU + $WORKERS_CPU) / $SINGLE_CPU" | bc -l)"
    printf '| ByteStream read 64 MiB, c=1 | %.0f MB/s | %.0f MB/s | %.2f x |\n' "$SR" "$CR" "$(echo "$CR / $SR" | bc -l)"
    printf '| FindMissingBlobs 10k digests, c=4 | | %.0f digests/s | |\n' "$FM"
    printf '| repair after a worker loss | | %d blobs, %.0f MB in %.1f s = %.0f MB/s | %.2f x disk (dd %s MB/s) |\n' \
        "$VICTIM_BLOBS" "$(echo "$VICTIM_BYTES / 1000000" | bc -l)" "$REPAIR_S" "$REPAIR_MBS" \
        "$(echo "$REPAIR_MBS / $DD_MBS" | bc -l)" "$DD_MBS"
} | tee "$RESULTS/summary.md"
