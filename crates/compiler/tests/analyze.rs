//! `meshsim analyze` on meshes unlike the scenarios: each istioctl
//! analyzer (pkg/config/analysis/analyzers/..., cited per test) and each
//! meshsim check, firing on a broken input and silent on its fix.

mod common;

use common::world_with;
use meshsim_compiler::analyze::{analyze, Message};

/// A Service and a one-pod Deployment in `ns`.
fn app(ns: &str, name: &str, port: u16, port_name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{port: {port}, name: {port_name}}}]
  selector: {{app: {name}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}{labels}}}}}
  template:
    metadata: {{labels: {{app: {name}{labels}}}}}
    spec: {{containers: [{{name: app, image: nginx}}]}}
---
"
    )
}

fn run(yaml: &str) -> Vec<Message> {
    analyze(&world_with(yaml, "1.28.0"), None, &[])
}

/// `CODE Kind ns/name` of each message.
fn codes(yaml: &str) -> Vec<String> {
    run(yaml)
        .iter()
        .map(|m| format!("{} {}", m.code, m.origin()))
        .collect()
}

fn texts(yaml: &str) -> Vec<String> {
    run(yaml).iter().map(|m| m.text.clone()).collect()
}

#[test]
fn builtin_objects_are_never_reported() {
    // The default gateway Service's `status-port` would be IST0118 if a
    // user had written it.
    assert_eq!(
        codes(&app("orders", "cart", 8080, "http", "")),
        Vec::<String>::new()
    );
}

/// virtualservice/conflictingmeshgatewayhosts.go
#[test]
fn ist0109_two_mesh_virtual_services_for_one_host() {
    let base = app("orders", "cart", 8080, "http", "");
    let vs = |name: &str, gateways: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: orders}}
spec:
  hosts: [cart]
  gateways: {gateways}
  http: [{{route: [{{destination: {{host: cart}}}}]}}]
---
"
        )
    };
    let y = format!("{base}{}{}", vs("a", "[]"), vs("b", "[mesh]"));
    assert_eq!(
        codes(&y),
        [
            "IST0109 VirtualService orders/a",
            "IST0109 VirtualService orders/b"
        ]
    );
    assert_eq!(
        texts(&y)[0],
        "The VirtualServices orders/a,orders/b associated with mesh gateway define the same host */cart.orders.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
    );
    // Bound to a gateway only: no conflict in the mesh.
    let y = format!("{base}{}{}", vs("a", "[]"), vs("b", "[ingress]"));
    assert!(!codes(&y).iter().any(|c| c.starts_with("IST0109")));
}

/// destinationrule/subset.go: IST0173, IST0174.
#[test]
fn ist0173_ist0174_subsets_and_hosts() {
    let y = format!(
        "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: stock, namespace: depot}}
spec:
  host: stock
  subsets: [{{name: green, labels: {{track: green}}}}, {{name: blue, labels: {{track: blue}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: gone, namespace: depot}}
spec:
  host: nowhere.depot.svc.cluster.local
",
        app("depot", "stock", 9090, "grpc", ", track: green")
    );
    assert_eq!(
        codes(&y),
        [
            "IST0173 DestinationRule depot/stock",
            "IST0174 DestinationRule depot/gone"
        ]
    );
    let t = texts(&y);
    assert_eq!(t[0], "The Subset blue defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).");
    assert_eq!(t[1], "The host nowhere.depot.svc.cluster.local defined in the DestinationRule does not match any services in the mesh.");
}

/// destinationrule/ca-certificates.go: IST0128, IST0129.
#[test]
fn ist0128_ist0129_origination_without_ca() {
    let dr = |tls: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bank, namespace: pay}}
spec:
  hosts: [api.bank.example]
  ports: [{{number: 8443, name: http, protocol: HTTP}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bank, namespace: pay}}
spec:
  host: api.bank.example
  trafficPolicy:
{tls}
"
        )
    };
    let y = dr("    tls: {mode: SIMPLE}\n    portLevelSettings: [{port: {number: 8443}, tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}]");
    assert_eq!(
        texts(&y),
        [
            "DestinationRule pay/bank in namespace pay has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: api.bank.example",
            "DestinationRule pay/bank in namespace pay has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: api.bank.example at port number:8443",
        ]
    );
    let y = dr("    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}");
    assert!(codes(&y).is_empty(), "{:?}", codes(&y));
}

