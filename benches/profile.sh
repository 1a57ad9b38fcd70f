#!/usr/bin/env bash
# Samples reapi-server with perf while reapi-bench runs one scenario, and
# prints where the server's CPU time goes.
#
#   benches/profile.sh NAME SCENARIO [reapi-bench options...]
#   e.g. benches/profile.sh find-missing find-missing --digests 10000 --concurrency 4
#
# Starts a fresh server on 127.0.0.1 (release build; SERVER_BIN to choose
# another), runs reapi-bench against it, records the server with
# `perf record -e cpu-clock` (software clock: hardware counters are not
# available in this VM) with DWARF call graphs for PERF_SECONDS (default 5)
# after a 3 s warm-up, then writes to OUT (default target/bench-profiles):
#   NAME.self.txt      functions by self time
#   NAME.children.txt  functions by inclusive time
#   NAME.bench.txt     the reapi-bench table
# Every step is bounded in time; the server is stopped at the end.
set -euo pipefail

NAME=${1:?usage: profile.sh NAME SCENARIO [options...]}
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/reapi-server}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/reapi-bench}
OUT=${OUT:-$ROOT/target/bench-profiles}
PERF_SECONDS=${PERF_SECONDS:-5}
EXECUTORS=${EXECUTORS:-2}
mkdir -p "$OUT"
DATA=$(mktemp -d "${TMPDIR:-/tmp}/reapi-profile.XXXXXX")
SERVER_PID=
BENCH_PID=
cleanup() {
    [ -n "$BENCH_PID" ] && kill "$BENCH_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

RUST_LOG=warn "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$DATA/data" \
    --executors "$EXECUTORS" >"$DATA/server.out" 2>"$DATA/server.err" &
SERVER_PID=$!
ADDR=
for _ in $(seq 300); do
    ADDR=$(sed -n 's/^reapi-server listening on \(127\.0\.0\.1:[0-9]*\),.*/\1/p' "$DATA/server.out")
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$DATA/server.err" >&2; echo "profile.sh: server did not start" >&2; exit 1; }

timeout 300 "$BENCH_BIN" "$@" --target "grpc://$ADDR" --server-pid "$SERVER_PID" \
    --warmup 3s --duration "$((PERF_SECONDS + 3))s" --quiet >"$OUT/$NAME.bench.txt" 2>&1 &
BENCH_PID=$!
# Set-up (uploads) plus warm-up: wait for the measured phase.
sleep "${SETTLE:-4}"
# PERF_SCOPE=all samples the whole machine (the server's children too, e.g.
# the commands an Execute runs, and the kernel's work for them).
if [ "${PERF_SCOPE:-server}" = all ]; then SCOPE=(-a); else SCOPE=(-p "$SERVER_PID"); fi
timeout $((PERF_SECONDS + 30)) perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 \
    "${SCOPE[@]}" -o "$OUT/$NAME.perf.data" -- sleep "$PERF_SECONDS" 2>/dev/null
wait "$BENCH_PID" || true
BENCH_PID=
cat "$OUT/$NAME.bench.txt"

perf report -i "$OUT/$NAME.perf.data" --no-children --stdio --sort "${SORT:-symbol}" \
    --percent-limit 0.7 -g none 2>/dev/null | grep -v '^$' >"$OUT/$NAME.self.txt" || true
perf report -i "$OUT/$NAME.perf.data" --children --stdio --sort symbol \
    --percent-limit 3 -g none 2>/dev/null | grep -v '^$' >"$OUT/$NAME.children.txt" || true
# perf pads every line to the longest symbol: trim, and cut long generic names.
tidy() { grep -v '^#' "$1" | sed -e 's/ *- *- *$//' -e 's/ *$//' | cut -c1-${WIDTH:-150}; }
echo "--- self time (top) ---"
tidy "$OUT/$NAME.self.txt" | head -30
echo "--- inclusive time (top) ---"
tidy "$OUT/$NAME.children.txt" | head -40
echo "profile.sh: data in $OUT/$NAME.*" >&2
