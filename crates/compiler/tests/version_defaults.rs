//! Defaults that changed between Istio releases, gated on the simulated
//! version, Helm's `compatibilityVersion` and the istiod Deployment's env
//! (manifests/helm-profiles/compatibility-version-*.yaml,
//! pilot/pkg/features), and Istio's own gateways.

mod common;

use meshsim_compiler::{compile_proxy, find_proxy, IstioVersion, NamespaceFlag, Settings, World};
use meshsim_tables::*;

const APPS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: pay, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: till, namespace: pay}
spec:
  template:
    metadata: {labels: {app: till}}
    spec: {containers: [{name: till, image: example/till, ports: [{containerPort: 6100}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: till, namespace: pay}
spec:
  selector: {app: till}
  ports: [{name: http-till, port: 6100}]
";

fn world(yaml: &str, version: &str, compat: Option<&str>) -> World {
    let settings = Settings {
        istio_version: IstioVersion::parse(version).expect("version"),
        compatibility_version: compat.and_then(IstioVersion::parse),
        ..Settings::default()
    };
    let (w, diags) = World::from_loaded(
        meshsim_model::parse_str("test.yaml", yaml),
        settings,
        &NamespaceFlag::Unset,
    );
    assert!(!diags.has_errors(), "{}", diags.error_text());
    w
}

fn tables(w: &World, proxy: &str) -> ProxyTables {
    compile_proxy(w, find_proxy(w, proxy).expect("proxy"))
}

fn route_retry<'a>(t: &'a ProxyTables, rc: &str, vhost: &str) -> Option<&'a RetryPolicy> {
    let inline = t
        .listeners
        .iter()
        .flat_map(|l| &l.filter_chains)
        .flat_map(|c| &c.filters)
        .filter_map(|f| f.hcm())
        .filter_map(|h| h.route_config.as_ref());
    let rc = t
        .route_configs
        .iter()
        .chain(inline)
        .find(|r| r.name == rc)
        .expect("rc");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == vhost)
        .expect("vhost");
    match &vh.routes[0].action {
        RouteAction::Route(t) => t.retry_policy.as_ref(),
        _ => None,
    }
}

fn outbound_codes(w: &World) -> Vec<u16> {
    let t = tables(w, "till-0.pay");
    route_retry(&t, "6100", "till.pay.svc.cluster.local:6100")
        .expect("default retry policy")
        .retriable_status_codes
        .clone()
}