/// gateway/certificate.go (IST0138), gateway/conflictinggateway.go (IST0145).
#[test]
fn ist0138_ist0145_gateways_sharing_certificates_and_hosts() {
    let gw = |name: &str, host: &str, cred: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: [\"{host}\"], tls: {{mode: SIMPLE, credentialName: {cred}}}}}]
---
"
        )
    };
    let secrets = "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-cert, namespace: istio-system}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==, tls.key: eA==}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: other-cert, namespace: istio-system}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==, tls.key: eA==}\n---\n";
    let y = format!(
        "{secrets}{}{}",
        gw("cart-gw", "cart.shop.example", "shop-cert"),
        gw("pay-gw", "pay.shop.example", "shop-cert")
    );
    assert_eq!(
        codes(&y),
        [
            "IST0138 Gateway shop/cart-gw",
            "IST0138 Gateway shop/pay-gw"
        ]
    );
    assert_eq!(
        texts(&y)[0],
        "Duplicate certificate in multiple gateways [shop/cart-gw shop/pay-gw] may cause 404s if clients re-use HTTP2 connections."
    );
    let y = format!(
        "{secrets}{}{}",
        gw("cart-gw", "cart.shop.example", "shop-cert"),
        gw("cart-gw2", "cart.shop.example", "other-cert")
    );
    assert_eq!(
        codes(&y),
        [
            "IST0145 Gateway shop/cart-gw",
            "IST0145 Gateway shop/cart-gw2"
        ]
    );
    assert_eq!(
        texts(&y)[0],
        "Conflict with gateways shop/cart-gw2 (workload selector istio=ingressgateway, port 443, hosts cart.shop.example)."
    );
}

/// gateway/gateway.go and gateway/secret.go: IST0162, IST0101 selector
/// and credentialName.
#[test]
fn gateway_ports_selectors_and_secrets() {
    let y = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: admin, namespace: ops}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 9443, name: https, protocol: HTTPS}, hosts: [admin.ops.example], tls: {mode: SIMPLE, credentialName: admin-cert}}
  - {port: {number: 8080, name: http, protocol: HTTP}, hosts: [admin.ops.example]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: lost, namespace: ops}
spec:
  selector: {istio: edge-gateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
";
    assert_eq!(
        texts(y),
        [
            "Referenced credentialName not found: \"admin-cert\"",
            "Referenced selector not found: \"istio=edge-gateway\"",
            // 8080 is a target port of the default Service: not reported.
            "The gateway is listening on a target port (port 9443) that is not defined in the Service associated with its workload instances (Pod selector istio=ingressgateway). If you need to access the gateway port through the gateway Service, it will not be available.",
        ]
    );
}

/// serviceentry/protocoladdresses.go: IST0134, unless the DNS proxy
/// auto-allocates addresses.
#[test]
fn ist0134_tcp_service_entry_without_addresses() {
    let se = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: data}
spec:
  hosts: [db.corp.example]
  ports: [{number: 5432, name: pg, protocol: TCP}]
  resolution: DNS
---
";
    assert_eq!(codes(se), ["IST0134 ServiceEntry data/db"]);
    let mesh = "apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    defaultConfig:
      proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\", ISTIO_META_DNS_AUTO_ALLOCATE: \"true\"}
";
    assert!(codes(&format!("{se}{mesh}")).is_empty());
}

/// envoyfilter/envoyfilter.go: IST0151, IST0155, IST0153; meshsim's
/// MS0009 for a relative patch on a version-specific filter.
#[test]
fn envoy_filter_relative_operations() {
    let ef = |name: &str, extra: &str, op: &str, target: &str, value: &str| {
        format!(
            "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: mesh-ops}}
spec:
  {extra}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      {target}
    patch:
      operation: {op}
      value: {{name: {value}}}
---
"
        )
    };
    let router = "listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: acme.metrics}}}}";
    let provider = ef(
        "metrics-1-27",
        "priority: 0",
        "INSERT_BEFORE",
        &format!(
            "proxy: {{proxyVersion: '^1\\.27.*'}}\n      {}",
            router.replace("acme.metrics", "envoy.filters.http.router")
        ),
        "acme.metrics",
    );
    let user = |prio: &str, op: &str| ef("audit", prio, op, router, "acme.audit");
    let y = format!("{provider}{}", user("priority: 0", "INSERT_AFTER"));
    assert_eq!(
        codes(&y),
        [
            "IST0151 EnvoyFilter mesh-ops/audit",
            "IST0151 EnvoyFilter mesh-ops/metrics-1-27",
            "MS0009 EnvoyFilter mesh-ops/audit",
        ]
    );
    let ms = run(&y)
        .into_iter()
        .find(|m| m.code == "MS0009")
        .expect("MS0009");
    assert!(ms.text.contains("relative to acme.metrics"), "{}", ms.text);
    assert!(ms.text.contains("Fix: use INSERT_FIRST"), "{}", ms.text);
    // A priority above the provider's orders it after: no MS0009, and
    // istioctl is silent on a patch with a priority.
    let y = format!("{provider}{}", user("priority: 5", "INSERT_AFTER"));
    assert_eq!(codes(&y), ["IST0151 EnvoyFilter mesh-ops/metrics-1-27"]);
    let y = format!("{provider}{}", user("priority: 0", "INSERT_FIRST"));
    assert_eq!(codes(&y), ["IST0151 EnvoyFilter mesh-ops/metrics-1-27"]);
}

