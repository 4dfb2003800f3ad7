//! The data plane through real sockets, the way a user observes it: curl
//! from a pod (through its sidecar) or from outside (to the gateway), then
//! the response and the Envoy access-log lines of every proxy on the path.

use std::sync::Arc;
use std::time::Duration;

use meshsim_mesh::curl::{From, HttpVersion};
use meshsim_mesh::Change;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_routes_by_end_user_with_auto_mtls() {
    let mesh = start(BOOKINFO, "").await;
    for _ in 0..3 {
        let mut req = get("http://reviews:9080/");
        req.headers.push("end-user: jason".into());
        let (r, logs) = curl(&mesh, &sleep(), &req).await;
        assert_eq!(r.status, Some(200), "{r:?}");
        assert!(
            body(&r).starts_with("Hello version: v2, instance: reviews-v2-0"),
            "{}",
            body(&r)
        );
        let client = line(&logs, "sleep-0");
        assert!(
            client.contains("\"GET / HTTP/1.1\" 200 - via_upstream - \"-\""),
            "{client}"
        );
        assert!(client.contains("\"reviews:9080\""), "{client}");
        assert!(
            client.contains(" outbound|9080|v2|reviews.default.svc.cluster.local "),
            "{client}"
        );
        let server = line(&logs, "reviews-v2-0");
        assert!(server.contains(" inbound|9080|| "), "{server}");
        assert!(
            server.contains(" outbound_.9080_.v2_.reviews.default.svc.cluster.local default"),
            "{server}"
        );
    }
    let (r, logs) = curl(&mesh, &sleep(), &get("http://reviews:9080/")).await;
    assert!(
        body(&r).starts_with("Hello version: v1, instance: reviews-v1-0"),
        "{}",
        body(&r)
    );
    assert!(line(&logs, "sleep-0").contains("outbound|9080|v1|reviews"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_gets_426_from_envoy() {
    let mesh = start(BOOKINFO, "").await;
    let mut req = get("http://reviews:9080/");
    req.version = HttpVersion::Http10;
    let (r, logs) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(r.status, Some(426));
    assert_eq!(body(&r), "Upgrade Required");
    // The client sidecar passes HTTP/1.0 through (its HTTP chain matches
    // only http/1.1 and h2c); the server sidecar's codec rejects it.
    let server = logs
        .iter()
        .find(|l| l.entry.response_code == 426)
        .map(|l| l.line.to_string())
        .expect("426 line");
    assert!(
        server.contains("\"- - HTTP/1.1\" 426 DPE low_version - \"-\" 0 16 "),
        "{server}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_nr() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: helloworld}\nspec:\n  hosts: [helloworld]\n  http:\n  - match:\n    - uri: {prefix: /hello}\n    route:\n    - destination: {host: helloworld, subset: v1}\n";
    let mesh = start(HELLO, vs).await;
    let (r, _) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    assert_eq!(r.status, Some(200));
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/other")).await;
    assert_eq!(r.status, Some(404));
    let l = line(&logs, "sleep-0");
    assert!(
        l.contains("\"GET /other HTTP/1.1\" 404 NR route_not_found "),
        "{l}"
    );
}

/// A route to a subset no DestinationRule defines: the route matches but
/// its cluster does not exist (router.cc: `no_cluster`), 503 NC with an
/// empty body and no upstream cluster in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_subset_is_503_nc() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: helloworld}\nspec:\n  hosts: [helloworld]\n  http:\n  - route:\n    - destination: {host: helloworld, subset: canary}\n";
    let mesh = start(HELLO, vs).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    assert_eq!(r.status, Some(503), "{r:?}");
    assert!(r.body.is_empty(), "{}", body(&r));
    let l = line(&logs, "sleep-0");
    assert!(
        l.contains("\"GET /hello HTTP/1.1\" 503 NC cluster_not_found "),
        "{l}"
    );
    assert!(
        l.contains(" \"-\" - - "),
        "upstream host and cluster are '-': {l}"
    );
    assert_eq!(logs.len(), 1, "nothing reaches a server: {logs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_server_and_disabled_client_tls_is_503_uc() {
    let files = [
        "scenarios/_shared/sleep.yaml",
        "scenarios/_shared/helloworld.yaml",
        "scenarios/_shared/mesh-strict.yaml",
        "scenarios/destination-rule-disables-mtls/broken.yaml",
    ];
    let mesh = start(&files, "").await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    assert_eq!(r.status, Some(503), "{r:?}");
    let client = line(&logs, "sleep-0");
    assert!(
        client.contains(" 503 UC upstream_reset_before_response_started{connection_termination} "),
        "{client}"
    );
    assert!(
        logs.iter()
            .any(|l| l.proxy.starts_with("helloworld")
                && l.line.contains(" NR filter_chain_not_found ")),
        "{logs:#?}"
    );
    let files = [
        "scenarios/_shared/sleep.yaml",
        "scenarios/_shared/helloworld.yaml",
        "scenarios/_shared/mesh-strict.yaml",
        "scenarios/destination-rule-disables-mtls/fix-istio-mutual.yaml",
    ];
    let mesh = start(&files, "").await;
    let (r, _) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    assert_eq!(r.status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_a_plaintext_server_is_503_uf_urx() {
    let plain = "apiVersion: v1\nkind: Service\nmetadata: {name: legacy}\nspec:\n  ports: [{port: 8000, name: http}]\n  selector: {app: legacy}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: legacy}\nspec:\n  selector: {matchLabels: {app: legacy}}\n  template:\n    metadata: {labels: {app: legacy}, annotations: {sidecar.istio.io/inject: \"false\"}}\n    spec: {containers: [{name: l, image: kennethreitz/httpbin, ports: [{containerPort: 8000}]}]}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: legacy}\nspec:\n  host: legacy\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n";
    let mesh = start(&["scenarios/_shared/sleep.yaml"], plain).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://legacy:8000/")).await;
    assert_eq!(r.status, Some(503));
    assert!(
        body(&r).contains("retried and the latest reset reason: remote connection failure"),
        "{}",
        body(&r)
    );
    let l = line(&logs, "sleep-0");
    // Envoy ≥ 1.30 prints flags as set: the router's URX, then the reset's UF.
    assert!(l.contains(" 503 URX,UF upstream_reset_before_response_started{remote_connection_failure|TLS_error:"), "{l}");
    assert!(
        l.contains("WRONG_VERSION_NUMBER") || l.contains("CONNECTION_CLOSED"),
        "{l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_an_http_port_is_a_codec_error() {
    let mesh = start_v(
        &[
            "scenarios/_shared/sleep.yaml",
            "scenarios/https-to-http-port/serviceentry.yaml",
        ],
        "",
        "1.5.0",
    )
    .await;
    let (r, logs) = curl(&mesh, &sleep(), &get("https://httpbin.org/")).await;
    assert_client_error(&r, 35, "wrong version number");
    assert!(
        line(&logs, "sleep-0").contains("\"- - HTTP/1.1\" 400 DPE http1.codec_error "),
        "{logs:#?}"
    );
    let mesh = start(
        &[
            "scenarios/_shared/sleep.yaml",
            "scenarios/https-to-http-port/fix-https.yaml",
        ],
        "",
    )
    .await;
    let (r, _) = curl(&mesh, &sleep(), &get("https://httpbin.org/")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(body(&r).contains("external host httpbin.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_tls_and_its_fixes() {
    let mesh = start(
        &[
            "scenarios/_shared/sleep.yaml",
            "scenarios/double-tls/broken.yaml",
        ],
        "",
    )
    .await;
    let (r, _) = curl(&mesh, &sleep(), &get("https://httpbin.org/")).await;
    assert_client_error(&r, 35, "wrong version number");
    let mesh = start(
        &[
            "scenarios/_shared/sleep.yaml",
            "scenarios/double-tls/fix-a-http-443.yaml",
            "scenarios/_shared/originate-tls.yaml",
        ],
        "",
    )
    .await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://httpbin.org:443/")).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    let mesh = start(
        &[
            "scenarios/_shared/sleep.yaml",
            "scenarios/double-tls/fix-b-target-port.yaml",
            "scenarios/_shared/originate-tls.yaml",
        ],
        "",
    )
    .await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://httpbin.org/")).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    assert!(line(&logs, "sleep-0").contains("outbound|80||httpbin.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_service_by_pod_ip() {
    let base = [
        "scenarios/_shared/sleep.yaml",
        "scenarios/headless-service-pod-ip/mesh.yaml",
    ];
    let mesh = start(
        &[
            base[0],
            base[1],
            "scenarios/headless-service-pod-ip/nginx.yaml",
        ],
        "",
    )
    .await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://10.1.1.171/")).await;
    assert_eq!(r.status, Some(503), "{r:?}");
    let l = line(&logs, "sleep-0");
    assert!(
        l.contains(" 503 UC ") && l.contains(" PassthroughCluster "),
        "{l}"
    );
    let mut with_host = get("http://10.1.1.171/");
    with_host.headers.push("Host: nginx.default".into());
    let (r, _) = curl(&mesh, &sleep(), &with_host).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let (r, _) = curl(&mesh, &sleep(), &get("http://web-0.nginx.default/")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(body(&r).contains("instance: web-0"), "{}", body(&r));
    let mesh = start(
        &[
            base[0],
            base[1],
            "scenarios/headless-service-pod-ip/fix-tcp-port.yaml",
        ],
        "",
    )
    .await;
    for req in [get("http://10.1.1.171/"), with_host] {
        let (r, _) = curl(&mesh, &sleep(), &req).await;
        assert_eq!(r.status, Some(200), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_overflow_is_503_uo() {
    let mesh = Arc::new(
        start(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/_shared/helloworld.yaml",
                "scenarios/circuit-breaker-overflow/dr-limits.yaml",
            ],
            "",
        )
        .await,
    );
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let m = mesh.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..10 {
                let r = m
                    .curl(&sleep(), &get("http://helloworld:5000/delay/0.02"))
                    .await;
                codes.push((r.status, r.header("x-envoy-overloaded").map(String::from)));
            }
            codes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let overflow = all
        .iter()
        .filter(|(s, h)| *s == Some(503) && h.as_deref() == Some("true"))
        .count();
    assert!(overflow > 0, "some requests overflow: {all:?}");
    assert!(all.iter().any(|(s, _)| *s == Some(200)));
    let _ = mesh.logs().settle(0).await;
    assert!(mesh.logs().lines().iter().any(|l| l
        .line
        .contains(" 503 UO upstream_reset_before_response_started{overflow} ")));
    let stats = mesh.proxy("sleep-0.default").expect("proxy").stats();
    let pending_overflow: u64 = stats
        .iter()
        .filter(|(k, _)| {
            k.ends_with("helloworld.default.svc.cluster.local.upstream_rq_pending_overflow")
        })
        .map(|(_, v)| *v)
        .sum();
    assert!(pending_overflow > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_gateway_from_outside() {
    let mesh = start(BOOKINFO, "").await;
    let (r, logs) = curl(&mesh, &From::Outside, &get("http://1.2.3.4/productpage")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    // Bookinfo's productpage: details and reviews (v1 for everyone but
    // jason), called through its sidecar.
    let page = body(&r);
    assert!(page.contains("<h4>Book Details</h4>"), "{page}");
    assert!(page.contains("<u>reviews-v1-0</u>"), "{page}");
    let gw = line(&logs, "istio-ingressgateway");
    assert!(
        gw.contains("\"GET /productpage HTTP/1.1\" 200 - via_upstream")
            && gw.contains("outbound|9080||productpage.default.svc.cluster.local"),
        "{gw}"
    );
    let (r, logs) = curl(&mesh, &From::Outside, &get("http://1.2.3.4/nothing-here")).await;
    assert_eq!(r.status, Some(404));
    assert!(line(&logs, "istio-ingressgateway").contains(" 404 NR route_not_found "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sni_matching_needs_sni() {
    let mesh = start(
        &[
            "scenarios/_shared/helloworld.yaml",
            "scenarios/sni-not-sent/broken.yaml",
        ],
        "",
    )
    .await;
    let mut with_sni = get("https://app.example.com/hello");
    with_sni.resolve.push("app.example.com:443:1.2.3.4".into());
    let (r, logs) = curl(&mesh, &From::Outside, &with_sni).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    assert_eq!(
        r.http_version.as_deref(),
        Some("2"),
        "curl negotiates h2 with the gateway"
    );
    let mut no_sni = get("https://1.2.3.4/hello");
    no_sni.headers.push("Host: app.example.com".into());
    no_sni.insecure = true;
    let (r, logs) = curl(&mesh, &From::Outside, &no_sni).await;
    assert_eq!(r.exit_code, 35, "{r:?}");
    assert!(line(&logs, "istio-ingressgateway").contains(" NR filter_chain_not_found "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_interface() {
    let mesh = start(BOOKINFO, "").await;
    let _ = curl(&mesh, &sleep(), &get("http://reviews:9080/")).await;
    let addr = mesh.admin()["sleep-0.default"];
    let get_admin = |path: &'static str| async move {
        let s = tokio::net::TcpStream::connect(addr).await.expect("admin");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                .await
                .expect("hs");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(path)
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("req");
        let resp = sender.send_request(req).await.expect("send");
        use http_body_util::BodyExt;
        String::from_utf8_lossy(&resp.into_body().collect().await.expect("body").to_bytes())
            .into_owned()
    };
    let stats = get_admin("/stats").await;
    assert!(
        stats.contains(
            "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total: 1"
        ),
        "{stats}"
    );
    assert!(stats.contains("downstream_cx_total: "), "{stats}");
    let clusters = get_admin("/clusters").await;
    assert!(clusters.contains("outbound|9080|v1|reviews.default.svc.cluster.local::default_priority::max_connections::4294967295"), "{clusters}");
    let dump = get_admin("/config_dump").await;
    assert!(dump.contains("\"virtualInbound\""));
    assert_eq!(get_admin("/ready").await, "LIVE\n");
    assert!(get_admin("/").await.contains("/stats/prometheus: "));
    assert!(get_admin("/help").await.starts_with("admin commands are:"));
    // `?filter=REGEX` keeps the matching stats only.
    let filtered = get_admin("/stats?filter=reviews.*upstream_rq_total").await;
    assert!(
        !filtered.is_empty()
            && filtered
                .lines()
                .all(|l| l.contains("reviews") && l.contains("upstream_rq_total")),
        "{filtered}"
    );
    // Prometheus text: Envoy's cluster stats tagged, Istio's request metric.
    let prom = get_admin("/stats/prometheus").await;
    assert!(
        prom.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9080|v1|reviews.default.svc.cluster.local\"} 1"),
        "{prom}"
    );
    let line = prom
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap_or_else(|| panic!("{prom}"));
    for want in [
        "reporter=\"source\"",
        "source_workload=\"sleep\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "response_code=\"200\"",
        "response_flags=\"-\"",
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }
    assert!(line.ends_with("} 1"), "{line}");
}

/// A browser reuses one HTTP/2 connection for every host its certificate
/// covers; the gateway routes by the connection's SNI chain, so the second
/// host finds no virtual host (page: 404 with a shared certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_certificate_connection_reuse() {
    let mesh = start(
        &[
            "scenarios/_shared/helloworld.yaml",
            "scenarios/shared-cert-connection-reuse/broken.yaml",
        ],
        "",
    )
    .await;
    let mut first = get("https://service1.test.com/hello");
    first.resolve.push("service1.test.com:443:1.2.3.4".into());
    let mut conn = mesh.open(&From::Outside, &first).await.expect("connect");
    assert!(conn.is_h2());
    let r1 = conn.send(&first).await;
    assert_eq!(r1.status, Some(200), "{r1:?}");
    let before = mesh.logs().len();
    let r2 = conn.send(&get("https://service2.test.com/hello")).await;
    assert_eq!(r2.status, Some(404), "{r2:?}");
    // The line is written when the stream ends, which can be after the
    // client has its response: wait for it.
    let lines = mesh.logs().settle(before).await;
    let l = lines
        .iter()
        .rev()
        .find(|l| l.proxy.starts_with("istio-ingressgateway"))
        .expect("gateway line");
    assert!(
        l.line.contains(" 404 NR route_not_found ")
            && l.line.contains("\"service2.test.com\"")
            && l.line.contains(" service1.test.com "),
        "{}",
        l.line
    );
    // Fix: one wildcard gateway; both hosts work on one connection.
    let mesh = start(
        &[
            "scenarios/_shared/helloworld.yaml",
            "scenarios/shared-cert-connection-reuse/fix-one-gateway.yaml",
        ],
        "",
    )
    .await;
    let mut conn = mesh.open(&From::Outside, &first).await.expect("connect");
    assert_eq!(conn.send(&first).await.status, Some(200));
    assert_eq!(
        conn.send(&get("https://service2.test.com/hello"))
            .await
            .status,
        Some(200)
    );
}

/// Tables are swapped atomically: an established connection keeps working
/// and its next request follows the new routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_tables_apply_without_dropping_connections() {
    let v1 = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: helloworld}\nspec:\n  hosts: [helloworld]\n  http:\n  - route:\n    - destination: {host: helloworld, subset: v1}\n";
    let mesh = start(HELLO, v1).await;
    let req = get("http://helloworld:5000/hello");
    let mut conn = mesh.open(&sleep(), &req).await.expect("connect");
    assert!(body(&conn.send(&req).await).contains("version: v1"));
    let v2 = meshsim_model::parse_str("v2.yaml", &v1.replace("subset: v1", "subset: v2"));
    let report = mesh.apply(vec![Change::Apply(v2)]).await.expect("apply");
    assert!(report.restarts.is_empty(), "{:?}", report.restarts);
    let r = conn.send(&req).await;
    assert_eq!(r.status, Some(200), "same connection still served");
    assert!(body(&r).contains("version: v2"), "{}", body(&r));
}

/// TLS passthrough routed by SNI (page: Gateway with TLS passthrough, fix A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_passthrough_by_sni() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: httpbin-ext}\nspec:\n  hosts: [httpbin.org]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n";
    let files = [
        "scenarios/_shared/helloworld.yaml",
        "scenarios/gateway-passthrough-http-route/broken.yaml",
    ];
    let mesh = start(&files, se).await;
    let mut req = get("https://httpbin.example.com/");
    req.resolve.push("httpbin.example.com:443:1.2.3.4".into());
    let (r, _) = curl(&mesh, &From::Outside, &req).await;
    assert_eq!(
        r.exit_code, 7,
        "no listener on 443 without tls routes: {r:?}"
    );
    let mesh = start(
        &[
            files[0],
            files[1],
            "scenarios/gateway-passthrough-http-route/fix-a-tls-route.yaml",
        ],
        se,
    )
    .await;
    req.insecure = true; // the backend's certificate is for httpbin.org
    let (r, logs) = curl(&mesh, &From::Outside, &req).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(body(&r).contains("external host httpbin.org"));
    let l = line(&logs, "istio-ingressgateway");
    assert!(
        l.contains("\"- - -\" 0 - - - ")
            && l.contains("outbound|443||httpbin.org")
            && l.contains(" httpbin.example.com "),
        "{l}"
    );
}

/// nginx in front speaks HTTP/1.0 upstream: Envoy answers 426 (page:
/// Envoy won't connect to my HTTP/1.0 service); `proxy_http_version 1.1` fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_http10_upstream_gets_426() {
    let files = [
        "scenarios/_shared/sleep.yaml",
        "scenarios/_shared/helloworld.yaml",
        "scenarios/http10-client-rejected/nginx.yaml",
    ];
    let mesh = start(&files, "").await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://frontend/hello")).await;
    assert_eq!(r.status, Some(426), "{r:?} {logs:#?}");
    assert!(
        logs.iter().any(|l| l.proxy.starts_with("helloworld")
            && l.line.contains("\"- - HTTP/1.1\" 426 DPE low_version")),
        "{logs:#?}"
    );
    let mesh = start(
        &[
            files[0],
            files[1],
            files[2],
            "scenarios/http10-client-rejected/fix-http11.yaml",
        ],
        "",
    )
    .await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://frontend/hello")).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    assert!(body(&r).contains("instance: helloworld-v"));
}

/// A VirtualService timeout: Envoy answers 504 UT `response_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_504_ut() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: helloworld}\nspec:\n  hosts: [helloworld]\n  http:\n  - timeout: 0.1s\n    route:\n    - destination: {host: helloworld}\n";
    let mesh = start(HELLO, vs).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/delay/1")).await;
    assert_eq!(r.status, Some(504));
    assert_eq!(body(&r), "upstream request timeout");
    assert!(
        line(&logs, "sleep-0").contains(" 504 UT response_timeout "),
        "{logs:#?}"
    );
}

/// Mesh config `accessLogEncoding: JSON` with Istio's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_logs() {
    let mc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n    accessLogEncoding: JSON\n";
    let mesh = start(HELLO, mc).await;
    let (_, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    let v: serde_json::Value = serde_json::from_str(line(&logs, "sleep-0")).expect("json line");
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["authority"], "helloworld:5000");
    assert!(v["upstream_cluster"]
        .as_str()
        .is_some_and(|c| c.starts_with("outbound|5000||helloworld")));
    assert!(v["requested_server_name"].is_null());
}

/// VirtualService rewrites: prefix and regex, seen by the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_reach_the_application() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: helloworld}\nspec:\n  hosts: [helloworld]\n  http:\n  - match:\n    - uri: {prefix: /old}\n    rewrite: {uri: /new}\n    route:\n    - destination: {host: helloworld}\n  - match:\n    - uri: {prefix: /v1/}\n    rewrite:\n      uriRegexRewrite: {match: \"^/v1/(.*)$\", rewrite: \"/api/\\\\1\"}\n    route:\n    - destination: {host: helloworld}\n";
    let mesh = start(HELLO, vs).await;
    let (r, _) = curl(&mesh, &sleep(), &get("http://helloworld:5000/old/x?q=1")).await;
    assert!(body(&r).contains("GET /new/x?q=1 HTTP/1.1"), "{}", body(&r));
    let (r, _) = curl(&mesh, &sleep(), &get("http://helloworld:5000/v1/users")).await;
    assert!(body(&r).contains("GET /api/users HTTP/1.1"), "{}", body(&r));
}

/// Istio fields meshsim does not simulate are reported, not dropped.
#[test]
fn unsimulated_fields_are_reported() {
    let y = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  tcp:\n  - match:\n    - sourceSubnet: 10.0.0.0/8\n    route:\n    - destination: {host: a}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b}\nspec:\n  hosts: [b.example.com]\n  subjectAltNames: [x]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n";
    let l = meshsim_model::parse_str("u.yaml", y);
    let paths: Vec<&str> = l.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert!(
        paths.contains(&"spec.tcp[0].match[0].sourceSubnet"),
        "{paths:?}"
    );
    assert!(paths.contains(&"spec.subjectAltNames"), "{paths:?}");
}

/// Gateway `tls.mode: MUTUAL`: clients must present a certificate the
/// credential's CA signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_mutual_tls_requires_a_client_certificate() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: mtls-gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [secure.example.com]\n    tls: {mode: MUTUAL, credentialName: secure-cred}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: secure}\nspec:\n  hosts: [secure.example.com]\n  gateways: [mtls-gw]\n  http:\n  - route:\n    - destination: {host: helloworld}\n";
    let mesh = start(&["scenarios/_shared/helloworld.yaml"], gw).await;
    let mut req = get("https://secure.example.com/hello");
    req.resolve.push("secure.example.com:443:1.2.3.4".into());
    let (r, _) = curl(&mesh, &From::Outside, &req).await;
    assert_ne!(
        r.exit_code, 0,
        "no client certificate: the handshake fails: {r:?}"
    );
    req.client_cert = Some(
        mesh.public_ca()
            .server(&["client.example.com".to_string()])
            .expect("client cert"),
    );
    let (r, logs) = curl(&mesh, &From::Outside, &req).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
}

/// DestinationRule `tls.mode: MUTUAL` with `credentialName`: the sidecar
/// presents that certificate to the external server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rule_mutual_presents_the_credential() {
    let cfg = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [api.example.org]\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: api}\nspec:\n  host: api.example.org\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: api-client}\n";
    let mesh = start(&["scenarios/_shared/sleep.yaml"], cfg).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://api.example.org/")).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    assert!(
        body(&r).contains("client certificate: api-client"),
        "{}",
        body(&r)
    );
    let simple = cfg.replace("mode: MUTUAL, credentialName: api-client", "mode: SIMPLE");
    let mesh = start(&["scenarios/_shared/sleep.yaml"], &simple).await;
    let (r, _) = curl(&mesh, &sleep(), &get("http://api.example.org/")).await;
    assert_eq!(r.status, Some(200));
    assert!(
        !body(&r).contains("client certificate"),
        "SIMPLE presents none: {}",
        body(&r)
    );
}

/// A custom `accessLogFormat` with Envoy command operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_access_log_format() {
    let mc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n    accessLogFormat: \"%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %REQ(:AUTHORITY)% %REQ(END-USER)% %ROUTE_NAME%\\n\"\n";
    let mesh = start(HELLO, mc).await;
    let mut req = get("http://helloworld:5000/hello");
    req.headers.push("end-user: jason".into());
    let (_, logs) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(
        line(&logs, "sleep-0"),
        "200 - outbound|5000||helloworld.default.svc.cluster.local helloworld:5000 jason default\n"
    );
}

/// HTTPS sent to a port declared HTTP, across Istio versions: one HTTP
/// connection manager (< 1.6: 400 DPE), sniffing without a transport match
/// (1.6/1.7: curl's ALPN `http/1.1` still matches HTTP: 400 DPE), and
/// `raw_buffer` + default passthrough chain (>= 1.8: TLS passes through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_http_port_across_versions() {
    for (version, passes) in [
        ("1.5.0", false),
        ("1.7.0", false),
        ("1.8.0", true),
        ("1.28.0", true),
    ] {
        let mesh = start_v(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/https-to-http-port/serviceentry.yaml",
            ],
            "",
            version,
        )
        .await;
        let (r, logs) = curl(&mesh, &sleep(), &get("https://httpbin.org/")).await;
        if passes {
            assert_eq!(r.status, Some(200), "{version}: {r:?}");
            assert!(
                line(&logs, "sleep-0").contains("PassthroughCluster"),
                "{version}: {logs:#?}"
            );
        } else {
            assert!(
                r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("wrong version number")),
                "{version}: {r:?}"
            );
            assert!(
                line(&logs, "sleep-0").contains(" 400 DPE http1.codec_error "),
                "{version}: {logs:#?}"
            );
        }
    }
}

/// Envoy `mutateXfccRequestHeader` with Istio's settings: the outbound
/// sidecar sanitizes a client-supplied header, the inbound sidecar
/// (APPEND_FORWARD, Subject/URI/DNS) writes its own identity as `By`, the
/// SHA-256 of the caller's certificate, its empty subject and SPIFFE URI;
/// a plaintext (PERMISSIVE) caller gets no header at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_client_cert_follows_envoy() {
    let plain = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain-client}
