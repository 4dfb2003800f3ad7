//! Gateway route configurations and server merging as istiod builds them
//! (gateway.go `buildGatewayHTTPRouteConfig`, model/gateway.go
//! `mergeGateways`), checked on inputs unlike the scenarios' and against
//! the cases of istiod's gateway_simulation_test.go.

mod common;

use common::world_with;
use meshsim_compiler::{compile_proxy, find_proxy};
use meshsim_tables::*;

/// A gateway workload `lb` in namespace `front` with ports 8081 → 9081
/// and 7443 → 7443, plus `gateways` (YAML documents).
fn gateway_world(gateways: &str, version: &str) -> ProxyTables {
    let yaml = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: front}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: lb, namespace: front}}
spec:
  template:
    metadata: {{labels: {{edge: lb}}, annotations: {{inject.istio.io/templates: gateway}}}}
    spec: {{containers: [{{name: istio-proxy, image: auto}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: front}}
spec:
  selector: {{edge: lb}}
  ports: [{{name: web, port: 8081, targetPort: 9081}}, {{name: tls, port: 7443}}]
---
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: front}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 3000}}]
---
{gateways}"
    );
    let w = world_with(&yaml, version);
    let p = find_proxy(&w, "deploy/lb.front").expect("gateway proxy");
    compile_proxy(&w, p)
}

fn gw(name: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: front}}
spec:
  selector: {{edge: lb}}
  servers:
{servers}---
"
    )
}

fn vs(name: &str, hosts: &str, gateway: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: front}}
spec:
  hosts: {hosts}
  gateways: [{gateway}]
  http:
{http}---
"
    )
}

const TO_SHOP: &str = "  - route: [{destination: {host: shop, port: {number: 3000}}}]\n";

fn rc<'a>(t: &'a ProxyTables, name: &str) -> &'a RouteConfiguration {
    t.route_configs
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route config {name}"))
}

fn summary(rc: &RouteConfiguration) -> Vec<String> {
    rc.virtual_hosts
        .iter()
        .map(|v| {
            format!(
                "{} {:?} routes={} tls={:?}",
                v.name,
                v.domains,
                v.routes.len(),
                v.require_tls
            )
        })
        .collect()
}

/// gateway_simulation_test.go "httpsRedirect without routes": the host
/// still gets a virtual host, which only redirects (`require_tls: ALL`).
#[test]
fn https_redirect_without_a_virtual_service_still_redirects() {
    let t = gateway_world(
        &gw(
            "plain",
            "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [Docs.Example.ORG, \"*.static.example.org\"]
    tls: {httpsRedirect: true}
",
        ),
        "1.28.0",
    );
    let r = rc(&t, "http.9081");
    assert!(r.ignore_port_in_host_matching);
    // Both hosts redirect-only with nothing routed: one collapsed vhost.
    assert_eq!(
        summary(r),
        vec![
            r#"*.static.example.org:8081 ["*.static.example.org", "docs.example.org"] routes=0 tls=All"#
        ]
    );
}

/// "httpsRedirect with routes" and "mixed httpsRedirect with routes":
/// routes stay, the vhost requires TLS; another Gateway's plain server
/// for the same host on the port does not undo it.
#[test]
fn https_redirect_keeps_routes_and_wins_over_a_plain_server() {
    let t = gateway_world(
        &format!(
            "{}{}{}",
            gw(
                "a-redirect",
                "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [pay.example.net]
    tls: {httpsRedirect: true}
"
            ),
            gw(
                "b-plain",
                "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [pay.example.net, news.example.net]
"
            ),
            vs(
                "pay",
                "[pay.example.net, news.example.net]",
                "b-plain",
                TO_SHOP
            ),
        ),
        "1.28.0",
    );
    assert_eq!(
        summary(rc(&t, "http.9081")),
        vec![
            r#"news.example.net:8081 ["news.example.net"] routes=1 tls=None"#,
            r#"pay.example.net:8081 ["pay.example.net"] routes=1 tls=All"#,
        ]
    );
}