/// pkg/config/validation analyzeUnreachableHTTPRules: IST0130, IST0131.
#[test]
fn ist0130_ist0131_unreachable_rules() {
    let y = format!(
        "{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: quote, namespace: sales}}
spec:
  hosts: [quote]
  http:
  - match: [{{uri: {{prefix: /v2}}}}]
    route: [{{destination: {{host: quote}}}}]
  - name: again
    match: [{{name: dup, uri: {{prefix: /v2}}}}, {{uri: {{prefix: /v3}}}}]
    route: [{{destination: {{host: quote}}}}]
  - route: [{{destination: {{host: quote}}}}]
  - route: [{{destination: {{host: quote}}}}]
",
        app("sales", "quote", 3000, "http-web", "")
    );
    assert_eq!(
        texts(&y),
        [
            "VirtualService rule #3 not used (only the last rule can have no matches).",
            "VirtualService rule \"again\" match \"dup\" is not used (duplicate/overlapping match in rule #0).",
        ]
    );
}

/// virtualservice/destinationhosts.go: IST0112 and host:port; IST0140.
#[test]
fn destination_ports_and_ingress_subsets() {
    let y = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: api, namespace: crm}}
spec:
  ports: [{{port: 80, name: http}}, {{port: 9090, name: grpc-admin}}]
  selector: {{app: api}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: crm}}
spec:
  hosts: [crm.example.org]
  gateways: [crm-gw]
  http: [{{route: [{{destination: {{host: api, port: {{number: 81}}}}}}, {{destination: {{host: api}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: crm-gw, namespace: crm}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [crm.example.org]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: crm}}
spec:
  hosts: [api]
  http: [{{route: [{{destination: {{host: api, subset: stable, port: {{number: 80}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api, namespace: crm}}
spec:
  host: api
  subsets: [{{name: stable, labels: {{app: api}}}}]
---
{}",
        app("crm", "api-pods", 80, "http", "").replace("app: api-pods", "app: api")
    );
    let t = texts(&y);
    assert!(
        t.contains(&"Referenced host:port not found: \"api:81\"".to_string()),
        "{t:?}"
    );
    assert!(t.contains(&"This VirtualService routes to a service \"api\" that exposes multiple ports [80 9090]. Specifying a port in the destination is required to disambiguate.".to_string()), "{t:?}");
    assert!(
        t.contains(
            &"Subset in virtual service crm/api has no effect on ingress gateway crm/edge requests"
                .to_string()
        ),
        "{t:?}"
    );
}

/// MS0001/MS0002: route kinds a gateway server never builds.
#[test]
fn gateway_route_kinds() {
    let y = |mode: &str, routes: &str| {
        format!(
            "{}apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tls-gw, namespace: vault}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 8443, name: tls, protocol: TLS}}, hosts: [secrets.vault.example], tls: {{mode: {mode}, credentialName: vault-cert}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: vault-cert, namespace: istio-system}}
type: kubernetes.io/tls
data: {{tls.crt: eA==, tls.key: eA==}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secrets, namespace: vault}}
spec:
  hosts: [secrets.vault.example]
  gateways: [tls-gw]
  {routes}
",
            app("vault", "keeper", 8200, "tcp-api", "")
        )
    };
    let tls = "tls: [{match: [{sniHosts: [secrets.vault.example]}], route: [{destination: {host: keeper}}]}]";
    let tcp_ok = |c: &Vec<String>| {
        c.iter()
            .filter(|c| c.starts_with("MS"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tcp_ok(&codes(&y("SIMPLE", tls))),
        ["MS0001 VirtualService vault/secrets"]
    );
    assert!(tcp_ok(&codes(&y("PASSTHROUGH", tls))).is_empty());
    let http = "http: [{route: [{destination: {host: keeper}}]}]";
    assert_eq!(
        tcp_ok(&codes(&y("PASSTHROUGH", http))),
        ["MS0002 VirtualService vault/secrets"]
    );
    assert!(!tcp_ok(&codes(&y("SIMPLE", http)))
        .contains(&"MS0002 VirtualService vault/secrets".to_string()));
}

/// MS0003 (HTTP on 443 without origination), MS0004 (origination to a
/// TLS port), on a Kubernetes Service as well as a ServiceEntry.
#[test]
fn tls_port_protocol_checks() {
    let se = |proto: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: maps, namespace: geo}}
spec:
  hosts: [tiles.maps.example]
  ports: [{{number: 443, name: web, protocol: {proto}}}]
  resolution: DNS
---
"
        )
    };
    let dr = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: maps, namespace: geo}
spec:
  host: tiles.maps.example
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca.pem}}
---
";
    assert_eq!(codes(&se("HTTP")), ["MS0003 ServiceEntry geo/maps"]);
    assert!(codes(&format!("{}{dr}", se("HTTP"))).is_empty());
    assert!(codes(&se("HTTPS")).is_empty());
    assert_eq!(
        codes(&format!("{}{dr}", se("HTTPS"))),
        ["MS0004 DestinationRule geo/maps"]
    );
    // A Service port named https-* with origination.
    let y = format!(
        "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: portal, namespace: geo}}
spec:
  host: portal
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: /ca.pem}}}}
",
        app("geo", "portal", 8443, "https-ui", "")
    );
    let t = texts(&y);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("It originates TLS (mode SIMPLE) to portal.geo.svc.cluster.local:8443, a port declared HTTPS"), "{t:?}");
}

