#!/usr/bin/env bash
# One wrk row against a server that is already running:
#   tools/relay-bench/wrk-row.sh BASE_URL CONCURRENCY [SECONDS]
# Warms for 3 s, then measures; prints req/s, p50, p99 and any errors.
# KEY (default sk-bench) is sent as the bearer key; SCRIPT (default
# post.lua) picks the request, e.g. SCRIPT=post-litellm.lua for LiteLLM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=$1; c=$2; secs=${3:-8}
threads=2; [ "$c" -lt 2 ] && threads=1
export KEY=${KEY:-sk-bench}
wrk -t"$threads" -c"$c" -d3s -s "$here/${SCRIPT:-post.lua}" "$url/v1/images/generations" > /dev/null
out=$(wrk -t"$threads" -c"$c" -d"${secs}s" --latency -s "$here/${SCRIPT:-post.lua}" "$url/v1/images/generations")
rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
p50=$(awk '$1=="50%"{print $2}' <<<"$out"); p99=$(awk '$1=="99%"{print $2}' <<<"$out")
errs=$(grep -iE 'non-2xx|socket errors' <<<"$out" | tr '\n' ' ' || true)
echo "c=$c req/s=$rps p50=$p50 p99=$p99 $errs"
