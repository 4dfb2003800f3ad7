//! Rule-level tests of the compiler: each builds a small mesh from YAML
//! and checks one istiod rule in the compiled tables (sources cited).

mod common;

use common::{tables, world_with};
use meshsim_compiler::{compile_proxy, find_proxy};
use meshsim_tables::*;

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: foo}
spec:
  ports: [{port: 8000, name: http-api, targetPort: 9000}]
  selector: {app: web}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: foo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, version: v1}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec: {containers: [{name: web, image: hashicorp/http-echo, ports: [{containerPort: 9000}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: foo}
spec:
  selector: {matchLabels: {app: web, version: legacy}}
  template:
    metadata: {labels: {app: web, version: legacy}, annotations: {sidecar.istio.io/inject: "false"}}
    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 9000}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: bar}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: local-client, namespace: foo}
spec:
  selector: {matchLabels: {app: local-client}}
  template:
    metadata: {labels: {app: local-client}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
"#;

fn vh<'a>(t: &'a ProxyTables, rc: &str, name: &str) -> &'a VirtualHost {
    t.route_config(rc)
        .and_then(|r| r.virtual_hosts.iter().find(|v| v.name == name))
        .unwrap_or_else(|| panic!("no vhost {name} in {rc}"))
}

/// httproute.go generateVirtualHostDomains: no bare short name from another namespace.
#[test]
fn domains_depend_on_the_client_namespace() {
    let same = tables(APP, "deploy/local-client.foo");
    let d = &vh(&same, "8000", "web.foo.svc.cluster.local:8000").domains;
    assert_eq!(
        &d[..4],
        &["web.foo.svc.cluster.local", "web", "web.foo.svc", "web.foo"]
    );
    let other = tables(APP, "deploy/client.bar");
    let d = &vh(&other, "8000", "web.foo.svc.cluster.local:8000").domains;
    assert_eq!(
        &d[..3],
        &["web.foo.svc.cluster.local", "web.foo", "web.foo.svc"]
    );
    assert!(!d.contains(&"web".to_string()));
    assert!(
        d.last().is_some_and(|ip| ip.starts_with("10.96.")),
        "ClusterIP is a domain: {d:?}"
    );
}

/// Service port protocol from the name prefix; inbound uses the target port.
#[test]
fn inbound_uses_target_port_and_http_chains() {
    let t = tables(APP, "web-v1-0.foo");
    let inbound = t.listener("virtualInbound").expect("virtualInbound");
    let chains: Vec<&FilterChain> = inbound
        .filter_chains
        .iter()
        .filter(|c| c.filter_chain_match.destination_port == Some(9000))
        .collect();
    assert_eq!(chains.len(), 2, "PERMISSIVE: mTLS and plaintext chains");
    assert!(chains.iter().all(|c| c.hcm().is_some()));
    assert!(t.cluster("inbound|9000||").is_some());
}

/// Auto mTLS (cluster_builder.go): endpoints with a sidecar carry tlsMode=istio;
/// the cluster switches on that metadata.
#[test]
fn auto_mtls_follows_endpoint_sidecars() {
    let t = tables(APP, "deploy/client.bar");
    let c = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("cluster");
    assert_eq!(c.transport_socket_matches.len(), 2);
    let tls = c.transport_socket_matches[0]
        .transport_socket
        .as_ref()
        .expect("mtls");
    assert_eq!(
        tls.typed_config.sni,
        "outbound_.8000_._.web.foo.svc.cluster.local"
    );
    assert_eq!(
        tls.typed_config.common_tls_context.alpn_protocols,
        vec!["istio-peer-exchange", "istio"]
    );
    let cla = t
        .load_assignment("outbound|8000||web.foo.svc.cluster.local")
        .expect("eds");
    let modes: Vec<bool> = cla.all().map(LbEndpoint::tls_mode_istio).collect();
    assert_eq!(modes.iter().filter(|m| **m).count(), 2, "two sidecar pods");
    assert_eq!(
        modes.iter().filter(|m| !**m).count(),
        1,
        "legacy pod without sidecar"
    );
    assert!(
        cla.all()
            .all(|e| e.endpoint.address.socket_address.port_value == 9000),
        "targetPort"
    );
}

/// An explicit DestinationRule TLS mode wins over auto mTLS; mesh config
/// `enableAutoMtls: false` turns it off.
#[test]
fn destination_rule_tls_and_auto_mtls_off() {
    let dr = format!("{APP}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: foo}}\nspec:\n  host: web\n  trafficPolicy:\n    tls: {{mode: DISABLE}}\n");
    let t = tables(&dr, "deploy/client.bar");
    let c = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("cluster");
    assert!(c.transport_socket.is_none() && c.transport_socket_matches.is_empty());
    let off = format!("{APP}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    enableAutoMtls: false\n");
    let t = tables(&off, "deploy/client.bar");
    let c = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("cluster");
    assert!(c.transport_socket.is_none() && c.transport_socket_matches.is_empty());
    let im = dr.replace("mode: DISABLE", "mode: ISTIO_MUTUAL");
    let t = tables(&im, "deploy/client.bar");
    let c = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("cluster");
    assert_eq!(
        c.transport_socket
            .as_ref()
            .map(|s| s.typed_config.istio_mode),
        Some(UpstreamTlsMode::IstioMutual)
    );
}