spec:
  selector: {matchLabels: {app: plain-client}}
  template:
    metadata:
      labels: {app: plain-client}
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: c, image: curlimages/curl}]
"#;
    let mesh = start(BOOKINFO, plain).await;
    let mut req = get("http://reviews:9080/");
    req.headers
        .push("x-forwarded-client-cert: By=forged;URI=spiffe://evil".into());
    let (r, _) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let b = body(&r);
    let xfcc = b
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .unwrap_or_else(|| panic!("no XFCC in {b}"));
    let parts: Vec<&str> = xfcc.split(';').collect();
    assert_eq!(parts.len(), 4, "{xfcc}");
    assert_eq!(
        parts[0],
        "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    );
    let hash = parts[1].strip_prefix("Hash=").expect(xfcc);
    assert!(
        hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit()),
        "{xfcc}"
    );
    assert_eq!(parts[2], "Subject=\"\"");
    assert_eq!(parts[3], "URI=spiffe://cluster.local/ns/default/sa/sleep");

    let from = From::Pod("plain-client-0".into(), "default".into());
    let (r, _) = curl(&mesh, &from, &req).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(
        !body(&r).contains("x-forwarded-client-cert"),
        "{}",
        body(&r)
    );
}

/// Each gateway Service has its own outside address, as a cloud load
/// balancer gives it: `spec.loadBalancerIP` pins one, Istio's own ingress
/// gateway (still there beside the user's) gets 1.2.3.4, the others
/// 1.2.3.5, 1.2.3.6, ... in (namespace, name) order; an address no gateway
/// owns refuses the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_service_has_its_own_outside_address() {
    let mut extra = String::new();
    for (name, pin) in [("a-gw", ""), ("b-gw", ""), ("c-gw", "203.0.113.7")] {
        let lb = if pin.is_empty() {
            String::new()
        } else {
            format!("  loadBalancerIP: {pin}\n")
        };
        extra.push_str(&format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: LoadBalancer
{lb}  selector: {{gw: {name}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{gw: {name}}}}}
  template:
    metadata:
      labels: {{gw: {name}}}
      annotations: {{inject.istio.io/templates: gateway}}
    spec:
      containers: [{{name: istio-proxy, image: auto}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{gw: {name}}}
  servers: [{{port: {{number: 8080, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"#
        ));
    }
    extra.push_str(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hello-in}\nspec:\n  hosts: [\"*\"]\n  gateways: [a-gw, b-gw, c-gw]\n  http:\n  - route: [{destination: {host: helloworld}}]\n",
    );
    let mesh = start(HELLO, &extra).await;
    for (addr, gw) in [
        ("1.2.3.5", "a-gw-0"),
        ("1.2.3.6", "b-gw-0"),
        ("203.0.113.7", "c-gw-0"),
    ] {
        let (r, logs) = curl(&mesh, &From::Outside, &get(&format!("http://{addr}/hello"))).await;
        assert_eq!(r.status, Some(200), "{addr}: {r:?}");
        assert!(
            line(&logs, gw).contains(&format!("\"{addr}\"")),
            "{addr}: {logs:#?}"
        );
    }
    let (r, _) = curl(&mesh, &From::Outside, &get("http://1.2.3.7/hello")).await;
    assert_eq!(r.status, None, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("Couldn't connect to server"),
        "{r:?}"
    );
}

/// The rest of the internet: a public name no ServiceEntry declares
/// resolves and answers (ALLOW_ANY sends it through PassthroughCluster,
/// HTTPS with a certificate for that name); under REGISTRY_ONLY, HTTP gets
/// `502` from the `block_all` route and TLS dies at BlackHoleCluster, as
/// Istio's egress task shows. A name with no public TLD does not resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_internet_hosts_follow_outbound_traffic_policy() {
    let mesh = start(HELLO, "").await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://api.example.org/x")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(
        body(&r).starts_with("Hello from external host api.example.org"),
        "{}",
        body(&r)
    );
    assert!(line(&logs, "sleep-0").contains(" PassthroughCluster "));
    let (r, logs) = curl(&mesh, &sleep(), &get("https://www.wikipedia.org/")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(line(&logs, "sleep-0").contains(" PassthroughCluster "));
    let (r, _) = curl(&mesh, &sleep(), &get("http://reviews.nowhere/")).await;
    assert_client_error(&r, 6, "Could not resolve host: reviews.nowhere");

    let ro = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n";
    let mesh = start(HELLO, ro).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://api.example.org/x")).await;
    assert_eq!(r.status, Some(502), "{r:?}");
    let l = line(&logs, "sleep-0");
    assert!(
        l.contains(" 502 - direct_response ") && l.trim_end().ends_with(" block_all"),
        "{l}"
    );
    let (r, logs) = curl(&mesh, &sleep(), &get("https://www.wikipedia.org/")).await;
    assert_client_error(&r, 35, "SSL_ERROR_SYSCALL");
    assert!(line(&logs, "sleep-0").contains(" BlackHoleCluster "));
}

/// An `http2-` port: the client sidecar speaks HTTP/2 upstream over mTLS
/// with ALPN `istio-h2` (Istio's `istio.alpn` filter), so the server
/// sidecar picks its HTTP/2 codec and the app sees HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_port_over_mutual_tls() {
    let extra = r#"
apiVersion: v1
kind: Service
metadata: {name: grpcish}
spec:
  selector: {app: grpcish}
  ports: [{name: http2-api, port: 7443, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: grpcish}
spec:
  selector: {matchLabels: {app: grpcish}}
  template:
    metadata: {labels: {app: grpcish}}
    spec:
      containers: [{name: c, image: docker.io/istio/examples-helloworld-v1, ports: [{containerPort: 8080}]}]
"#;
    let mesh = start(HELLO, extra).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://grpcish:7443/x")).await;
    assert_eq!(r.status, Some(200), "{r:?} {logs:#?}");
    assert!(body(&r).contains("GET /x HTTP/2.0"), "{}", body(&r));
    let server = line(&logs, "grpcish-0");
    assert!(server.contains("\"GET /x HTTP/2\" 200 "), "{server}");
    // The SNI Istio sets on mTLS: the hop really was TLS.
    assert!(
        server.contains(" outbound_.7443_._.grpcish.default.svc.cluster.local "),
        "{server}"
    );
    let client = line(&logs, "sleep-0");
    assert!(
        client.contains(" outbound|7443||grpcish.default.svc.cluster.local "),
        "{client}"
    );
}

/// A plaintext client (no sidecar) to a STRICT workload: no filter chain
/// matches, Envoy closes with the request unread and the kernel resets the
/// connection; curl says `(56) Recv failure: Connection reset by peer`, as
/// Istio's mTLS migration task shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_strict_is_reset() {
    let extra = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: outsider}
spec:
  selector: {matchLabels: {app: outsider}}
  template:
    metadata:
      labels: {app: outsider}
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: c, image: curlimages/curl}]
"#;
    let mesh = start(HELLO, extra).await;
    let from = From::Pod("outsider-0".into(), "default".into());
    let (r, logs) = curl(&mesh, &from, &get("http://helloworld:5000/hello")).await;
    assert_client_error(&r, 56, "curl: (56) Recv failure: Connection reset by peer");
    assert!(
        line(&logs, "helloworld-v").contains(" NR filter_chain_not_found "),
        "{logs:#?}"
    );
    let (r, _) = curl(&mesh, &sleep(), &get("http://helloworld:5000/hello")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
}

