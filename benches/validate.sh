#!/usr/bin/env bash
# validate at scale: 100k small documents (Services across 50 namespaces,
# ~11 MiB) in one file of a directory split in files under the per-file
# cap; prints the time, the peak resident memory and its ratio to the
# input. Usage: benches/validate.sh [DOCS] (default 100000). Run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${1:-100000}
cargo build --release -q -p meshsim
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" "$DOCS" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
per = 20000
for f in range(0, n, per):
    with open(f"{d}/services-{f // per:03}.yaml", "w") as out:
        for i in range(f, min(n, f + per)):
            out.write(f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: ns{i % 50}}}\nspec:\n  ports: [{{port: 80, name: http}}]\n---\n")
PY
bytes=$(cat "$DIR"/*.yaml | wc -c)
python3 - "$DIR" "$bytes" <<'PY'
import resource, subprocess, sys, time
d, size = sys.argv[1], int(sys.argv[2])
t0 = time.time()
r = subprocess.run(["target/release/meshsim", "validate", "-f", d], capture_output=True, text=True)
secs = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(r.stdout.strip() or r.stderr.strip().splitlines()[-1])
print(f"input {size / 2**20:.1f} MiB, {secs:.2f} s, peak RSS {peak / 2**20:.0f} MiB ({peak / size:.0f}x the input)")
PY
