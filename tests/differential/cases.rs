//! The cases: one gateway and one sidecar configuration, each case a
//! request (or non-request) both proxies get byte for byte.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshsim_compiler::{NamespaceFlag, Settings, World};

use super::client::{exchange, Reply};
use super::compare::{compare_logs, compare_replies, Addresses, Diff};
use super::proxies::{AddressMap, Envoy, Meshsim};
use super::upstreams::{Behaviour, Upstreams};
use super::ACCEPTED;

/// Backends: `(service, port, behaviour)`; `None` is connection refused.
const BACKENDS: &[(&str, u16, Option<Behaviour>)] = &[
    ("web", 8000, Some(Behaviour::Echo)),
    ("down", 8001, None),
    ("junk", 8002, Some(Behaviour::Garbage)),
    ("closer", 8003, Some(Behaviour::CloseBeforeHeaders)),
    ("trunc", 8004, Some(Behaviour::CloseMidBody)),
    ("sleepy", 8005, Some(Behaviour::Slow(1500))),
    ("narrow", 8006, Some(Behaviour::Slow(600))),
    ("tlsplain", 8007, Some(Behaviour::Echo)),
    ("wsock", 8008, Some(Behaviour::WebSocket)),
    ("busy", 8009, Some(Behaviour::Unavailable)),
    ("flaky", 8010, Some(Behaviour::Unavailable)),
    ("tlssni", 8011, Some(Behaviour::TlsSni)),
    // Only the broken-chunk case: its pool is empty in both proxies, so
    // the line is not at the mercy of an idle connection's timing.
    ("intake", 8012, Some(Behaviour::Echo)),
];

fn backends_yaml() -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n",
    );
    for (name, port, _) in BACKENDS {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: {port}}}]}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  template:\n    metadata: {{labels: {{app: {name}}}, annotations: {{sidecar.istio.io/inject: \"false\"}}}}\n    spec: {{containers: [{{name: app, image: example/{name}, ports: [{{containerPort: {port}}}]}}]}}\n"
        ));
    }
    y.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: narrow, namespace: shop}\nspec:\n  host: narrow.shop.svc.cluster.local\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n");
    y.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: flaky, namespace: shop}\nspec:\n  host: flaky.shop.svc.cluster.local\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 2, interval: 30s, baseEjectionTime: 60s, maxEjectionPercent: 100}\n");
    // SIMPLE origination without `sni`: auto_sni (1.21+) sends each
    // request's host; insecureSkipVerify leaves auto_san_validation off.
    y.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: tlssni, namespace: shop}\nspec:\n  host: tlssni.shop.svc.cluster.local\n  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}\n");
    y.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: tlsplain, namespace: shop}\nspec:\n  host: tlsplain.shop.svc.cluster.local\n  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}\n");
    y
}