/// VirtualService `fault` (Istio's fault-injection task): the client
/// sidecar aborts with the configured status, body `fault filter abort`,
/// `FI fault_filter_abort` and no upstream; a delay holds the request and
/// logs `DI`; a 0% abort never fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_aborts_and_delays() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld}
spec:
  hosts: [helloworld]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: helloworld}}]
  - match: [{uri: {prefix: /slow}}]
    fault:
      delay: {fixedDelay: 250ms, percentage: {value: 100}}
      abort: {httpStatus: 500, percentage: {value: 0}}
    route: [{destination: {host: helloworld}}]
"#;
    let mesh = start(HELLO, vs).await;
    let mut req = get("http://helloworld:5000/hello");
    req.headers.push("end-user: jason".into());
    let (r, logs) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(r.status, Some(418), "{r:?}");
    assert_eq!(body(&r), "fault filter abort");
    let l = line(&logs, "sleep-0");
    assert!(l.contains("\" 418 FI fault_filter_abort "), "{l}");
    assert_eq!(logs.len(), 1, "nothing reaches the server: {logs:#?}");

    let t0 = std::time::Instant::now();
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/slow")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let l = line(&logs, "sleep-0");
    assert!(l.contains("\" 200 DI via_upstream "), "{l}");
}

/// Bodies stream through both sidecars (never collected): an 8 MiB upload
/// reaches the application whole and each sidecar logs its bytes; an
/// 8 MiB download (httpbin's `/stream-bytes/N`) arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_two_sidecars() {
    let mesh = start(BOOKINFO, "").await;
    let n = 8 * 1024 * 1024;
    let mut req = get("http://reviews:9080/upload");
    req.data = Some("u".repeat(n));
    let (r, logs) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(body(&r).contains(&format!("... ({n} bytes in all)")));
    for proxy in ["sleep-", "reviews-"] {
        let e = &logs
            .iter()
            .find(|l| l.proxy.starts_with(proxy))
            .unwrap_or_else(|| panic!("a line from {proxy}"))
            .entry;
        assert_eq!(e.bytes_received, n as u64, "{proxy}");
    }
    let (r, logs) = curl(
        &mesh,
        &sleep(),
        &get(&format!("http://reviews:9080/stream-bytes/{n}")),
    )
    .await;
    assert_eq!(r.status, Some(200));
    assert_eq!(r.body.len(), n);
    assert!(logs
        .iter()
        .all(|l| l.entry.bytes_sent == n as u64 && l.entry.response_code == 200));
    mesh.shutdown().await;
}