/// MS0005: both mTLS conflicts, on a namespace-level STRICT policy.
#[test]
fn mtls_conflicts() {
    let plain = app("ledger", "books", 9090, "http", "").replace(
        "    metadata: {labels: {app: books}}",
        "    metadata:\n      labels: {app: books}\n      annotations: {sidecar.istio.io/inject: \"false\"}",
    );
    let meshed = app("ledger", "teller", 7000, "http", "");
    let dr = |host: &str, mode: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}, namespace: ledger}}
spec:
  host: {host}
  trafficPolicy: {{tls: {{mode: {mode}}}}}
---
"
        )
    };
    let strict = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ledger}
spec: {mtls: {mode: STRICT}}
---
";
    let y = format!(
        "{plain}{meshed}{strict}{}{}",
        dr("books", "ISTIO_MUTUAL"),
        dr("teller", "DISABLE")
    );
    assert_eq!(
        codes(&y),
        [
            "MS0005 DestinationRule ledger/books",
            "MS0005 DestinationRule ledger/teller"
        ]
    );
    let t = texts(&y);
    assert!(
        t[0].contains("but nothing takes mutual TLS at books.ledger (no sidecar"),
        "{}",
        t[0]
    );
    assert!(
        t[1].contains("the PeerAuthentication of teller.ledger is STRICT"),
        "{}",
        t[1]
    );
    // The fixes: DISABLE to the plaintext workload, ISTIO_MUTUAL to STRICT.
    let y = format!(
        "{plain}{meshed}{strict}{}{}",
        dr("books", "DISABLE"),
        dr("teller", "ISTIO_MUTUAL")
    );
    assert!(codes(&y).is_empty(), "{:?}", codes(&y));
}

/// MS0006 on a port declared TCP-like; silent when sniffed or HTTP.
#[test]
fn http_routes_on_opaque_ports() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cache, namespace: infra}
spec:
  hosts: [cache]
  http: [{route: [{destination: {host: cache}}]}]
";
    assert_eq!(
        codes(&format!("{}{vs}", app("infra", "cache", 6379, "redis", ""))),
        ["MS0006 VirtualService infra/cache"]
    );
    assert!(codes(&format!(
        "{}{vs}",
        app("infra", "cache", 6379, "http-cache", "")
    ))
    .is_empty());
}

/// MS0010 headless + HTTP + STRICT; MS0011 low limits; MS0012 no default.
#[test]
fn headless_breakers_and_default_routes() {
    let headless = |port_name: &str| {
        app("db", "replica", 8080, port_name, "").replace(
            "  selector: {app: replica}\n---",
            "  selector: {app: replica}\n  clusterIP: None\n---",
        )
    };
    let strict = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: db}
