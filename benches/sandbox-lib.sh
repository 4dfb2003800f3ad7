# Shared by the sandbox benchmarks: build meshsim in release, start a
# Bookinfo sandbox (access logs to a sink that discards them), find its
# ports, read its memory. Source it; not run by CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
cargo build --release -q -p meshsim
BIN=target/release/meshsim
OUT=$(mktemp -d)
trap 'kill "$SANDBOX" 2>/dev/null || true; wait "$SANDBOX" 2>/dev/null || true; rm -rf "$OUT"' EXIT

start_sandbox() {
  "$BIN" sandbox -f tests/fixtures/bookinfo --seed 1 >"$OUT/ports" 2>/dev/null &
  SANDBOX=$!
  for _ in $(seq 100); do grep -q "^Admin" "$OUT/ports" 2>/dev/null && break; sleep 0.1; done
  grep -q "^Admin" "$OUT/ports" || { echo "sandbox did not start" >&2; exit 1; }
}

# The local port a client pod uses to reach NAME (e.g. reviews...:9080).
entry_port() {
  grep -m1 " $1" "$OUT/ports" | sed -E 's/.*-> 127\.0\.0\.1:([0-9]+).*/\1/'
}

# The ingress gateway's local port for outside port 80.
gateway_port() {
  grep -m1 -E '^ +80 -> ' "$OUT/ports" | sed -E 's/.*-> 127\.0\.0\.1:([0-9]+).*/\1/'
}

# Resident and peak resident memory of the sandbox, in MiB.
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$SANDBOX/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SANDBOX/status"; }