/// Bring your own app: a real local HTTP server (this test's hyper server)
/// is the application of a workload (`meshsim.io/app: addr:...`), behind
/// its sidecar like a built-in one: reached from the sleep pod and from
/// the ingress gateway, each hop to it over Istio mTLS (the sidecar hands
/// the app the caller's identity in `x-forwarded-client-cert`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_local_server_is_a_workloads_app_behind_its_sidecar() {
    use http_body_util::Full;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let xfcc = req
                            .headers()
                            .get("x-forwarded-client-cert")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        let body =
                            format!("ledger (my own server) saw {} xfcc={xfcc}\n", req.uri());
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from(body),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let extra = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: ledger, namespace: books}}
spec:
  template:
    metadata:
      labels: {{app: ledger}}
      annotations: {{meshsim.io/app: \"addr:{addr}\"}}
    spec: {{containers: [{{name: ledger, image: example.com/ledger:2.1}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: ledger, namespace: books}}
spec: {{selector: {{app: ledger}}, ports: [{{name: http, port: 7000, targetPort: 7070}}]}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: books, namespace: books}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [ledger.example]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ledger, namespace: books}}
spec:
  hosts: [ledger.example]
  gateways: [books]
  http: [{{route: [{{destination: {{host: ledger.books.svc.cluster.local, port: {{number: 7000}}}}}}]}}]
"
    );
    let mesh = start(&["scenarios/_shared/sleep.yaml"], &extra).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://ledger.books:7000/balance")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let b = body(&r);
    assert!(b.starts_with("ledger (my own server) saw /balance"), "{b}");
    assert!(
        b.contains("URI=spiffe://cluster.local/ns/default/sa/sleep"),
        "mTLS from the sleep sidecar: {b}"
    );
    assert!(
        line(&logs, "ledger-").contains("inbound|7070||"),
        "{logs:?}"
    );
    let (r, _) = curl(&mesh, &From::Outside, &get("http://ledger.example/entries")).await;
    let b = body(&r);
    assert!(b.starts_with("ledger (my own server) saw /entries"), "{b}");
    assert!(
        b.contains("URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"),
        "mTLS from the gateway: {b}"
    );
    mesh.shutdown().await;
    server.abort();
}