spec: {mtls: {mode: STRICT}}
---
";
    assert_eq!(
        codes(&format!("{}{strict}", headless("http"))),
        ["MS0010 Service db/replica"]
    );
    assert!(codes(&format!("{}{strict}", headless("tcp"))).is_empty());
    assert!(codes(&headless("http")).is_empty());

    let dr = |n: u32| {
        format!(
            "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: search, namespace: web}}
spec:
  host: search
  trafficPolicy: {{connectionPool: {{http: {{http2MaxRequests: {n}}}}}}}
",
            app("web", "search", 8000, "http", "")
        )
    };
    assert_eq!(codes(&dr(3)), ["MS0011 DestinationRule web/search"]);
    assert!(codes(&dr(100)).is_empty());

    let vs = |extra: &str, gateways: &str| {
        format!(
            "{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: search, namespace: web}}
spec:
  hosts: [search]
  gateways: {gateways}
  http:
  - match: [{{headers: {{x-beta: {{exact: \"1\"}}}}}}]
    route: [{{destination: {{host: search}}}}]
{extra}",
            app("web", "search", 8000, "http", "")
        )
    };
    assert_eq!(
        codes(&vs("", "[mesh]")),
        ["MS0012 VirtualService web/search"]
    );
    assert!(codes(&vs(
        "  - route: [{destination: {host: search}}]\n",
        "[mesh]"
    ))
    .is_empty());
    // A route for every request from the mesh, matched on the gateway only.
    assert!(codes(&vs(
        "  - match: [{gateways: [mesh]}]\n    route: [{destination: {host: search}}]\n",
        "[mesh]"
    ))
    .is_empty());
}

/// MS0013: nginx in a meshed pod speaking HTTP/1.0 upstream.
#[test]
fn nginx_proxy_pass_http10() {
    let y = |conf: &str| {
        format!(
            "apiVersion: v1
kind: ConfigMap
metadata: {{name: gateway-conf, namespace: portal}}
data:
  site.conf: |
{conf}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: front, namespace: portal}}
spec:
  selector: {{matchLabels: {{app: front}}}}
  template:
    metadata: {{labels: {{app: front}}}}
    spec:
      containers: [{{name: nginx, image: nginx, volumeMounts: [{{name: conf, mountPath: /etc/nginx/conf.d}}]}}]
      volumes: [{{name: conf, configMap: {{name: gateway-conf}}}}]
"
        )
    };
    let broken =
        "    server { listen 8080; location /api/ { proxy_pass http://backend.portal:9000; } }";
    assert_eq!(codes(&y(broken)), ["MS0013 ConfigMap portal/gateway-conf"]);
    let fixed = "    server { listen 8080; proxy_http_version 1.1; location /api/ { proxy_pass http://backend.portal:9000; } }";
    assert!(codes(&y(fixed)).is_empty());
}

/// service/portname.go (IST0118, IST0150 on ExternalName, managed gateway
/// Services skipped) and virtualservice/gateways.go (IST0165).
#[test]
fn port_names_and_internal_gateway_references() {
    let y = "apiVersion: v1
kind: Service
metadata: {name: legacy-db, namespace: infra}
spec:
  type: ExternalName
  externalName: db.corp.example
  ports: [{port: 5432, name: tcp}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics, namespace: infra}
spec:
  selector: {app: metrics}
  ports: [{port: 9102, name: scrape}]
---
apiVersion: v1
kind: Service
metadata: {name: edge-istio, namespace: infra, labels: {gateway.istio.io/managed: istio.io-gateway-controller}}
spec:
  selector: {app: edge}
  ports: [{port: 15021, name: status-port}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: metrics, namespace: infra}
spec:
  hosts: [metrics.example.org]
  gateways: [infra/edge~istio-autogenerated-k8s-gateway~http]
  http: [{route: [{destination: {host: metrics, port: {number: 9102}}}]}]
";
    assert_eq!(
        codes(y),
        [
            "IST0150 Service infra/legacy-db",
            "IST0165 VirtualService infra/metrics",
            "IST0118 Service infra/metrics",
        ]
    );
    let t = texts(y);
    assert_eq!(t[1], "Gateway reference in VirtualService infra/metrics is to an implementation-generated internal Gateway: infra/edge~istio-autogenerated-k8s-gateway~http.");
    assert_eq!(t[2], "Port name scrape (port: 9102, targetPort: 0) doesn't follow the naming convention of Istio port.");
}
