#!/usr/bin/env bash
# A Lua-sized Bazel build, timed locally and against the server, interleaved.
#
#   benches/lua-build.sh [ROUNDS]
#
# Builds the four Lua versions of the `lua-src` crate (5.1 to 5.4), each in
# two variants (-O2, -O0 -g): about 250 C compile actions and 8 links, with
# Debian's Bazel 4.2.3. Each round runs, in turn:
#   local    plain `bazel build` (linux-sandbox, --jobs=2)
#   aio      --remote_executor to reapi-server with its 2 local executors
#   cluster  --remote_executor to reapi-scheduler with 2 reapi-workers of one
#            executor each, over loopback
# every one after `bazel clean` and with a fresh salt, so every action runs.
# It prints each build's wall time (Bazel's "Elapsed time"), the ratios to
# the local build of the same round, and the server processes' CPU time per
# executed action (utime + stime from /proc, over the build).
#
# Environment: SERVER_BIN, SCHEDULER_BIN, WORKER_BIN (default
# target/release/...), NO_BUILD=1, OUT (default target/bench-lua).
set -euo pipefail

ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-lua}
SERVER_BIN=${SERVER_BIN:-$ROOT/target/release/reapi-server}
SCHEDULER_BIN=${SCHEDULER_BIN:-$ROOT/target/release/reapi-scheduler}
WORKER_BIN=${WORKER_BIN:-$ROOT/target/release/reapi-worker}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    (cd "$OUT/ws" 2>/dev/null && bazel --output_user_root="$OUT/bazel-root" shutdown >/dev/null 2>&1) || true
}
trap cleanup EXIT

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p reapi-server --bins)
fi

# --- the workspace: Lua sources from the lua-src crate -------------------------
if [ ! -d "$OUT/ws" ]; then
    fetch="$OUT/fetch"
    mkdir -p "$fetch/src"
    printf '[workspace]\n[package]\nname = "lua-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nlua-src = "=547.0.0"\n' >"$fetch/Cargo.toml"
    echo 'fn main() {}' >"$fetch/src/main.rs"
    (cd "$fetch" && cargo fetch --quiet)
    src=$(cd "$fetch" && cargo metadata --format-version 1 --quiet |
        python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="lua-src"][0])')
    src=$(dirname "$src")
    mkdir -p "$OUT/ws"
    cp -r "$ROOT/e2e/bazel-workspace/third_party" "$ROOT/e2e/bazel-workspace/.bazelrc" "$OUT/ws/"
    sed 's/reapi_e2e/lua_bench/' "$ROOT/e2e/bazel-workspace/WORKSPACE" >"$OUT/ws/WORKSPACE"
    for version in 5.1.5 5.2.4 5.3.6 5.4.7; do
        dir="$OUT/ws/lua-$version"
        mkdir -p "$dir"
        # 5.1 keeps its sources under src/.
        if [ -d "$src/lua-$version/src" ]; then cp "$src/lua-$version/src/"*.[ch] "$dir/"; else cp "$src/lua-$version/"*.[ch] "$dir/"; fi
        sed "s/VERSION/$version/" "$ROOT/benches/lua-build/BUILD.tmpl" >"$dir/BUILD"
        cp "$ROOT/benches/lua-build/main.c" "$dir/"
    done
fi
cd "$OUT/ws"