/// httpbin images answer httpbin's JSON endpoints (the circuit-breaking
/// task's `/get`, `/headers` ...), through both sidecars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpbin_answers_its_json_endpoints() {
    let extra = "apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: tools}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: tools}
spec:
  template:
    metadata: {labels: {app: httpbin}}
    spec: {containers: [{name: httpbin, image: docker.io/kong/httpbin, ports: [{containerPort: 8080}]}]}
";
    let mesh = start(&["scenarios/_shared/sleep.yaml"], extra).await;
    let mut req = get("http://httpbin.tools:8000/get?show=1");
    req.headers.push("X-Trace: t1".into());
    let (r, _) = curl(&mesh, &sleep(), &req).await;
    assert_eq!(r.status, Some(200));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["args"]["show"], "1");
    assert_eq!(v["headers"]["X-Trace"], "t1");
    assert_eq!(v["url"], "http://httpbin.tools:8000/get?show=1");
    // The sidecar's own headers reach the app, as in a cluster.
    assert!(v["headers"]["X-Request-Id"].is_string(), "{v}");
    let (r, _) = curl(
        &mesh,
        &sleep(),
        &get("http://httpbin.tools:8000/status/418"),
    )
    .await;
    assert_eq!(r.status, Some(418));
    mesh.shutdown().await;
}