/// cluster_traffic_policy.go: DestinationRule limits → thresholds; unset stays at max.
#[test]
fn circuit_breakers_from_connection_pool() {
    let dr = format!("{APP}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: foo}}\nspec:\n  host: web.foo.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{http1MaxPendingRequests: 1, http2MaxRequests: 7, maxRequestsPerConnection: 3}}\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n    trafficPolicy:\n      connectionPool:\n        tcp: {{maxConnections: 5}}\n");
    let t = tables(&dr, "deploy/client.bar");
    let th = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("c")
        .circuit_breakers
        .default_thresholds();
    assert_eq!(
        (
            th.max_connections,
            th.max_pending_requests,
            th.max_requests,
            th.max_retries
        ),
        (1, 1, 7, u32::MAX)
    );
    let c = t
        .cluster("outbound|8000||web.foo.svc.cluster.local")
        .expect("c");
    assert_eq!(c.max_requests_per_connection, Some(3));
    let sub = t
        .cluster("outbound|8000|v1|web.foo.svc.cluster.local")
        .expect("subset")
        .circuit_breakers
        .default_thresholds();
    assert_eq!(
        sub.max_connections, 5,
        "subset policy overrides the top-level connection pool"
    );
    assert_eq!(sub.max_pending_requests, u32::MAX);
    let cla = t
        .load_assignment("outbound|8000|v1|web.foo.svc.cluster.local")
        .expect("eds");
    assert_eq!(cla.all().count(), 2, "subset endpoints filtered by labels");
}

/// httproute.go buildCatchAllVirtualHost: REGISTRY_ONLY → block_all (502).
#[test]
fn registry_only_blocks() {
    let y = format!("{APP}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n");
    let t = tables(&y, "deploy/client.bar");
    let last = t
        .route_config("8000")
        .and_then(|r| r.virtual_hosts.last())
        .expect("vh");
    assert_eq!(last.name, "block_all");
    assert!(matches!(
        last.routes[0].action,
        RouteAction::DirectResponse(DirectResponse { status: 502, .. })
    ));
    let vo = t.listener("virtualOutbound").expect("vo");
    assert_eq!(
        vo.default_filter_chain
            .as_ref()
            .and_then(|c| c.tcp_proxy())
            .and_then(|p| p.cluster.clone())
            .as_deref(),
        Some("BlackHoleCluster")
    );
}

/// route.go: sourceLabels and gateways narrow which matches apply; a
/// catch-all ends the route list.
#[test]
fn virtual_service_match_scoping() {
    let vs = format!(
        "{APP}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web, namespace: foo}}\nspec:\n  hosts: [web]\n  http:\n  - match:\n    - sourceLabels: {{app: client}}\n      headers: {{x-canary: {{prefix: yes}}}}\n    route:\n    - destination: {{host: web, subset: v1}}\n  - match:\n    - gateways: [some-gateway]\n    route:\n    - destination: {{host: web}}\n  - route:\n    - destination: {{host: web, subset: v1}}\n      weight: 90\n    - destination: {{host: web, subset: v2}}\n      weight: 10\n    timeout: 3s\n  - route:\n    - destination: {{host: web}}\n"
    );
    let client = tables(&vs, "deploy/client.bar");
    let routes = &vh(&client, "8000", "web.foo.svc.cluster.local:8000").routes;
    assert_eq!(
        routes.len(),
        2,
        "sourceLabels route + catch-all; gateway-only and unreachable routes dropped"
    );
    assert!(
        matches!(&routes[0].match_.headers[0].matcher, HeaderMatchSpecifier::StringMatch(StringMatcher::Prefix(p)) if p == "yes")
    );
    let RouteAction::Route(t) = &routes[1].action else {
        panic!("route")
    };
    assert_eq!(t.timeout.to_string(), "3s");
    let ClusterSpecifier::WeightedClusters(w) = &t.destination else {
        panic!("weighted")
    };
    assert_eq!(
        w.clusters.iter().map(|c| c.weight).collect::<Vec<_>>(),
        vec![90, 10]
    );
    assert_eq!(
        t.retry_policy.as_ref().map(|r| r.num_retries),
        Some(2),
        "Istio default retries"
    );
    let local = tables(&vs, "deploy/local-client.foo");
    assert_eq!(
        vh(&local, "8000", "web.foo.svc.cluster.local:8000")
            .routes
            .len(),
        1,
        "sourceLabels do not match local-client"
    );
}