ready_line() { # FILE PREFIX: waits for a line starting with PREFIX
    for _ in $(seq 600); do
        grep -q "^$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "lua-build.sh: no '$2' line in $1" >&2
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # PID...: utime + stime of the processes, in seconds
    local total=0
    for pid in "$@"; do
        total=$(awk -v t="$total" '{ print t + $14 + $15 }' "/proc/$pid/stat")
    done
    awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# build MODE URL: one clean, salted build; prints "seconds actions".
build() {
    local mode=$1 url=$2 salt flags=()
    salt=$(date +%s%N)
    bazel --output_user_root="$OUT/bazel-root" clean >/dev/null 2>&1
    flags=(--jobs=2 "--action_env=SALT=$salt" "--host_action_env=SALT=$salt")
    if [ -n "$url" ]; then
        flags+=("--remote_executor=$url" --remote_timeout=600)
    fi
    bazel --output_user_root="$OUT/bazel-root" build "${flags[@]}" //... >"$OUT/$mode.log" 2>&1
    local seconds actions
    seconds=$(sed -n 's/^INFO: Elapsed time: \([0-9.]*\)s.*/\1/p' "$OUT/$mode.log" | tail -1)
    # Executed actions: remote ones, or local sandboxed ones.
    actions=$(grep -E "^INFO: [0-9]+ processes" "$OUT/$mode.log" | tail -1 |
        grep -oE "[0-9]+ (remote|linux-sandbox|processwrapper-sandbox|local)" | awk '{ n += $1 } END { print n + 0 }')
    grep -E "^INFO: [0-9]+ processes" "$OUT/$mode.log" | tail -1 >&2
    echo "$seconds $actions"
}

# Warm Bazel's server and analysis cache once.
bazel --output_user_root="$OUT/bazel-root" build --nobuild //... >/dev/null 2>&1

printf '%-6s %-8s %8s %8s %10s %14s\n' round mode seconds "x local" "server CPU" "CPU ms/action"
for round in $(seq "$ROUNDS"); do
    read -r local_s _ < <(build local "")

    port=$(free_port)
    rm -rf "$OUT/aio-data"
    "$SERVER_BIN" --listen "127.0.0.1:$port" --data-dir "$OUT/aio-data" --executors 2 \
        >"$OUT/aio.out" 2>"$OUT/aio.err" &
    aio=$!; PIDS+=("$aio")
    ready_line "$OUT/aio.out" "reapi-server listening"
    before=$(cpu_ticks "$aio")
    read -r aio_s aio_actions < <(build aio "grpc://127.0.0.1:$port")
    aio_cpu=$(awk -v a="$(cpu_ticks "$aio")" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
    kill -TERM "$aio"; wait "$aio" 2>/dev/null || true

    port=$(free_port)
    rm -rf "$OUT/cluster"
    mkdir -p "$OUT/cluster"
    "$SCHEDULER_BIN" --listen "127.0.0.1:$port" --data-dir "$OUT/cluster/scheduler" \
        >"$OUT/cluster/scheduler.out" 2>"$OUT/cluster/scheduler.err" &
    sched=$!; PIDS+=("$sched")
    ready_line "$OUT/cluster/scheduler.out" "reapi-scheduler listening"
    workers=()
    for w in 1 2; do
        "$WORKER_BIN" --schedulers "127.0.0.1:$port" --data-dir "$OUT/cluster/worker$w" --executors 1 \
            >"$OUT/cluster/worker$w.out" 2>"$OUT/cluster/worker$w.err" &
        workers+=("$!"); PIDS+=("$!")
    done
    for w in 1 2; do ready_line "$OUT/cluster/worker$w.out" "reapi-worker"; done
    before=$(cpu_ticks "$sched" "${workers[@]}")
    read -r cluster_s cluster_actions < <(build cluster "grpc://127.0.0.1:$port")
    cluster_cpu=$(awk -v a="$(cpu_ticks "$sched" "${workers[@]}")" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
    kill -TERM "${workers[@]}" "$sched" 2>/dev/null || true
    wait "${workers[@]}" "$sched" 2>/dev/null || true

    printf '%-6s %-8s %8s %8s %10s %14s\n' "$round" local "$local_s" 1.00 - -
    for row in "aio $aio_s $aio_cpu $aio_actions" "cluster $cluster_s $cluster_cpu $cluster_actions"; do
        read -r mode secs cpu actions <<<"$row"
        awk -v r="$round" -v m="$mode" -v s="$secs" -v l="$local_s" -v c="$cpu" -v n="$actions" \
            'BEGIN { printf "%-6s %-8s %8.1f %8.2f %10.2f %14.1f\n", r, m, s, s / l, c, (n > 0 ? c * 1000 / n : 0) }'
    done
done
