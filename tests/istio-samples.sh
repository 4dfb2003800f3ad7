#!/usr/bin/env bash
# Loads every Kubernetes manifest of Istio's samples/ with `meshsim
# validate` and fails on any error (warnings — kinds meshsim does not
# simulate — are expected). Needs network access to clone istio/istio, so
# it is a developer check, not part of .ci/run.
#   tests/istio-samples.sh [ISTIO_REF]
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-master}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
git clone -q --depth 1 --branch "$ref" --filter=blob:none --sparse https://github.com/istio/istio "$dir/istio"
git -C "$dir/istio" sparse-checkout set samples
cargo build -q --release
failed=0
while IFS= read -r f; do
  # Helm charts and values files are not manifests.
  case "$f" in */templates/*|*/Chart.yaml|*values*.yaml|*swagger.yaml|*spire-base.yaml|*spire-east.yaml|*spire-west.yaml) continue ;; esac
  if ! out="$(target/release/meshsim validate -f "$f" 2>&1)"; then
    echo "== $f"; echo "$out" | grep ': error:' || true; failed=1
  fi
done < <(find "$dir/istio/samples" -name '*.yaml' | sort)
exit "$failed"