/// A user's own call chain on the built-in app (`meshsim.io/calls`):
/// frontend calls stock then payments for `/buy`, through its sidecar,
/// forwarding `x-request-id`; a slow payments (`meshsim.io/app-delay`)
/// trips the caller's own timeout on every retry, and frontend says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_call_graph_runs_through_the_sidecars() {
    let app = |name: &str, port: u16, annotations: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: {port}}}]}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  template:\n    metadata:\n      labels: {{app: {name}}}\n      annotations: {annotations}\n    spec: {{containers: [{{name: {name}, image: example.com/{name}:1, ports: [{{containerPort: {port}}}]}}]}}\n")
    };
    let extra = [
        app("frontend", 8080, "{meshsim.io/calls: \"/buy -> http://stock.shop:9090/reserve, http://payments.shop:7070/charge timeout=300ms retries=1\\n/ok -> http://stock.shop:9090/reserve\"}"),
        app("stock", 9090, "{}"),
        app("payments", 7070, "{meshsim.io/app-delay: 1s}"),
    ]
    .concat();
    let mesh = start(&["scenarios/_shared/sleep.yaml"], &extra).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://frontend.shop:8080/ok")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(
        body(&r).starts_with("GET http://stock.shop:9090/reserve -> 200 ("),
        "{}",
        body(&r)
    );
    let id = |l: &meshsim_mesh::logs::LogLine| l.entry.req_headers.get("x-request-id").cloned();
    let first = logs
        .iter()
        .find(|l| l.proxy.starts_with("sleep-"))
        .and_then(id);
    let onward = logs
        .iter()
        .find(|l| {
            l.proxy.starts_with("frontend-")
                && l.entry
                    .upstream_cluster
                    .as_deref()
                    .is_some_and(|c| c.contains("stock"))
        })
        .and_then(id);
    assert!(first.is_some() && first == onward, "{first:?} {onward:?}");

    let (r, _) = curl(&mesh, &sleep(), &get("http://frontend.shop:8080/buy")).await;
    assert_eq!(r.status, Some(503), "{r:?}");
    let b = body(&r);
    assert!(
        b.contains("GET http://stock.shop:9090/reserve -> 200"),
        "{b}"
    );
    assert!(
        b.contains("GET http://payments.shop:7070/charge -> no answer within 300ms"),
        "{b}"
    );
    mesh.shutdown().await;
}

