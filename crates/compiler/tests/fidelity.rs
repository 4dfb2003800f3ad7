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

/// tls.go `buildSidecarOutboundTLSFilterChainOpts` and listener.go
/// `buildListenerFromEntry`: TLS/HTTPS services sharing a wildcard port get
/// a chain each, matched on their hostname as SNI, with the TLS inspector;
/// a VirtualService `tls` route replaces the chains of every service its
/// hosts cover (here `*.fx-feed.io` covers `rates.fx-feed.io` too, so SNI
/// `rates.fx-feed.io` falls to the default chain), identical matches
/// merge; the default chain is the catch-all (PassthroughCluster under
/// ALLOW_ANY).
#[test]
fn tls_service_entries_on_one_port_match_by_sni() {
    let yaml = format!(
        "{CLIENT}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ledger-api, namespace: orders}}
spec:
  hosts: [ledger.fin-partner.io]
  ports: [{{number: 8443, name: tls-api, protocol: TLS}}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: fx, namespace: orders}}
spec:
  hosts: [rates.fx-feed.io, '*.fx-feed.io']
  ports: [{{number: 8443, name: https, protocol: HTTPS}}]
  resolution: NONE
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: fx-split, namespace: orders}}
spec:
  hosts: ['*.fx-feed.io']
  tls:
  - match: [{{sniHosts: [eu.fx-feed.io], port: 8443}}]
    route: [{{destination: {{host: rates.fx-feed.io, port: {{number: 8443}}}}}}]
"
    );
    let t = tables(&yaml, "deploy/checkout.orders");
    let l = t
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_8443")
        .expect("0.0.0.0_8443");
    let by_sni: Vec<(Vec<String>, String)> = l
        .filter_chains
        .iter()
        .map(|c| {
            let cluster = match &c.filters.last().expect("filter").typed_config {
                NetworkFilterConfig::TcpProxy(tp) => tp.cluster.clone().unwrap_or_default(),
                _ => String::new(),
            };
            (c.filter_chain_match.server_names.clone(), cluster)
        })
        .collect();
    assert!(
        by_sni.contains(&(
            vec!["ledger.fin-partner.io".into()],
            "outbound|8443||ledger.fin-partner.io".into()
        )),
        "{by_sni:?}"
    );
    assert!(
        by_sni.contains(&(
            vec!["eu.fx-feed.io".into()],
            "outbound|8443||rates.fx-feed.io".into()
        )),
        "{by_sni:?}"
    );
    assert_eq!(by_sni.len(), 2, "{by_sni:?}");
    assert!(by_sni.iter().all(|(sni, _)| !sni.is_empty()), "{by_sni:?}");
    let d = l.default_filter_chain.as_ref().expect("default chain");
    assert_eq!(d.name, "PassthroughFilterChain");
    assert!(l
        .listener_filters
        .iter()
        .any(|f| f.name == "envoy.filters.listener.tls_inspector"));
}

