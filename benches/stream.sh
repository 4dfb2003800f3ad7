#!/usr/bin/env bash
# Streaming: a 1 GiB upload (chunked, curl -T -) and a 1 GiB download
# (/stream-bytes/N) between a client pod and reviews, through two sidecars,
# and the sandbox's peak resident memory before and after. Bodies stream:
# the growth must stay under 64 MiB. Usage: benches/stream.sh [BYTES].
source "$(dirname "$0")/sandbox-lib.sh"
BYTES=${1:-1073741824}
start_sandbox
PORT=$(entry_port "reviews.default.svc.cluster.local:9080")
TO="--connect-to reviews:9080:127.0.0.1:$PORT"
curl -sf -o /dev/null $TO http://reviews:9080/ || { echo "reviews does not answer" >&2; exit 1; }
before=$(hwm_mib)
t0=$(date +%s.%N)
up=$(head -c "$BYTES" /dev/zero | curl -sS $TO -T - http://reviews:9080/upload | grep -ao '([0-9]* bytes in all)')
t1=$(date +%s.%N)
down=$(curl -sS $TO -o /dev/null -w '%{size_download}' "http://reviews:9080/stream-bytes/$BYTES")
t2=$(date +%s.%N)
after=$(hwm_mib)
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }
echo "upload:   $BYTES bytes sent, reviews says $up, $(sub "$t1" "$t0") s"
echo "download: $down bytes received, $(sub "$t2" "$t1") s"
echo "peak RSS: $before MiB before, $after MiB after (growth $(sub "$after" "$before") MiB)"
