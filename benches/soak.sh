#!/usr/bin/env bash
# Soak: drives 1M requests through a Bookinfo sandbox's ingress gateway
# (gateway → productpage sidecar → app) with wrk and reports the sandbox's
# resident memory at 0, 100k, 500k and 1M requests. Memory must stay flat:
# access-log lines stream to their sink, only a bounded window is kept.
# Usage: benches/soak.sh [TOTAL] (default 1000000). Run by hand.
source "$(dirname "$0")/sandbox-lib.sh"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
TOTAL=${1:-1000000}
start_sandbox
GW=$(gateway_port)
URL="http://127.0.0.1:$GW/productpage"
curl -sf -o /dev/null "$URL" || { echo "gateway does not answer $URL" >&2; exit 1; }
printf "%10s  %9s\n" requests "RSS MiB"
printf "%10d  %9s\n" 0 "$(rss_mib)"
done_n=0
marks=(100000 500000 1000000)
[ "$TOTAL" -lt 1000000 ] && marks=($((TOTAL / 10)) $((TOTAL / 2)) "$TOTAL")
for mark in "${marks[@]}"; do
  while [ "$done_n" -lt "$mark" ]; do
    n=$(wrk -t1 -c16 -d5s "$URL" | awk '/requests in/ {print $1}')
    done_n=$((done_n + n))
  done
  printf "%10d  %9s\n" "$done_n" "$(rss_mib)"
done