/// Before 1.15 (istio/istio#40475) gateway domains carried the port
/// forms and ports counted in host matching; before 1.9 a redirect was a
/// route that replaced the VirtualService's (istio/istio#29895).
#[test]
fn older_istio_writes_port_domains_and_redirect_routes() {
    let cfg = format!(
        "{}{}",
        gw(
            "g",
            "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [shop.example.io]
    tls: {httpsRedirect: true}
"
        ),
        vs("shop", "[shop.example.io]", "g", TO_SHOP)
    );
    let t = gateway_world(&cfg, "1.14.0");
    let r = rc(&t, "http.9081");
    assert!(!r.ignore_port_in_host_matching);
    assert_eq!(
        summary(r),
        vec![r#"shop.example.io:8081 ["shop.example.io", "shop.example.io:*"] routes=1 tls=All"#]
    );
    let t = gateway_world(&cfg, "1.8.0");
    let vh = &rc(&t, "http.9081").virtual_hosts[0];
    assert_eq!(vh.require_tls, TlsRequirement::None);
    assert!(matches!(
        &vh.routes[0].action,
        RouteAction::Redirect(Redirect {
            https_redirect: Some(true),
            ..
        })
    ));
}

/// No host served: `blackhole:PORT` with no routes, so Envoy answers 404
/// NR (istio/istio#27746); a 404 direct response before 1.8.
#[test]
fn blackhole_virtual_host_has_no_routes() {
    let g = gw(
        "lonely",
        "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [nobody.example.com]
",
    );
    let t = gateway_world(&g, "1.28.0");
    let vh = &rc(&t, "http.9081").virtual_hosts[0];
    assert_eq!(vh.name, "blackhole:8081");
    assert!(vh.routes.is_empty());
    let t = gateway_world(&g, "1.7.0");
    let vh = &rc(&t, "http.9081").virtual_hosts[0];
    assert!(matches!(
        vh.routes[0].action,
        RouteAction::DirectResponse(DirectResponse { status: 404, .. })
    ));
}

/// gateway_simulation_test.go "multiple protocols on a port": the first
/// plaintext server holds the port; a later one of another protocol is
/// skipped (istio/istio#27481). TCP first with no TCP routes leaves no
/// listener; HTTP first leaves its blackhole route table.
#[test]
fn first_plaintext_server_on_a_port_decides_its_protocol() {
    let tcp = "  - port: {number: 8081, name: raw, protocol: TCP}\n    hosts: [\"*\"]\n";
    let http = "  - port: {number: 8081, name: web, protocol: HTTP}\n    hosts: [\"*\"]\n";
    let t = gateway_world(
        &format!("{}{}", gw("alpha", tcp), gw("beta", http)),
        "1.28.0",
    );
    assert!(
        !t.listeners.iter().any(|l| l.name == "0.0.0.0_9081"),
        "{:?}",
        t.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
    );
    assert!(t.route_configs.iter().all(|r| r.name != "http.9081"));
    let t = gateway_world(
        &format!("{}{}", gw("alpha", http), gw("beta", tcp)),
        "1.28.0",
    );
    assert_eq!(
        summary(rc(&t, "http.9081")),
        vec![r#"blackhole:8081 ["*"] routes=0 tls=None"#]
    );
    let l = t
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_9081")
        .expect("listener");
    assert_eq!(l.filter_chains.len(), 1);
}

/// A TLS server whose host another TLS server on the port already has is
/// skipped whole (`CheckDuplicates`), not merged host by host.
#[test]
fn duplicate_tls_hosts_skip_the_later_server() {
    let t = gateway_world(
        &format!(
            "{}{}",
            gw(
                "first",
                "  - port: {number: 7443, name: tls-a, protocol: HTTPS}
    hosts: [api.example.com]
    tls: {mode: SIMPLE, credentialName: a-cert}
"
            ),
            gw(
                "second",
                "  - port: {number: 7443, name: tls-b, protocol: HTTPS}
    hosts: [api.example.com, extra.example.com]
    tls: {mode: SIMPLE, credentialName: b-cert}
"
            ),
        ),
        "1.28.0",
    );
    let l = t
        .listeners
        .iter()
        .find(|l| l.name == "0.0.0.0_7443")
        .expect("listener");
    let names: Vec<&Vec<String>> = l
        .filter_chains
        .iter()
        .map(|c| &c.filter_chain_match.server_names)
        .collect();
    assert_eq!(names, vec![&vec!["api.example.com".to_string()]]);
}

/// Routes of several VirtualServices on one host: catch-all routes last
/// (`SortVHostRoutes`); hosts of one VirtualService share a vhost
/// (`collapseDuplicateRoutes`, 1.11+).
#[test]
fn vhost_routes_sorted_and_hosts_collapsed() {
    let t = gateway_world(
        &format!(
            "{}{}{}",
            gw(
                "g",
                "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [\"*.shop.test\"]
"
            ),
            vs("a-all", "[m.shop.test, www.shop.test]", "g", TO_SHOP),
            vs(
                "b-api",
                "[m.shop.test]",
                "g",
                "  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: shop, port: {number: 3000}}}]\n"
            ),
        ),
        "1.28.0",
    );
    let r = rc(&t, "http.9081");
    assert_eq!(
        summary(r),
        vec![
            r#"m.shop.test:8081 ["m.shop.test"] routes=2 tls=None"#,
            r#"www.shop.test:8081 ["www.shop.test"] routes=1 tls=None"#,
        ]
    );
    let m = &r.virtual_hosts[0];
    assert!(matches!(&m.routes[0].match_.path, PathMatch::Prefix(p) if p == "/api"));
    let t = gateway_world(
        &format!(
            "{}{}",
            gw(
                "g",
                "  - port: {number: 8081, name: web, protocol: HTTP}
    hosts: [\"*.shop.test\"]
"
            ),
            vs("a-all", "[m.shop.test, www.shop.test]", "g", TO_SHOP),
        ),
        "1.28.0",
    );
    assert_eq!(
        summary(rc(&t, "http.9081")),
        vec![r#"m.shop.test:8081 ["m.shop.test", "www.shop.test"] routes=1 tls=None"#]
    );
}