fn routes_yaml(gateways: &str) -> String {
    let route = |prefix: &str, svc: &str, port: u16, extra: &str| {
        format!("  - match: [{{uri: {{prefix: {prefix}}}}}]\n{extra}    route: [{{destination: {{host: {svc}.shop.svc.cluster.local, port: {{number: {port}}}}}}}]\n")
    };
    let mut y = format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app, namespace: edge}}\nspec:\n  hosts: [app.example]\n  gateways: [{gateways}]\n  http:\n");
    y.push_str(&route("/refused", "down", 8001, ""));
    y.push_str(&route("/garbage", "junk", 8002, ""));
    y.push_str(&route("/early", "closer", 8003, ""));
    y.push_str(&route("/midbody", "trunc", 8004, ""));
    y.push_str(&route("/slow", "sleepy", 8005, "    timeout: 0.3s\n"));
    y.push_str(&route("/narrow", "narrow", 8006, ""));
    y.push_str(&route("/tls", "tlsplain", 8007, ""));
    y.push_str(&route("/ws", "wsock", 8008, ""));
    y.push_str(&route(
        "/busy-retried",
        "busy",
        8009,
        "    retries: {attempts: 2, retryOn: \"503\"}\n",
    ));
    y.push_str(&route("/busy", "busy", 8009, ""));
    y.push_str(&route(
        "/sni-rewritten",
        "tlssni",
        8011,
        "    rewrite: {authority: billing.partner.test}\n",
    ));
    y.push_str(&route("/sni", "tlssni", 8011, ""));
    y.push_str(&route("/flaky", "flaky", 8010, ""));
    y.push_str(&route("/intake", "intake", 8012, ""));
    y.push_str("  - match: [{uri: {prefix: /dest-weighted}}]\n    route:\n    - {destination: {host: web.shop.svc.cluster.local, port: {number: 8000}}, weight: 100, headers: {request: {set: {x-dest: web}, remove: [user-agent]}, response: {add: {x-from: web}}}}\n    - {destination: {host: down.shop.svc.cluster.local, port: {number: 8001}}, weight: 0}\n");
    y.push_str("  - match: [{uri: {prefix: /dest-single}}]\n    headers: {request: {set: {x-route: r}}}\n    route:\n    - {destination: {host: web.shop.svc.cluster.local, port: {number: 8000}}, headers: {request: {add: {x-route: d}}, response: {set: {x-only: one}}}}\n");
    y.push_str(&route(
        "/no-agent",
        "web",
        8000,
        "    headers: {request: {remove: [user-agent]}}\n",
    ));
    y.push_str(&route(
        "/rewritten",
        "web",
        8000,
        "    rewrite: {authority: inner.example, uri: /inner}\n",
    ));
    y.push_str(&route("/api", "web", 8000, ""));
    for (prefix, redirect) in [
        ("/old", "{uri: /new}"),
        ("/toport", "{port: 9443}"),
        ("/tohttps", "{scheme: https, redirectCode: 308}"),
        ("/elsewhere", "{authority: other.example, uri: /there?b=2}"),
    ] {
        y.push_str(&format!(
            "  - match: [{{uri: {{prefix: {prefix}}}}}]\n    redirect: {redirect}\n"
        ));
    }
    // A host the httpsRedirect server shares: routed, and still redirected.
    y.push_str(&format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: moved, namespace: edge}}\nspec:\n  hosts: [a.moved.example]\n  gateways: [{gateways}]\n  http:\n"));
    y.push_str(&route("/", "web", 8000, ""));
    y
}

const GATEWAY: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: edge-gw, namespace: edge}
spec:
  template:
    metadata: {labels: {istio: edge-gateway}, annotations: {inject.istio.io/templates: gateway}}
    spec: {containers: [{name: istio-proxy, image: auto}]}