/// retry.go: `retriable_status_codes: [503]` until 1.24
/// (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY); the 1.23 compatibility
/// profile and istiod's env set it back.
#[test]
fn default_retry_policy_503_follows_version_profile_and_env() {
    assert_eq!(outbound_codes(&world(APPS, "1.23.2", None)), vec![503]);
    assert!(outbound_codes(&world(APPS, "1.24.0", None)).is_empty());
    assert_eq!(
        outbound_codes(&world(APPS, "1.28.1", Some("1.23"))),
        vec![503]
    );
    let istiod = "---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system}
spec:
  template:
    metadata: {labels: {app: istiod}}
    spec:
      containers:
      - name: discovery
        image: docker.io/istio/pilot:1.28.1
        env:
        - {name: PILOT_TRACE_SAMPLING, value: \"1\"}
        - {name: EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, value: \"false\"}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
";
    assert_eq!(
        outbound_codes(&world(&format!("{APPS}{istiod}"), "1.28.1", None)),
        vec![503]
    );
}

/// ENABLE_INBOUND_RETRY_POLICY (1.24): the inbound route retries
/// `reset-before-request` twice (retry.go `ConvertInboundPolicy`).
#[test]
fn inbound_retry_policy_from_1_24() {
    let inbound = |v: &str| {
        let t = tables(&world(APPS, v, None), "till-0.pay");
        route_retry(&t, "inbound|6100||", "inbound|http|6100").cloned()
    };
    assert!(inbound("1.23.0").is_none());
    let p = inbound("1.24.0").expect("inbound retry");
    assert_eq!(p.num_retries, 2);
    assert_eq!(p.retry_on, RetryOn::parse("reset-before-request"));
    assert!(p.retry_host_predicate.is_empty());
}

/// cluster_tls.go: SIMPLE origination without `sni` configures none; from
/// 1.21 the cluster sets `auto_sni` (each request's host, checked with
/// `auto_san_validation`) and verifies the server; before, neither; an
/// explicit `sni` turns `auto_sni` off.
#[test]
fn tls_origination_sni_and_verification_from_1_21() {
    let dr = format!(
        "{APPS}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: till, namespace: pay}}
spec:
  host: till.pay.svc.cluster.local
  trafficPolicy: {{tls: {{mode: SIMPLE}}}}
"
    );
    let cluster = |dr: &str, v: &str| {
        let t = tables(&world(dr, v, None), "till-0.pay");
        t.clusters
            .iter()
            .find(|c| c.name == "outbound|6100||till.pay.svc.cluster.local")
            .expect("cluster")
            .clone()
    };
    let socket = |v: &str| cluster(&dr, v).transport_socket.expect("tls").typed_config;
    assert!(cluster(&dr, "1.21.0").auto_sni);
    assert!(!cluster(&dr, "1.20.8").auto_sni);
    let named = dr.replace("{mode: SIMPLE}", "{mode: SIMPLE, sni: till.internal}");
    let c = cluster(&named, "1.28.0");
    assert!(!c.auto_sni);
    assert_eq!(
        c.transport_socket.expect("tls").typed_config.sni,
        "till.internal"
    );
    let new = socket("1.21.0");
    assert_eq!(new.sni, "");
    assert!(
        !new.common_tls_context
            .validation_context
            .expect("validation")
            .insecure_skip_verify
    );
    let old = socket("1.20.8");
    assert_eq!(old.sni, "");
    assert!(
        old.common_tls_context
            .validation_context
            .expect("validation")
            .insecure_skip_verify
    );
}

/// Istio's ingress gateway stays beside the user's own gateway workloads;
/// the demo profile's egress gateway is there when the configuration uses
/// it (istio.io's egress-gateway task), as a ClusterIP Service.
#[test]
fn istio_gateways_stay_beside_user_gateways() {
    let own = "---
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge, namespace: pay}
spec:
  template:
    metadata: {labels: {gw: edge}, annotations: {inject.istio.io/templates: gateway}}
    spec: {containers: [{name: istio-proxy, image: auto}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: out, namespace: pay}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [api.example.com]}]
";
    let w = world(&format!("{APPS}{own}"), "1.28.0", None);
    for p in [
        "edge-0.pay",
        "istio-ingressgateway-0.istio-system",
        "istio-egressgateway-0.istio-system",
    ] {
        assert!(find_proxy(&w, p).is_ok(), "{p}");
    }
    let egress = w
        .service("istio-egressgateway.istio-system.svc.cluster.local")
        .expect("egress Service");
    assert!(egress.external_ip.is_none());
    let t = tables(&w, "istio-egressgateway-0.istio-system");
    assert!(t.listeners.iter().any(|l| l.name == "0.0.0.0_8080"));
    // Without a use for it, no egress gateway.
    let w = world(APPS, "1.28.0", None);
    assert!(find_proxy(&w, "istio-egressgateway-0.istio-system").is_err());
}

/// service.go `nodeUsesAutoallocatedIPs`: with DNS capture and
/// auto-allocation (1.25+), a ServiceEntry without addresses has its
/// 240.240.0.0/16 address on that proxy — a TCP port gets a listener on
/// it — while a proxy without DNS capture keeps the wildcard listener.
#[test]
fn auto_allocated_addresses_only_for_dns_capturing_proxies() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pg, namespace: pay}
spec:
  hosts: [pg.corp.internal]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: pay}
spec:
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: capture, namespace: pay}
spec:
  template:
    metadata:
      labels: {app: capture}
      annotations:
        proxy.istio.io/config: |
          proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}
    spec: {containers: [{name: c, image: curlimages/curl}]}
";
    let listeners = |w: &World, p: &str| -> Vec<String> {
        tables(w, p)
            .listeners
            .iter()
            .map(|l| l.name.clone())
            .filter(|n| n.ends_with("_5432"))
            .collect()
    };
    let w = world(yaml, "1.28.0", None);
    assert_eq!(listeners(&w, "capture-0.pay"), vec!["240.240.0.1_5432"]);
    assert_eq!(listeners(&w, "plain-0.pay"), vec!["0.0.0.0_5432"]);
    // Before 1.25, auto-allocation needs ISTIO_META_DNS_AUTO_ALLOCATE.
    let w = world(yaml, "1.24.0", None);
    assert_eq!(listeners(&w, "capture-0.pay"), vec!["0.0.0.0_5432"]);
}
