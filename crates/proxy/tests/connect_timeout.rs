//! The cluster `connect_timeout` (DestinationRule
//! `connectionPool.tcp.connectTimeout`) is enforced as Envoy enforces it:
//! a connect that does not complete in time fails the try with reset
//! reason `connection timeout`, which Istio's default policy retries
//! (`connect-failure`), then `503 URX,UF
//! upstream_reset_before_response_started{connection_timeout}` — what
//! Envoy 1.36 logs for the same config against a host that never accepts.
//! The hanging host is a real loopback listener whose accept queue is full.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use common::{Lines, MapEnv};
use meshsim_proxy::listener::proxy_header;
use meshsim_proxy::scope::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  template:
    metadata: {labels: {app: client}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger.corp.internal]
  ports: [{number: 7070, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 192.0.2.44}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ledger, namespace: shop}
spec:
  host: ledger.corp.internal
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 200ms}}
";

/// A loopback listener with backlog 0 and its queue filled: further
/// connects hang in SYN-SENT, as to a host that drops packets.
fn full_listener() -> (socket2::Socket, Vec<socket2::Socket>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    l.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    l.listen(0).expect("listen");
    let addr = l
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        c.set_nonblocking(true).expect("nonblocking");
        let _ = c.connect(&addr.into());
        fillers.push(c);
    }
    std::thread::sleep(Duration::from_millis(50));
    (l, fillers, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_503_uf_connection_timeout_retried() {
    let (_hole, _fillers, hole) = full_listener();
    let world = common::world(CONFIG);
    let pod = meshsim_compiler::find_proxy(&world, "deploy/client.shop").expect("client");
    let target: SocketAddr = "192.0.2.44:7070".parse().expect("addr");
    let lines = Arc::new(Lines::default());
    let scope = Scope::new();
    // 192.0.2.44:7070 leads to a listener that never accepts.
    let env = Arc::new(MapEnv {
        map: BTreeMap::from([(target, hole)]),
        delay: Duration::ZERO,
    });
    let (proxy, capture_addr) =
        common::sidecar(&world, "deploy/client.shop", env, lines.clone(), &scope).await;

    let mut c = tokio::net::TcpStream::connect(capture_addr)
        .await
        .expect("connect");
    let src = SocketAddr::new(IpAddr::V4(pod.ip), 41000);
    c.write_all(&proxy_header(src, target))
        .await
        .expect("header");
    let t0 = tokio::time::Instant::now();
    c.write_all(b"GET /balance HTTP/1.1\r\nhost: ledger.corp.internal:7070\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Three tries (two retries) of 200 ms each.
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(
        resp.ends_with("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection timeout"),
        "{resp}"
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logged = lines.0.lock().expect("lines").clone();
    let e = logged.last().expect("a log line");
    assert_eq!(e.response_code, 503);
    assert_eq!(
        e.details.as_deref(),
        Some("upstream_reset_before_response_started{connection_timeout}")
    );
    let flags = e.flags_string();
    assert!(flags.contains("UF") && flags.contains("URX"), "{flags}");
    assert_eq!(e.transport_failure_reason, None);
    assert_eq!(e.upstream_host.as_deref(), Some("192.0.2.44:7070"));
    let timeouts: u64 = proxy
        .stats()
        .iter()
        .filter(|(k, _)| k.ends_with("ledger.corp.internal.upstream_cx_connect_timeout"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(timeouts, 3);
    scope.shutdown().await;
}
