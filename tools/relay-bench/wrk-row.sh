#!/usr/bin/env bash
# One wrk row against a server that is already running:
#   tools/relay-bench/wrk-row.sh BASE_URL CONCURRENCY [SECONDS]
# Warms for WARM seconds (default 3; 0 skips it), then measures; prints
# req/s, p50, p99, the number of requests and any errors.
# KEY (default sk-bench) is sent as the bearer key; SCRIPT (default
# post.lua) picks the request, e.g. SCRIPT=post-litellm.lua for LiteLLM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=$1; c=$2; secs=${3:-8}; warm=${WARM:-3}
threads=2; [ "$c" -lt 2 ] && threads=1
export KEY=${KEY:-sk-bench}
run() { wrk -t"$threads" -c"$c" -d"$1" --latency -s "$here/${SCRIPT:-post.lua}" "$url/v1/images/generations"; }
if [ "$warm" -gt 0 ]; then run "${warm}s" > /dev/null; fi
out=$(run "${secs}s")
rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
p50=$(awk '$1=="50%"{print $2}' <<<"$out"); p99=$(awk '$1=="99%"{print $2}' <<<"$out")
n=$(awk '/requests in/{print $1}' <<<"$out")
errs=$(grep -iE 'non-2xx|socket errors' <<<"$out" | tr -s ' \n' ' ' || true)
echo "c=$c req/s=$rps p50=$p50 p99=$p99 requests=$n${errs:+ ${errs% }}"