---
apiVersion: v1
kind: Service
metadata: {name: edge-gw, namespace: edge}
spec:
  type: LoadBalancer
  selector: {istio: edge-gateway}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: 8443}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  selector: {istio: edge-gateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [app.example]
  - port: {number: 80, name: http-redirect, protocol: HTTP}
    hosts: [secure.example, \"*.moved.example\"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [secure.example]
    tls: {mode: SIMPLE, credentialName: secure-cred}
";

fn world(yaml: &str) -> World {
    let (w, diags) = World::from_loaded(
        meshsim_model::parse_str("differential.yaml", yaml),
        Settings::default(),
        &NamespaceFlag::Unset,
    );
    assert!(!diags.has_errors(), "{}", diags.error_text());
    w
}

/// Starts the upstreams; the map from each backend pod's endpoint to them.
async fn upstreams(w: &World, ups: &mut Upstreams) -> (AddressMap, Addresses) {
    let mut map = AddressMap::new();
    let mut addrs = Addresses::default();
    for (name, port, b) in BACKENDS {
        let pod = w.pod(&format!("{name}-0"), "shop").expect("backend pod");
        let real = match b {
            Some(b) => ups.start(*b).await,
            None => Upstreams::refused().await,
        };
        let mesh = SocketAddr::new(IpAddr::V4(pod.ip), *port);
        map.insert(mesh, real);
        addrs
            .real_to_mesh
            .insert(real.to_string(), mesh.to_string());
    }
    (map, addrs)
}

/// One exchange: a name, the bytes a client sends, and for a sidecar the
/// PROXY header standing for the original destination.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// PROXY header and the source port it carries (what the log shows).
    proxy: Option<(Vec<u8>, u16)>,
}

impl Case {
    fn new(name: &'static str, bytes: Vec<u8>) -> Case {
        Case {
            name,
            bytes,
            proxy: None,
        }
    }
}

fn get(path: &str, host: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: diff/1\r\n{extra}\r\n").into_bytes()
}

fn client_hello(sni: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(meshsim_proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    let mut c = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut out = Vec::new();
    let _ = c.write_tls(&mut out);
    out
}

fn gateway_cases() -> Vec<Case> {
    let mut many = String::new();
    for i in 0..101 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    vec![
        Case::new("ok", get("/api/items", "app.example", "")),
        Case::new("http10", b"GET /api HTTP/1.0\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("no route (path)", get("/nowhere", "app.example", "")),
        Case::new("no route (host)", get("/api", "other.example", "")),
        Case::new("connection refused, retried", get("/refused", "app.example", "")),
        Case::new("upstream garbage", get("/garbage", "app.example", "")),
        Case::new("upstream closes before headers", get("/early", "app.example", "")),
        Case::new("upstream closes mid-body", get("/midbody", "app.example", "")),
        Case::new("response timeout", get("/slow", "app.example", "")),
        Case::new("TLS origination to a plaintext upstream", get("/tls", "app.example", "")),
        Case::new("non-HTTP bytes", b"\x00\x01\x02 hello there\r\n\r\n".to_vec()),
        Case::new("TLS to an HTTP listener", client_hello("app.example")),
        Case::new("space in a header name", get("/api", "app.example", "Bad Header: x\r\n")),
        Case::new("header without a colon", get("/api", "app.example", "NoColonHere\r\n")),
        Case::new("control character in a header value", get("/api", "app.example", "X-Ctl: a\x01b\r\n")),
        Case::new("missing Host", b"GET /api HTTP/1.1\r\nUser-Agent: diff/1\r\n\r\n".to_vec()),
        Case::new("70 KiB header", get("/api", "app.example", &format!("X-Big: {}\r\n", "a".repeat(70 * 1024)))),
        Case::new("101 headers", get("/api", "app.example", &many)),
        Case::new("head of exactly 60 KiB", get("/api", "app.example", &format!("X-Big: {}\r\n", "a".repeat(61371)))),
        Case::new("head one byte over 60 KiB", get("/api", "app.example", &format!("X-Big: {}\r\n", "a".repeat(61372)))),
        Case::new("two 30000-byte headers", get("/api", "app.example", &format!("X-B1: {}\r\nX-B2: {}\r\n", "a".repeat(30000), "b".repeat(30000)))),
        Case::new("61 KiB path", get(&format!("/api/{}", "p".repeat(61400)), "app.example", "")),
        Case::new("HTTP/0.9 request line", b"GET /api HTTP/0.9\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("junk after the version", b"GET /api HTTP/1.1 x\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("runs of spaces in the request line", b"GET  /api HTTP/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("content-length twice", get("/api", "app.example", "Content-Length: 0\r\nContent-Length: 0\r\n")),
        Case::new("two different content-lengths", get("/api", "app.example", "Content-Length: 0\r\nContent-Length: 1\r\n")),
        Case::new("transfer-encoding gzip", get("/api", "app.example", "Transfer-Encoding: gzip\r\n")),
        Case::new("host with a path", get("/api", "app.example/x", "")),
        Case::new("empty host", get("/api", "", "")),
        Case::new("HTTP/1.0 without host", b"GET /api HTTP/1.0\r\n\r\n".to_vec()),
        Case::new("bare CR after the request line", b"GET /api HTTP/1.1\rHost: app.example\r\n\r\n".to_vec()),
        Case::new("escaped dot segments", get("/api/%2e%2e/x", "app.example", "")),
        Case::new("fragment in the path", get("/api#frag", "app.example", "")),
        Case::new("dot segments", get("/x/../api", "app.example", "")),
        Case::new("path /a/./b", get("/a/./b", "app.example", "")),
        Case::new("path with %2E%2e", get("/a/%2E%2e/b", "app.example", "")),
        Case::new("double slash kept", get("/a//b", "app.example", "")),
        Case::new("escaped slash kept", get("/a/%2f/b", "app.example", "")),
        Case::new("unreserved escapes decoded", get("/%7euser/%41b%c3%a9", "app.example", "")),
        Case::new("backslash", get("/a\\b", "app.example", "")),
        Case::new("dot segments above the root", get("/a/b/../../../..", "app.example", "")),
        Case::new("bytes hyper refuses in the path", get("/a\"b{c}<d>`e|f^g", "app.example", "")),
        Case::new("query untouched", get("/a?x=/../y&z=%2e", "app.example", "")),
        Case::new("raw UTF-8 in the path", get("/a/\u{e9}", "app.example", "")),
        Case::new("trailing ..", get("/a/..", "app.example", "")),
        Case::new("trailing .", get("/a/.", "app.example", "")),
        Case::new("broken escapes", get("/a/%zz/%2", "app.example", "")),
        Case::new("semicolon", get("/a;b/c", "app.example", "")),
        Case::new("escaped NUL", get("/a%00b", "app.example", "")),
        Case::new("mixed escaped dots", get("/a/%2E/b/.%2e/c", "app.example", "")),
        Case::new("100 headers", get("/api", "app.example", &(0..98).map(|i| format!("X-H{i}: v\r\n")).collect::<String>())),
        Case::new("101 headers (with host and user-agent)", get("/api", "app.example", &(0..99).map(|i| format!("X-H{i}: v\r\n")).collect::<String>())),
        Case::new("underscore in a header name", get("/api", "app.example", "X_Under: v\r\n")),
        Case::new("two Host headers", b"GET /api HTTP/1.1\r\nHost: app.example\r\nHost: other.example\r\n\r\n".to_vec()),
        Case::new("non-numeric content-length", get("/api", "app.example", "Content-Length: abc\r\n")),
        Case::new("content-length and chunked", get("/api", "app.example", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
        Case::new("obsolete line folding", get("/api", "app.example", "X-Fold: a\r\n b\r\n")),
        Case::new("bare LF line ends", b"GET /api HTTP/1.1\nHost: app.example\n\n".to_vec()),
        Case::new("DEL in a header value", get("/api", "app.example", "X-Del: a\x7fb\r\n")),
        Case::new("UTF-8 in a header value", get("/api", "app.example", "X-Hi: a\u{e9}b\r\n")),
        Case::new("tab in a header value", get("/api", "app.example", "X-Tab: a\tb\r\n")),
        Case::new("space before the colon", get("/api", "app.example", "X-Sp : v\r\n")),
        Case::new("empty header name", get("/api", "app.example", ": v\r\n")),
        Case::new("absolute-form target", b"GET http://app.example/api HTTP/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("invalid method", b"G@T /api HTTP/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("HTTP/2.0 request line", b"GET /api HTTP/2.0\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("HTTP/1.2 request line", b"GET /api HTTP/1.2\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("lower-case protocol", b"GET /api http/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("relative path", b"GET api HTTP/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("CONNECT", b"CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n\r\n".to_vec()),
        Case::new("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: app.example\r\n\r\n".to_vec()),
        Case::new("x-forwarded-for at the gateway", get("/api", "app.example", "X-Forwarded-For: 203.0.113.9\r\n")),
        Case::new("route removes user-agent", get("/no-agent", "app.example", "")),
        Case::new("authority and path rewritten", get("/rewritten/x", "app.example", "")),
        Case::new("destination headers, weighted", get("/dest-weighted", "app.example", "")),
        Case::new("destination headers, single", get("/dest-single", "app.example", "")),
        Case::new("auto_sni: the request's host", get("/sni", "app.example", "")),
        Case::new("auto_sni: the rewritten host", get("/sni-rewritten", "app.example", "")),
        Case::new("auto_sni: a host with a port", get("/sni", "app.example:8080", "")),
        Case::new("upstream 503, default retry policy", get("/busy", "app.example", "")),
        Case::new("upstream 503, retryOn 503", get("/busy-retried", "app.example", "")),
        Case::new(
            "a broken chunk in the request body",
            b"POST /intake/items HTTP/1.1\r\nHost: app.example\r\nUser-Agent: diff/1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsku1\r\nnot-hex\r\n".to_vec(),
        ),
        Case::new("httpsRedirect", get("/api?q=1", "secure.example", "")),
        Case::new("httpsRedirect keeps a port", get("/x", "secure.example:8080", "")),
        Case::new("httpsRedirect with :80", get("/x", "secure.example:80", "")),
        Case::new("httpsRedirect on a routed host", get("/api", "a.moved.example", "")),
        Case::new("httpsRedirect on a wildcard host", get("/api", "b.moved.example", "")),
        Case::new("httpsRedirect despite x-forwarded-proto", get("/api", "secure.example", "X-Forwarded-Proto: https\r\n")),
        Case::new("host with a port", get("/api", "app.example:8080", "")),
        Case::new("redirect keeps the query and port", get("/old?q=1", "app.example:8080", "")),
        Case::new("redirect to a port", get("/toport/a", "app.example:8080", "")),
        Case::new("redirect to https drops :80", get("/tohttps", "app.example:80", "")),
        Case::new("redirect to https keeps :8080", get("/tohttps", "app.example:8080", "")),
        Case::new("redirect to another authority", get("/elsewhere?a=1", "app.example:8080", "")),
        Case::new("h2c upgrade request", get("/api", "app.example", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")),
    ]
}

/// The client port a log line's `%DOWNSTREAM_REMOTE_ADDRESS%` names.
fn line_port(line: &str) -> Option<u16> {
    let f = super::compare::log_fields(line);
    f.get(19)?.rsplit_once(':')?.1.parse().ok()
}

fn by_port(lines: Vec<String>) -> BTreeMap<u16, Vec<String>> {
    let mut m: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for l in lines {
        m.entry(line_port(&l).unwrap_or(0)).or_default().push(l);
    }
    m
}

/// One case's outcome: its name, each proxy's reply, and the client port
/// each proxy's log line carries.
struct Outcome {
    name: &'static str,
    meshsim: Reply,
    envoy: Reply,
    ports: (u16, u16),
}

/// Log lines written since `from` (meshsim, Envoy), by client port, once
/// both have flushed.
async fn lines_since(
    m: &Meshsim,
    e: &Envoy,
    from: (usize, usize),
) -> (BTreeMap<u16, Vec<String>>, BTreeMap<u16, Vec<String>>) {
    // Envoy flushes its log every 10 ms; meshsim writes at stream end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (
        by_port(m.lines.lines().into_iter().skip(from.0).collect()),
        by_port(e.log_lines().into_iter().skip(from.1).collect()),
    )
}

/// Compares each outcome's replies and log lines; every difference not
/// accepted, and log lines no case accounts for.
async fn judge(
    suite: &str,
    outcomes: Vec<Outcome>,
    m: &Meshsim,
    e: &Envoy,
    from: (usize, usize),
    addrs: &Addresses,
) -> Vec<String> {
    let (mut lm, mut le) = lines_since(m, e, from).await;
    let mut report = Vec::new();
    for o in outcomes {
        let (lines_m, lines_e) = (
            lm.remove(&o.ports.0).unwrap_or_default(),
            le.remove(&o.ports.1).unwrap_or_default(),
        );
        if std::env::var_os("DIFFERENTIAL_VERBOSE").is_some() {
            eprintln!(
                "== {suite} / {}\n meshsim {:?}\n   {lines_m:?}\n envoy {:?}\n   {lines_e:?}",
                o.name, o.meshsim, o.envoy
            );
        }
        let mut diffs = compare_replies(&o.meshsim, &o.envoy, addrs);
        diffs.extend(compare_logs(
            &lines_m,
            &lines_e,
            addrs,
            (&o.meshsim.body, &o.envoy.body),
        ));
        record(suite, o.name, diffs, &mut report);
    }
    let stray = |m: &BTreeMap<u16, Vec<String>>| m.values().flatten().cloned().collect::<Vec<_>>();
    record(
        suite,
        "lines no case accounts for",
        vec![Diff {
            field: "log lines".into(),
            meshsim: format!("{:?}", stray(&lm)),
            envoy: format!("{:?}", stray(&le)),
        }]
        .into_iter()
        .filter(|d| d.meshsim != d.envoy)
        .collect(),
        &mut report,
    );
    report
}

/// Curl cases, one after another (each curl is its own process).
async fn run_curl_cases(
    suite: &str,
    cases: Vec<super::curl::CurlCase>,
    targets: (SocketAddr, SocketAddr),
    m: &Meshsim,
    e: &Envoy,
    addrs: &Addresses,
) -> Vec<String> {
    let from = (m.lines.lines().len(), e.log_lines().len());
    let mut outcomes = Vec::new();
    for c in &cases {
        let (rm, re) = tokio::join!(
            super::curl::curl(c, targets.0),
            super::curl::curl(c, targets.1)
        );
        let ports = (rm.port, re.port);
        outcomes.push(Outcome {
            name: c.name,
            meshsim: rm,
            envoy: re,
            ports,
        });
    }
    judge(suite, outcomes, m, e, from, addrs).await
}

/// Runs every case against both proxies at once (each on its own
/// connection), then pairs each reply with the log lines of its client
/// port; returns every difference not accepted.
async fn run_cases(
    suite: &str,
    cases: Vec<Case>,
    targets: (SocketAddr, SocketAddr),
    m: &Meshsim,
    e: &Envoy,
    addrs: &Addresses,
) -> Vec<String> {
    let from = (m.lines.lines().len(), e.log_lines().len());
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let prefix = c.proxy.as_ref().map(|p| p.0.clone()).unwrap_or_default();
        let bytes = c.bytes.clone();
        set.spawn(async move {
            let (rm, re) = tokio::join!(
                exchange(targets.0, &prefix, &bytes),
                exchange(targets.1, &prefix, &bytes)
            );
            (i, rm, re)
        });
    }
    let mut replies = Vec::new();
    while let Some(r) = set.join_next().await {
        replies.push(r.expect("case task"));
    }
    replies.sort_by_key(|r| r.0);
    let outcomes = replies
        .into_iter()
        .map(|(i, rm, re)| {
            let c = &cases[i];
            let ports = match &c.proxy {
                Some((_, port)) => (*port, *port),
                None => (rm.port, re.port),
            };
            Outcome {
                name: c.name,
                meshsim: rm,
                envoy: re,
                ports,
            }
        })
        .collect();
    judge(suite, outcomes, m, e, from, addrs).await
}

fn record(suite: &str, case: &str, diffs: Vec<Diff>, report: &mut Vec<String>) {
    for d in diffs {
        let accepted = ACCEPTED
            .iter()
            .any(|(c, f, _)| *c == case && d.field.starts_with(f));
        if !accepted {
            report.push(format!(
                "[{suite}] {case}: {}\n    meshsim: {}\n    envoy:   {}",
                d.field,
                clip(&d.meshsim),
                clip(&d.envoy)
            ));
        }
    }
}

/// Long values (a 70 KiB header echoed back) shortened for the report.
fn clip(s: &str) -> String {
    if s.len() <= 400 {
        return s.to_string();
    }
    let cut = (0..=400)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &s[..cut], s.len())
}

/// Reads into `got` until it holds `needle` (or 5 s, or the end).
async fn read_until(s: &mut tokio::net::TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
}

/// A websocket upgrade (istiod enables `upgrade_configs: websocket`): the
/// 101 and the head upstream saw, then bytes both ways through the
/// tunnel; the access log is written when the tunnel closes.
async fn websocket(
    targets: (SocketAddr, SocketAddr),
    m: &Meshsim,
    e: &Envoy,
    addrs: &Addresses,
    report: &mut Vec<String>,
) {
    use tokio::io::AsyncWriteExt;
    let talk = |addr: SocketAddr| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
        let req = get("/ws/chat", "app.example", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        let _ = s.write_all(&req).await;
        let mut got = Vec::new();
        read_until(&mut s, &mut got, b"x-request-id: *\n\n").await;
        let _ = s.write_all(b"ping").await;
        read_until(&mut s, &mut got, b"echo:ping").await;
        drop(s);
        let text = String::from_utf8_lossy(&got).into_owned();
        let mut r = Reply {
            port,
            ..Default::default()
        };
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        r.status_line = lines.next().unwrap_or_default().to_string();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                r.headers
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        r.body = body.to_string();
        r
    };
    let from = (m.lines.lines().len(), e.log_lines().len());
    let (rm, re) = tokio::join!(talk(targets.0), talk(targets.1));
    let ports = (rm.port, re.port);
    let mut diffs = super::compare::compare_replies(&rm, &re, addrs);
    for h in ["upgrade", "sec-websocket-accept"] {
        if rm.header(h) != re.header(h) {
            diffs.push(Diff {
                field: format!("header {h}"),
                meshsim: format!("{:?}", rm.header(h)),
                envoy: format!("{:?}", re.header(h)),
            });
        }
    }
    let (mut lm, mut le) = lines_since(m, e, from).await;
    let (lines_m, lines_e) = (
        lm.remove(&ports.0).unwrap_or_default(),
        le.remove(&ports.1).unwrap_or_default(),
    );
    if std::env::var_os("DIFFERENTIAL_VERBOSE").is_some() {
        eprintln!("== websocket\n meshsim {rm:?}\n   {lines_m:?}\n envoy {re:?}\n   {lines_e:?}");
    }
    diffs.extend(compare_logs(
        &lines_m,
        &lines_e,
        addrs,
        (&rm.body, &re.body),
    ));
    record("gateway", "websocket upgrade", diffs, report);
}

/// Three concurrent requests through a one-connection, one-pending
/// breaker whose connection is already open (warmed by one request): one
/// is served, one waits for it, one overflows. (Cold, the outcome depends
/// on whether the others arrive before the connection is up, in Envoy as
/// in meshsim; crates/proxy/tests/pool.rs checks that rule.)
async fn overflow(
    targets: (SocketAddr, SocketAddr),
    m: &Meshsim,
    e: &Envoy,
    report: &mut Vec<String>,
) {
    for addr in [targets.0, targets.1] {
        exchange(addr, b"", &get("/narrow", "app.example", "")).await;
    }
    let burst = |addr: SocketAddr| async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..3 {
            set.spawn(async move { exchange(addr, b"", &get("/narrow", "app.example", "")).await });
        }
        let mut codes: Vec<String> = Vec::new();
        while let Some(r) = set.join_next().await {
            let r: Reply = r.unwrap_or_default();
            codes.push(format!(
                "{} overloaded={:?}",
                r.status_line,
                r.header("x-envoy-overloaded")
            ));
        }
        codes.sort();
        codes
    };
    let (m0, e0) = (m.lines.lines().len(), e.log_lines().len());
    let (cm, ce) = (burst(targets.0).await, burst(targets.1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lm: Vec<String> = m.lines.lines().into_iter().skip(m0).collect();
    let le: Vec<String> = e.log_lines().into_iter().skip(e0).collect();
    let summary = |lines: &[String]| {
        let mut v: Vec<String> = lines
            .iter()
            .map(|l| {
                let f = super::compare::log_fields(l);
                format!("{} {} {}", f[2], f[3], f[4])
            })
            .collect();
        v.sort();
        v
    };
    let diffs = vec![
        Diff {
            field: "responses".into(),
            meshsim: format!("{cm:?}"),
            envoy: format!("{ce:?}"),
        },
        Diff {
            field: "log lines".into(),
            meshsim: format!("{:?}", summary(&lm)),
            envoy: format!("{:?}", summary(&le)),
        },
    ]
    .into_iter()
    .filter(|d| d.meshsim != d.envoy)
    .collect();
    record("gateway", "circuit breaker overflow", diffs, report);
}

/// Outlier detection: four requests in a row to a host that answers 503,
/// with `consecutive5xxErrors: 2` — two 503s from it, then no healthy
/// upstream (`UH`) while it is ejected.
async fn ejection(
    targets: (SocketAddr, SocketAddr),
    m: &Meshsim,
    e: &Envoy,
    report: &mut Vec<String>,
) {
    let run = |addr: SocketAddr| async move {
        let mut out = Vec::new();
        for _ in 0..4 {
            let r = exchange(addr, b"", &get("/flaky", "app.example", "")).await;
            out.push(format!("{} {:?}", r.status_line, r.body));
        }
        out
    };
    let (m0, e0) = (m.lines.lines().len(), e.log_lines().len());
    let (rm, re) = (run(targets.0).await, run(targets.1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let summary = |lines: Vec<String>| {
        lines
            .iter()
            .map(|l| {
                let f = super::compare::log_fields(l);
                format!("{} {} {}", f[2], f[3], f[4])
            })
            .collect::<Vec<_>>()
    };
    let lm = summary(m.lines.lines().into_iter().skip(m0).collect());
    let le = summary(e.log_lines().into_iter().skip(e0).collect());
    if std::env::var_os("DIFFERENTIAL_VERBOSE").is_some() {
        eprintln!("== outlier ejection\n meshsim {rm:?} {lm:?}\n envoy {re:?} {le:?}");
    }
    let diffs = vec![
        Diff {
            field: "responses".into(),
            meshsim: format!("{rm:?}"),
            envoy: format!("{re:?}"),
        },
        Diff {
            field: "log lines".into(),
            meshsim: format!("{lm:?}"),
            envoy: format!("{le:?}"),
        },
    ]
    .into_iter()
    .filter(|d| d.meshsim != d.envoy)
    .collect();
    record("gateway", "outlier ejection", diffs, report);
}

pub async fn gateway() {
    let mut yaml = format!("{GATEWAY}---\n{}", backends_yaml());
    yaml.push_str(&routes_yaml("edge/public"));
    yaml.push_str("---\napiVersion: v1\nkind: Secret\nmetadata: {name: secure-cred, namespace: edge, annotations: {meshsim.io/generate-cert: secure.example}}\ntype: kubernetes.io/tls\n");
    let w = world(&yaml);
    let mut ups = Upstreams::new();
    let (map, mut addrs) = upstreams(&w, &mut ups).await;
    let proxy = "deploy/edge-gw.edge";
    let envoy = Envoy::start(&w, proxy, &["0.0.0.0_8080", "0.0.0.0_8443"], &map, false).await;
    // Where each writes its own address in XFF for a loopback client.
    let probe = exchange(
        envoy.listeners["0.0.0.0_8080"],
        b"",
        &get("/api", "app.example", ""),
    )
    .await;
    addrs.envoy_self = probe
        .body
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-for: "))
        .map(String::from);
    addrs.mesh_self = w.pod("edge-gw-0", "edge").map(|p| p.ip.to_string());
    let mesh_http = Meshsim::start(&w, proxy, Some(8080), &map).await;
    let targets = (mesh_http.addr, envoy.listeners["0.0.0.0_8080"]);
    let mut report = run_cases(
        "gateway",
        gateway_cases(),
        targets,
        &mesh_http,
        &envoy,
        &addrs,
    )
    .await;
    overflow(targets, &mesh_http, &envoy, &mut report).await;
    ejection(targets, &mesh_http, &envoy, &mut report).await;
    websocket(targets, &mesh_http, &envoy, &addrs, &mut report).await;
    report.extend(
        run_curl_cases(
            "gateway",
            super::curl::gateway_http(),
            targets,
            &mesh_http,
            &envoy,
            &addrs,
        )
        .await,
    );
    let mesh_tls = Meshsim::start(&w, proxy, Some(8443), &map).await;
    let tls_targets = (mesh_tls.addr, envoy.listeners["0.0.0.0_8443"]);
    let tls_cases = vec![Case::new(
        "TLS with no matching filter chain",
        client_hello("nomatch.example"),
    )];
    report.extend(run_cases("gateway", tls_cases, tls_targets, &mesh_tls, &envoy, &addrs).await);
    report.extend(
        run_curl_cases(
            "gateway",
            super::curl::gateway_https(),
            tls_targets,
            &mesh_tls,
            &envoy,
            &addrs,
        )
        .await,
    );
    mesh_http.stop().await;
    mesh_tls.stop().await;
    assert!(
        report.is_empty(),
        "{} differences from Envoy:\n{}",
        report.len(),
        report.join("\n")
    );
}

const CLIENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  template:
    metadata: {labels: {app: client}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
";

pub async fn sidecar() {
    let yaml = format!("{CLIENT}---\n{}", backends_yaml());
    let w = world(&yaml);
    let mut ups = Upstreams::new();
    let (map, addrs) = upstreams(&w, &mut ups).await;
    let proxy = "deploy/client.shop";
    let envoy = Envoy::start(&w, proxy, &["virtualOutbound"], &map, true).await;
    let m = Meshsim::start(&w, proxy, None, &map).await;
    let client = w.pod("client-0", "shop").expect("client pod");
    let vip = |svc: &str| -> IpAddr {
        w.service(&format!("{svc}.shop.svc.cluster.local"))
            .and_then(|s| s.addresses.first())
            .and_then(|a| a.parse().ok())
            .expect("vip")
    };
    let to = |svc: &str, port: u16| SocketAddr::new(vip(svc), port);
    let cases: Vec<(&'static str, SocketAddr, Vec<u8>)> = vec![
        (
            "sidecar ok",
            to("web", 8000),
            get("/a", "web.shop:8000", ""),
        ),
        (
            "sidecar http10",
            to("web", 8000),
            b"GET / HTTP/1.0\r\nHost: web.shop:8000\r\n\r\n".to_vec(),
        ),
        (
            "sidecar connect failure retried",
            to("down", 8001),
            get("/", "down.shop:8001", ""),
        ),
        (
            "sidecar unknown host (REGISTRY_ONLY)",
            to("web", 8000),
            get("/", "elsewhere.example", ""),
        ),
        (
            "sidecar upstream garbage",
            to("junk", 8002),
            get("/", "junk.shop:8002", ""),
        ),
    ];
    // Each case its own source port, so its log line can be found.
    let cases = cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, dst, bytes))| {
            let port = 45100 + i as u16;
            let src = SocketAddr::new(IpAddr::V4(client.ip), port);
            let prefix = meshsim_proxy::listener::proxy_header(src, dst);
            Case {
                name,
                bytes,
                proxy: Some((prefix, port)),
            }
        })
        .collect();
    let report = run_cases(
        "sidecar",
        cases,
        (m.addr, envoy.listeners["virtualOutbound"]),
        &m,
        &envoy,
        &addrs,
    )
    .await;
    m.stop().await;
    assert!(
        report.is_empty(),
        "{} differences from Envoy:\n{}",
        report.len(),
        report.join("\n")
    );
}