/// Istio's tcp-echo sample through both sidecars (TCP proxy, mTLS): each
/// line comes back prefixed `hello `.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_answers_hello_through_the_tcp_proxy() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let extra = "apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: echo}
spec: {selector: {app: tcp-echo}, ports: [{name: tcp, port: 9000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo, namespace: echo}
spec:
  template:
    metadata: {labels: {app: tcp-echo}}
    spec: {containers: [{name: tcp-echo, image: docker.io/istio/tcp-echo-server:1.3, ports: [{containerPort: 9000}]}]}
";
    let mesh = start(&["scenarios/_shared/sleep.yaml"], extra).await;
    let world = mesh.world();
    let sleep_ip = world.pod("sleep-0", "default").expect("sleep").ip;
    let svc = world
        .services
        .iter()
        .find(|s| s.hostname == "tcp-echo.echo.svc.cluster.local")
        .and_then(|s| s.addresses.first())
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .expect("ClusterIP");
    let local = mesh
        .expose(
            std::net::IpAddr::V4(sleep_ip),
            std::net::SocketAddr::new(svc, 9000),
        )
        .await
        .expect("expose");
    let s = tokio::net::TcpStream::connect(local)
        .await
        .expect("connect");
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"world\n").await.expect("write");
    assert_eq!(
        lines.next_line().await.expect("read").as_deref(),
        Some("hello world")
    );
    w.write_all(b"again\n").await.expect("write");
    assert_eq!(
        lines.next_line().await.expect("read").as_deref(),
        Some("hello again")
    );
    drop(w);
    mesh.shutdown().await;
}

