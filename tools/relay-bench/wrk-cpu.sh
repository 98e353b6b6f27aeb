#!/usr/bin/env bash
# Serves the upstream_relay bench binary (imagegate with one channel to its
# in-process instant double, data on tmpfs) and drives it with wrk:
#   tools/relay-bench/wrk-cpu.sh BENCH_BINARY CONCURRENCY [SECONDS]
# Besides wrk's req/s, p50 and p99 it prints the process's CPU time per
# request, that of its sqlx-sqlite threads alone, and its threads' context
# switches per request, all read from /proc (no hardware counters needed).
# Other BENCH_* variables pass through
# (BENCH_METERED=1 for a paying account's key).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1; c=$2; secs=${3:-8}
log=$(mktemp)
# The server's database and objects go to a folder of their own, removed
# at the end: killed, the bench cannot remove them itself, and on tmpfs
# they would pile up in memory run after run.
data=$(mktemp -d -p "${TMPDIR:-/dev/shm}")
BENCH_SERVE_SECS=$((secs + 60)) TMPDIR=$data "$bin" --bench > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$log" "$data"' EXIT
for _ in $(seq 1 100); do grep -q '^imagegate' "$log" && break; sleep 0.3; done
url=$(awk '/^imagegate/{print $2}' "$log"); export KEY=$(awk '/^imagegate/{print $4}' "$log")
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sqlite_ticks() { cat /proc/"$pid"/task/*/stat 2>/dev/null | awk '/sqlx-sqlite/{s += $14 + $15} END {print s + 0}'; }
# Context switches of all the process's threads, voluntary or not.
switches() { cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s += $2} END {print s + 0}'; }
# Warm up apart, so that the readings cover the measured run alone.
WARM=0 "$here/wrk-row.sh" "$url" "$c" 3 > /dev/null
t0=$(ticks); s0=$(sqlite_ticks); x0=$(switches)
row=$(WARM=0 "$here/wrk-row.sh" "$url" "$c" "$secs")
t1=$(ticks); s1=$(sqlite_ticks); x1=$(switches)
hz=$(getconf CLK_TCK)
n=$(grep -o 'requests=[0-9]*' <<<"$row" | cut -d= -f2)
echo "$row cpu_us/req=$(( (t1 - t0) * 1000000 / hz / n )) sqlite_us/req=$(( (s1 - s0) * 1000000 / hz / n )) switches/req=$(awk -v x=$((x1 - x0)) -v n="$n" 'BEGIN {printf "%.1f", x / n}')"
