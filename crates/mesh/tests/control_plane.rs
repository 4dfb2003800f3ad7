//! The control plane as a user meets it: changes applied to a running mesh
//! are pushed (after the push delay) without restarting proxies or
//! dropping connections; only workloads whose plan changed restart; the
//! access-log lines of the requests around a change are all kept; and the
//! route timeouts istiod compiles are enforced the way Envoy enforces them.

use std::time::Duration;

use meshsim_mesh::{Change, Mesh, MeshOptions};

mod common;
use common::*;

fn change(name: &str, yaml: &str) -> Change {
    let l = meshsim_model::parse_str(name, yaml);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    Change::Apply(l)
}

const PARTNER_API: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner-api, namespace: default}
spec:
  hosts: [api.shop-partner.io]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
";

/// A ServiceEntry is Istio config: it is pushed, the internet host it
/// names starts, no proxy restarts, an unrelated open connection keeps
/// working, and the request right after the change is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_entry_is_a_push_that_keeps_connections_and_logs() {
    let mesh = start(HELLO, "").await;
    let req = get("http://helloworld:5000/hello");
    let mut conn = mesh.open(&sleep(), &req).await.expect("connect");
    assert_eq!(conn.send(&req).await.status, Some(200));
    let before = mesh.logs().len();

    let report = mesh
        .apply(vec![change("se.yaml", PARTNER_API)])
        .await
        .expect("apply");
    assert_eq!(
        report.objects[0].to_string(),
        "serviceentry.networking.istio.io/partner-api created"
    );
    assert_eq!(
        report.restarts.started,
        ["internet host api.shop-partner.io"]
    );
    assert!(
        report.restarts.restarted.is_empty(),
        "{:?}",
        report.restarts
    );
    assert!(report.pushed.contains(&"sleep-0.default".to_string()));

    let (r, logs) = curl(&mesh, &sleep(), &get("http://api.shop-partner.io/")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(body(&r).contains("Hello from external host api.shop-partner.io"));
    let client = line(&logs, "sleep-0");
    assert!(
        client.contains(" outbound|80||api.shop-partner.io "),
        "{client}"
    );
    // The step's own lines are there, from the one collector.
    assert!(mesh.logs().since(before).iter().any(|l| &*l.line == client));

    let again = conn.send(&req).await;
    assert_eq!(
        again.status,
        Some(200),
        "the open connection survived: {again:?}"
    );
    assert!(mesh.status().iter().all(|s| s.synced));
    mesh.shutdown().await;
}

/// With a push delay, proxy-status is STALE until each proxy has its push;
/// then SYNCED, and an open connection's next request takes the new route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_wait_for_the_push_delay() {
    let pin = |subset: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: helloworld}}\nspec:\n  hosts: [helloworld]\n  http:\n  - route:\n    - destination: {{host: helloworld, subset: {subset}}}\n")
    };
    let opts = MeshOptions {
        push_delay: Duration::from_millis(400),
        ..MeshOptions::default()
    };
    let mesh = Mesh::start(world(HELLO, &pin("v1"), "1.28.0"), opts)
        .await
        .expect("mesh");
    let req = get("http://helloworld:5000/hello");
    let mut conn = mesh.open(&sleep(), &req).await.expect("connect");
    assert!(body(&conn.send(&req).await).contains("version: v1"));

    mesh.apply(vec![change("v2.yaml", &pin("v2"))])
        .await
        .expect("apply");
    let stale: Vec<String> = mesh
        .status()
        .into_iter()
        .filter(|s| !s.synced)
        .map(|s| s.id)
        .collect();
    assert!(stale.contains(&"sleep-0.default".to_string()), "{stale:?}");
    assert!(
        body(&conn.send(&req).await).contains("version: v1"),
        "old route inside the delay"
    );

    assert!(mesh.wait_synced(Duration::from_secs(5)).await);
    assert!(
        body(&conn.send(&req).await).contains("version: v2"),
        "new route on the same connection"
    );
    mesh.shutdown().await;
}

/// A change with an error is rejected whole; the mesh keeps its config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_change_is_rejected_whole() {
    let mesh = start(HELLO, "").await;
    let good = PARTNER_API;
    let bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: broken}\nspec:\n  hosts: [helloworld]\n  htp: []\n";
    let mut l = meshsim_model::parse_str("good.yaml", good);
    l.extend(meshsim_model::parse_str("bad.yaml", bad));
    let err = mesh
        .apply(vec![Change::Apply(l)])
        .await
        .expect_err("rejected");
    assert!(err.to_string().contains("bad.yaml:6"), "{err}");
    assert!(mesh.world().service("api.shop-partner.io").is_none());
    mesh.shutdown().await;
}

fn retries(per_try: &str, retry_on: Option<&str>) -> String {
    let on = retry_on
        .map(|r| format!(", retryOn: \"{r}\""))
        .unwrap_or_default();
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: helloworld}}\nspec:\n  hosts: [helloworld]\n  http:\n  - retries: {{attempts: 2, perTryTimeout: {per_try}{on}}}\n    route:\n    - destination: {{host: helloworld}}\n")
}

/// `perTryTimeout`: with Istio's default retry conditions a per-try
/// timeout is not retried (Envoy retries it only on 5xx / gateway-error /
/// reset: router.cc onPerTryTimeoutCommon, retry_state_impl.cc): 504 UT
/// `upstream_per_try_timeout` after one try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_without_retry_is_504_ut() {
    let mesh = start(HELLO, &retries("0.3s", None)).await;
    let t0 = tokio::time::Instant::now();
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/delay/2")).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, Some(504), "{r:?}");
    assert_eq!(body(&r), "upstream request timeout");
    let client = line(&logs, "sleep-0");
    assert!(
        client.contains("\" 504 UT upstream_per_try_timeout "),
        "{client}"
    );
    let stats = mesh.proxy("sleep-0.default").expect("sleep").stats();
    let per_try: u64 = stats
        .iter()
        .filter(|(k, _)| {
            k.ends_with("helloworld.default.svc.cluster.local.upstream_rq_per_try_timeout")
        })
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(per_try, 1);
    mesh.shutdown().await;
}

/// With `retryOn: 5xx` every try times out and is retried: three tries,
/// then 504 with `URX` and `UT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_retried_on_5xx_exhaust_the_retries() {
    let mesh = start(HELLO, &retries("0.25s", Some("5xx"))).await;
    let (r, logs) = curl(&mesh, &sleep(), &get("http://helloworld:5000/delay/2")).await;
    assert_eq!(r.status, Some(504), "{r:?}");
    let client = line(&logs, "sleep-0");
    assert!(
        client.contains("\" 504 URX,UT upstream_per_try_timeout "),
        "{client}"
    );
    // Envoy logs the connection the last try was on (observed with Envoy 1.36).
    let entry = &logs
        .iter()
        .find(|l| l.proxy.starts_with("sleep-0"))
        .expect("line")
        .entry;
    assert!(entry.upstream_local.is_some(), "{client}");
    let stats = mesh.proxy("sleep-0.default").expect("sleep").stats();
    let get = |name: &str| -> u64 {
        stats
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("helloworld.default.svc.cluster.local.{name}")))
            .map(|(_, v)| *v)
            .sum()
    };
    assert_eq!(get("upstream_rq_per_try_timeout"), 3);
    assert_eq!(get("upstream_rq_retry"), 2);
    mesh.shutdown().await;
}