/// Istio's inbound cluster (`inbound|PORT||`) is ORIGINAL_DST: Envoy makes
/// a host per original destination with its own connection pool
/// (original_dst_cluster.cc), so sequential requests reach the app on one
/// keep-alive connection — the same `UPSTREAM_LOCAL_ADDRESS`
/// (127.0.0.6:PORT) in every server-side line. The client side pools
/// per endpoint too: one upstream connection for all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_destination_connections_are_pooled() {
    let mesh = start(BOOKINFO, "").await;
    let mut inbound_locals = Vec::new();
    let mut outbound_locals = Vec::new();
    for _ in 0..3 {
        let (r, logs) = curl(&mesh, &sleep(), &get("http://details:9080/details/0")).await;
        assert_eq!(r.status, Some(200), "{r:?}");
        let server = logs
            .iter()
            .find(|l| l.proxy.starts_with("details-v1"))
            .expect("server line");
        let client = logs
            .iter()
            .find(|l| l.proxy.starts_with("sleep"))
            .expect("client line");
        inbound_locals.push(server.entry.upstream_local.clone().expect("local"));
        outbound_locals.push(client.entry.upstream_local.clone().expect("local"));
    }
    assert!(
        inbound_locals[0].starts_with("127.0.0.6:"),
        "{inbound_locals:?}"
    );
    assert!(
        inbound_locals.iter().all(|l| *l == inbound_locals[0]),
        "one pooled connection to the app: {inbound_locals:?}"
    );
    assert!(
        outbound_locals.iter().all(|l| *l == outbound_locals[0]),
        "{outbound_locals:?}"
    );
}