/// listener_inbound.go + filterchain_options.go: STRICT keeps only TLS chains.
#[test]
fn strict_inbound_has_only_tls_chains() {
    let y = format!("{APP}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: foo}}\nspec:\n  mtls: {{mode: STRICT}}\n");
    let t = tables(&y, "web-v1-0.foo");
    let inbound = t.listener("virtualInbound").expect("vi");
    assert!(
        inbound
            .filter_chains
            .iter()
            .filter(|c| c.name != "virtualInbound-blackhole")
            .all(|c| c.filter_chain_match.transport_protocol
                == meshsim_tables::TransportProtocol::Tls)
    );
    // Plaintext to the STRICT port finds no chain.
    let conn = filter_chain_match::ConnectionInfo {
        destination_port: 9000,
        transport_protocol: meshsim_tables::TransportProtocol::RawBuffer,
        ..Default::default()
    };
    assert!(filter_chain_match::select_chain(inbound, &conn).is_none());
}

/// Version gates: old Istio made an HTTP port one HCM chain (TLS → 400 DPE).
#[test]
fn http_port_fall_through_depends_on_version() {
    let w = world_with(APP, "1.5.0");
    let t = compile_proxy(&w, find_proxy(&w, "deploy/client.bar").expect("p"));
    let l = t.listener("0.0.0.0_8000").expect("listener");
    assert_eq!(l.filter_chains.len(), 1);
    assert_eq!(
        l.filter_chains[0].filter_chain_match,
        FilterChainMatch::default()
    );
    assert!(l.default_filter_chain.is_none());
}

/// Pods without a sidecar are not proxies; gateways are.
#[test]
fn proxies_and_injection() {
    let w = world_with(APP, "1.28.0");
    assert!(find_proxy(&w, "legacy-0.foo").is_err());
    assert!(
        find_proxy(&w, "istio-ingressgateway-0.istio-system").is_ok(),
        "default ingress gateway"
    );
    let declared_off = APP.replace("labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bar", "labels: {istio-injection: disabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bar");
    let w = world_with(&declared_off, "1.28.0");
    assert!(find_proxy(&w, "deploy/web-v1.foo").is_err());
}

/// httproute.go `buildSidecarVirtualHostsForVirtualService`: a
/// VirtualService serves the HTTP ports of the services it names, its other
/// hosts ride along on those ports, and only one naming no service lands on
/// port 80.
#[test]
fn virtual_service_hosts_follow_their_services_ports() {
    let yaml = format!(
        "{APP}---
apiVersion: v1
kind: Service
metadata: {{name: front, namespace: bar}}
spec:
  ports: [{{port: 80, name: http}}]
  selector: {{app: client}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: foo}}
spec:
  hosts: [web, api.example.com]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ext, namespace: foo}}
spec:
  hosts: [only.example.com]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
"
    );
    let t = tables(&yaml, "deploy/client.bar");
    let names = |rc: &str| -> Vec<String> {
        t.route_config(rc)
            .map(|r| r.virtual_hosts.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default()
    };
    let on_8000 = names("8000");
    assert!(
        on_8000.contains(&"web.foo.svc.cluster.local:8000".into()),
        "{on_8000:?}"
    );
    assert!(
        on_8000.contains(&"api.example.com:8000".into()),
        "{on_8000:?}"
    );
    assert!(
        !on_8000.iter().any(|n| n.starts_with("only.example.com")),
        "{on_8000:?}"
    );
    let on_80 = names("80");
    assert!(on_80.contains(&"only.example.com:80".into()), "{on_80:?}");
    assert!(
        !on_80
            .iter()
            .any(|n| n.starts_with("web.") || n.starts_with("api.")),
        "{on_80:?}"
    );
}

/// istioctl analyze's IST0101 (destinationhosts.go, destinationrules.go,
/// gateways.go) and IST0132, in its words, on a mesh it has not seen.
#[test]
fn analyze_reports_dangling_references() {
    let yaml = format!(
        "{APP}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: foo}}
spec:
  host: web
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: foo}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [\"web.example.com\"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: foo}}
spec:
  hosts: [web.example.com, other.example.com]
  gateways: [edge, nowhere]
  http:
  - route:
    - {{destination: {{host: web, subset: v1}}, weight: 50}}
    - {{destination: {{host: web, subset: v2}}, weight: 25}}
    - {{destination: {{host: webb}}, weight: 25}}
"
    );
    let w = world_with(&yaml, "1.28.0");
    let got: Vec<String> = meshsim_compiler::analyze::analyze(&w, Some("foo"), &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "Error [IST0101] (VirtualService foo/web test.yaml:68) Referenced gateway not found: \"nowhere\"",
            "Error [IST0101] (VirtualService foo/web test.yaml:68) Referenced host not found: \"webb\"",
            "Error [IST0101] (VirtualService foo/web test.yaml:68) Referenced host+subset in destinationrule not found: \"web+v2\"",
            // gateways.go reports a missing gateway's hosts too (it has
            // none), and stays silent on `edge`, which serves one of them.
            "Warning [IST0132] (VirtualService foo/web test.yaml:68) one or more host [web.example.com other.example.com] defined in VirtualService foo/web not found in Gateway foo/nowhere.",
        ]
    );
    assert!(meshsim_compiler::analyze::analyze(&w, Some("bar"), &[]).is_empty());
}
