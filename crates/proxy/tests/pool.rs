//! Circuit breakers as Envoy's connection pool applies them
//! (source/common/conn_pool/conn_pool_base.cc `newStreamImpl`): a request
//! with no ready connection becomes pending *before* a connection is
//! opened for it, and stays pending until that connection is up; so with
//! `maxConnections: 1, http1MaxPendingRequests: 1` and a cold pool, of
//! three simultaneous requests one is served and two overflow (`503 UO`)
//! — what Envoy 1.36 does. With the connection already open, the second
//! waits for it and only the third overflows.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{Lines, MapEnv};
use meshsim_proxy::listener::proxy_header;
use meshsim_proxy::scope::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: shopper, namespace: retail}
spec:
  template:
    metadata: {labels: {app: shopper}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: stock, namespace: retail}
spec:
  hosts: [stock.vendor.example]
  ports: [{number: 9090, name: http-api, protocol: HTTP}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 198.51.100.20}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: stock, namespace: retail}
spec:
  host: stock.vendor.example
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
";

/// Answers each request after `ms`.
async fn slow_upstream(ms: u64) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        got.clear();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// `n` simultaneous requests, each on its own connection: status codes, sorted.
async fn burst(capture: SocketAddr, src_ip: IpAddr, n: u16) -> Vec<u16> {
    let target: SocketAddr = "198.51.100.20:9090".parse().expect("addr");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(async move {
            let mut c = tokio::net::TcpStream::connect(capture)
                .await
                .expect("connect");
            let src = SocketAddr::new(src_ip, 50000 + i);
            let mut req = proxy_header(src, target);
            req.extend_from_slice(
                b"GET /level HTTP/1.1\r\nhost: stock.vendor.example:9090\r\n\r\n",
            );
            c.write_all(&req).await.expect("write");
            let mut buf = vec![0u8; 1024];
            let n = c.read(&mut buf).await.unwrap_or(0);
            String::from_utf8_lossy(&buf[..n])
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        });
    }
    let mut codes = Vec::new();
    while let Some(c) = set.join_next().await {
        codes.push(c.expect("task"));
    }
    codes.sort();
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_while_connecting_then_waiting_for_the_open_connection() {
    let world = common::world(CONFIG);
    let up = slow_upstream(300).await;
    let env = Arc::new(MapEnv {
        map: BTreeMap::from([("198.51.100.20:9090".parse().expect("addr"), up)]),
        // The connect takes long enough that all three are in before it is up.
        delay: Duration::from_millis(150),
    });
    let lines = Arc::new(Lines::default());
    let scope = Scope::new();
    let (_proxy, capture) =
        common::sidecar(&world, "deploy/shopper.retail", env, lines.clone(), &scope).await;
    let src = IpAddr::V4(world.pod("shopper-0", "retail").expect("pod").ip);

    assert_eq!(
        burst(capture, src, 3).await,
        vec![200, 503, 503],
        "cold pool"
    );
    // Now one connection is open and idle.
    assert_eq!(
        burst(capture, src, 3).await,
        vec![200, 200, 503],
        "warm pool"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let uo: Vec<_> = lines
        .entries()
        .into_iter()
        .filter(|e| e.response_code == 503)
        .collect();
    assert_eq!(uo.len(), 3);
    for e in uo {
        assert_eq!(e.flags_string(), "UO");
        assert_eq!(
            e.details.as_deref(),
            Some("upstream_reset_before_response_started{overflow}")
        );
        assert_eq!(e.upstream_host, None);
    }
    scope.shutdown().await;
}

/// DestinationRule `connectionPool.http.idleTimeout` (istiod's
/// `common_http_protocol_options.idle_timeout`): a pooled connection idle
/// that long is not used again; one idle less is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_retires_pooled_connections() {
    let config = CONFIG.replace(
        "connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}",
        "connectionPool: {http: {idleTimeout: 300ms}}",
    );
    let world = common::world(&config);
    let up = slow_upstream(0).await;
    let env = Arc::new(MapEnv {
        map: BTreeMap::from([("198.51.100.20:9090".parse().expect("addr"), up)]),
        delay: Duration::ZERO,
    });
    let lines = Arc::new(Lines::default());
    let scope = Scope::new();
    let (_proxy, capture) =
        common::sidecar(&world, "deploy/shopper.retail", env, lines.clone(), &scope).await;
    let src = IpAddr::V4(world.pod("shopper-0", "retail").expect("pod").ip);
    for pause in [0, 50, 600] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        assert_eq!(burst(capture, src, 1).await, vec![200]);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let locals: Vec<String> = lines
        .entries()
        .into_iter()
        .map(|e| e.upstream_local.unwrap_or_default())
        .collect();
    assert_eq!(locals.len(), 3, "{locals:?}");
    assert_eq!(locals[0], locals[1], "reused within the idle timeout");
    assert_ne!(locals[1], locals[2], "a new connection after it");
    scope.shutdown().await;
}
