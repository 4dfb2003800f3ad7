//! istiod's general rules on inputs unlike the scenarios' (issue 9), each
//! with the source it follows.

mod common;

use common::{load_errors, tables};
use meshsim_tables::*;

fn tls_modes(t: &ProxyTables, cluster: &str) -> Vec<String> {
    t.endpoints
        .iter()
        .find(|e| e.cluster_name == cluster)
        .map(|e| {
            e.endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .map(|ep| {
                    ep.metadata
                        .as_ref()
                        .map(|m| m.filter_metadata.transport_socket_match.tls_mode.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

const CLIENT: &str = "apiVersion: v1
kind: Namespace
metadata: {name: orders, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: orders}
spec:
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: c, image: example/checkout}]}
";

/// Auto mTLS follows the endpoint's `security.istio.io/tlsMode`, which the
/// sidecar injection template sets (injection-template.yaml) and the
/// gateway template does not: a gateway, or an uninjected pod, is reached
/// in plaintext; an uninjected pod labelled `istio` gets mutual TLS.
#[test]
fn auto_mtls_follows_the_tls_mode_label_not_being_a_proxy() {
    let yaml = format!(
        "{CLIENT}---
apiVersion: v1
kind: Namespace
metadata: {{name: edge}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: front-gw, namespace: edge}}
spec:
  template:
    metadata: {{labels: {{istio: front}}, annotations: {{inject.istio.io/templates: gateway}}}}
    spec: {{containers: [{{name: istio-proxy, image: auto}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: front-gw, namespace: edge}}
spec: {{selector: {{istio: front}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: vm-like, namespace: orders}}
spec:
  template:
    metadata: {{labels: {{app: ledger, security.istio.io/tlsMode: istio}}, annotations: {{sidecar.istio.io/inject: \"false\"}}}}
    spec: {{containers: [{{name: l, image: example/ledger, ports: [{{containerPort: 7000}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: ledger, namespace: orders}}
spec: {{selector: {{app: ledger}}, ports: [{{name: grpc, port: 7000}}]}}
"
    );
    let t = tables(&yaml, "deploy/checkout.orders");
    assert_eq!(
        tls_modes(&t, "outbound|80||front-gw.edge.svc.cluster.local"),
        ["disabled"]
    );
    assert_eq!(
        tls_modes(&t, "outbound|7000||ledger.orders.svc.cluster.local"),
        ["istio"]
    );
}

/// `workloadSelector.labels` on Sidecar, EnvoyFilter and ServiceEntry
/// (networking/v1alpha3 WorkloadSelector); `matchLabels` on DestinationRule
/// and the security kinds (type/v1beta1 WorkloadSelector).
#[test]
fn workload_selectors_take_each_kinds_field() {
    let ok = format!(
        "{CLIENT}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: checkout, namespace: orders}}
spec:
  workloadSelector: {{labels: {{app: checkout}}}}
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: lua, namespace: orders}}
spec:
  workloadSelector: {{labels: {{app: checkout}}}}
  configPatches: []
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: any, namespace: orders}}
spec:
  host: '*.orders.svc.cluster.local'
  workloadSelector: {{matchLabels: {{app: checkout}}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: orders}}
spec:
  selector: {{matchLabels: {{app: checkout}}}}
  mtls: {{mode: STRICT}}
"
    );
    assert_eq!(load_errors(&ok), "");
    let swapped = format!(
        "{CLIENT}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: checkout, namespace: orders}}
spec:
  workloadSelector: {{matchLabels: {{app: checkout}}}}
"
    );
    let e = load_errors(&swapped);
    assert!(e.contains("matchLabels"), "{e}");
}
