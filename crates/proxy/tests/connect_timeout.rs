//! The cluster `connect_timeout` (DestinationRule
//! `connectionPool.tcp.connectTimeout`) is enforced as Envoy enforces it:
//! a connect that does not complete in time fails the try with reset
//! reason `connection timeout`, which Istio's default policy retries
//! (`connect-failure`), then `503 URX,UF
//! upstream_reset_before_response_started{connection_timeout}` — what
//! Envoy 1.36 logs for the same config against a host that never accepts.
//! The hanging host is a real loopback listener whose accept queue is full.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshsim_compiler::{NamespaceFlag, Settings, World};
use meshsim_proxy::accesslog::{LogEntry, LogSink};
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::{proxy_header, Capture};
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{Proxy, ProxyRuntime};
use rustls::pki_types::CertificateDer;
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

/// Where 192.0.2.44:7070 leads: a listener that never accepts.
struct Blackhole {
    target: SocketAddr,
    hole: SocketAddr,
}

impl Environment for Blackhole {
    fn connect(
        &self,
        dst: SocketAddr,
        _source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            if dst != self.target {
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            }
            let s = tokio::net::TcpStream::connect(self.hole).await?;
            let local = s.local_addr()?;
            Ok((Box::new(s) as BoxIo, local))
        })
    }
    fn resolve(&self, _: &str) -> Option<IpAddr> {
        None
    }
    fn certificate(&self, _: &str) -> Option<CertifiedKey> {
        None
    }
    fn trust_roots(&self, _: Option<&str>) -> Vec<CertificateDer<'static>> {
        vec![]
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<LogEntry>>);

impl LogSink for Lines {
    fn write(&self, _: &str, _: &str, e: &LogEntry) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.clone());
        }
    }
}

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
    let (world, diags) = World::from_loaded(
        meshsim_model::parse_str("ledger.yaml", CONFIG),
        Settings::default(),
        &NamespaceFlag::Unset,
    );
    assert!(!diags.has_errors(), "{}", diags.error_text());
    let pod = meshsim_compiler::find_proxy(&world, "deploy/client.shop").expect("client");
    let tables = meshsim_compiler::compile_proxy(&world, pod);
    let target: SocketAddr = "192.0.2.44:7070".parse().expect("addr");
    let lines = Arc::new(Lines::default());
    let scope = Scope::new();
    let env = Arc::new(Blackhole { target, hole });
    let proxy = Proxy::new(
        tables,
        ProxyRuntime::new(env, lines.clone(), scope.clone(), 1),
    );
    let capture = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let capture_addr = capture.local_addr().expect("addr");
    proxy.serve_capture(capture, Capture::Outbound);

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