/// sidecar.go `computeWildcardHostVirtualServiceIndex` +
/// route.go `separateVSHostsAndServices`: a VirtualService naming a service
/// exactly owns it even when an older wildcard one covers it; the wildcard
/// keeps the services nobody names.
#[test]
fn exact_virtual_service_host_beats_an_older_wildcard() {
    let yaml = format!(
        "{CLIENT}---
apiVersion: v1
kind: Service
metadata: {{name: payments, namespace: orders}}
spec: {{selector: {{app: payments}}, ports: [{{name: http, port: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: invoices, namespace: orders}}
spec: {{selector: {{app: invoices}}, ports: [{{name: http, port: 8080}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: all-orders, namespace: orders, creationTimestamp: '2024-01-01T00:00:00Z'}}
spec:
  hosts: ['*.orders.svc.cluster.local']
  http: [{{timeout: 7s, route: [{{destination: {{host: invoices.orders.svc.cluster.local}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: payments, namespace: orders, creationTimestamp: '2025-06-01T00:00:00Z'}}
spec:
  hosts: [payments.orders.svc.cluster.local]
  http: [{{timeout: 3s, route: [{{destination: {{host: payments.orders.svc.cluster.local}}}}]}}]
"
    );
    let t = tables(&yaml, "deploy/checkout.orders");
    let rc = t
        .route_configs
        .iter()
        .find(|r| r.name == "8080")
        .expect("8080");
    let timeout_of = |vh: &str| -> u64 {
        let v = rc
            .virtual_hosts
            .iter()
            .find(|v| v.name == vh)
            .unwrap_or_else(|| panic!("{vh}"));
        match &v.routes[0].action {
            RouteAction::Route(t) => t.timeout.as_timeout().map(|d| d.as_secs()).unwrap_or(0),
            _ => 0,
        }
    };
    assert_eq!(timeout_of("payments.orders.svc.cluster.local:8080"), 3);
    assert_eq!(timeout_of("invoices.orders.svc.cluster.local:8080"), 7);
}

/// exportTo (push_context.go visibility): a ServiceEntry, VirtualService or
/// DestinationRule exported to `.` is seen only in its namespace; a list
/// names namespaces; `~` hides; the mesh defaults apply when a resource
/// says nothing.
#[test]
fn export_to_limits_what_each_namespace_sees() {
    let yaml = format!(
        "{CLIENT}---
apiVersion: v1
kind: Namespace
metadata: {{name: vendors, labels: {{istio-injection: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sync, namespace: vendors}}
spec:
  template:
    metadata: {{labels: {{app: sync}}}}
    spec: {{containers: [{{name: c, image: example/sync}}]}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: erp, namespace: vendors}}
spec:
  hosts: [erp.supplier-net.com]
  exportTo: [.]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
---
apiVersion: v1
kind: Service
metadata: {{name: catalog, namespace: vendors, annotations: {{networking.istio.io/exportTo: 'vendors,orders'}}}}
spec: {{selector: {{app: sync}}, ports: [{{name: http, port: 9000}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: secret-admin, namespace: vendors, annotations: {{networking.istio.io/exportTo: '~'}}}}
spec: {{selector: {{app: sync}}, ports: [{{name: http, port: 9100}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog-timeout, namespace: vendors}}
spec:
  hosts: [catalog.vendors.svc.cluster.local]
  exportTo: [.]
  http: [{{timeout: 2s, route: [{{destination: {{host: catalog.vendors.svc.cluster.local}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: catalog-pool, namespace: vendors}}
spec:
  host: catalog.vendors.svc.cluster.local
  exportTo: [.]
  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: 3}}}}}}
"
    );
    let orders = tables(&yaml, "deploy/checkout.orders");
    let vendors = tables(&yaml, "deploy/sync.vendors");
    let has = |t: &ProxyTables, c: &str| t.clusters.iter().any(|x| x.name == c);
    assert!(!has(&orders, "outbound|80||erp.supplier-net.com"));
    assert!(has(&vendors, "outbound|80||erp.supplier-net.com"));
    assert!(has(
        &orders,
        "outbound|9000||catalog.vendors.svc.cluster.local"
    ));
    assert!(!has(
        &orders,
        "outbound|9100||secret-admin.vendors.svc.cluster.local"
    ));
    assert!(!has(
        &vendors,
        "outbound|9100||secret-admin.vendors.svc.cluster.local"
    ));
    let timeout = |t: &ProxyTables| {
        let rc = t
            .route_configs
            .iter()
            .find(|r| r.name == "9000")
            .expect("9000");
        let vh = rc
            .virtual_hosts
            .iter()
            .find(|v| v.name == "catalog.vendors.svc.cluster.local:9000")
            .expect("vhost");
        match &vh.routes[0].action {
            RouteAction::Route(r) => r.timeout.as_timeout().map(|d| d.as_secs()).unwrap_or(0),
            _ => 99,
        }
    };
    assert_eq!(timeout(&vendors), 2);
    assert_eq!(timeout(&orders), 0);
    let max_conn = |t: &ProxyTables| {
        t.clusters
            .iter()
            .find(|c| c.name == "outbound|9000||catalog.vendors.svc.cluster.local")
            .map(|c| c.circuit_breakers.default_thresholds().max_connections)
            .expect("cluster")
    };
    assert_eq!(max_conn(&vendors), 3);
    assert_ne!(max_conn(&orders), 3);
}

/// sidecar.go: a Sidecar's egress `namespace/host` selects services *and*
/// VirtualServices (from the listed namespaces, with a host that meets a
/// listed host); services a selected VirtualService routes to come along.
#[test]
fn sidecar_egress_hosts_select_virtual_services_and_their_destinations() {
    let yaml = format!(
        "{CLIENT}---
apiVersion: v1
kind: Namespace
metadata: {{name: vendors}}
---
apiVersion: v1
kind: Service
metadata: {{name: payments, namespace: orders}}
spec: {{selector: {{app: payments}}, ports: [{{name: http, port: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: catalog, namespace: vendors}}
spec: {{selector: {{app: catalog}}, ports: [{{name: http, port: 9000}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: audit, namespace: vendors}}
spec: {{selector: {{app: audit}}, ports: [{{name: http, port: 9001}}]}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: orders}}
spec:
  egress: [{{hosts: [./*]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: foreign-timeout, namespace: vendors}}
spec:
  hosts: [payments.orders.svc.cluster.local]
  http: [{{timeout: 9s, route: [{{destination: {{host: payments.orders.svc.cluster.local}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partner, namespace: orders}}
spec:
  hosts: [payments.orders.svc.cluster.local]
  http:
  - match: [{{uri: {{prefix: /catalog}}}}]
    route: [{{destination: {{host: catalog.vendors.svc.cluster.local}}}}]
  - route: [{{destination: {{host: payments.orders.svc.cluster.local}}}}]
"
    );
    let t = tables(&yaml, "deploy/checkout.orders");
    let has = |c: &str| t.clusters.iter().any(|x| x.name == c);
    assert!(
        has("outbound|9000||catalog.vendors.svc.cluster.local"),
        "destination imported"
    );
    assert!(
        !has("outbound|9001||audit.vendors.svc.cluster.local"),
        "not listed"
    );
    let rc = t
        .route_configs
        .iter()
        .find(|r| r.name == "8080")
        .expect("8080");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "payments.orders.svc.cluster.local:8080")
        .expect("vhost");
    // The orders VirtualService (two routes), not the vendors one (9s).
    assert_eq!(vh.routes.len(), 2);
}
