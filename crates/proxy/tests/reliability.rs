//! Envoy's limits on what a client can make a proxy hold, on real sockets:
//!
//! * a request body is streamed, and one the codec cannot decode (a broken
//!   chunk) is `400 DPE http1.codec_error` — never forwarded as an empty
//!   body and answered 200 (codec_impl.cc `onCodecError` via the HCM);
//! * a retried request is replayed from the router's buffer, and one
//!   larger than the retry/shadow buffer limit (`per_connection_buffer_limit_bytes`,
//!   1 MiB) is not retried (router.cc `decodeData`: "Give up on the
//!   retry/shadow");
//! * a gateway listener's inspectors get Envoy's default
//!   `listener_filters_timeout` (15 s, istiod sets none there: gateway.go
//!   `buildGatewayListener`), after which a truncated ClientHello's
//!   connection is closed; a sidecar's (istiod: `0s`) waits as long as
//!   the client does. Both on a paused clock: no 15 s sleep.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Lines, MapEnv};
use http_body_util::{BodyExt, Full};
use meshsim_proxy::listener::proxy_header;
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{Proxy, ProxyRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHOP: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: till, namespace: store}
spec:
  template:
    metadata: {labels: {app: till}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: stock, namespace: store}
spec:
  hosts: [stock.warehouse.example]
  ports: [{number: 8181, name: http-stock, protocol: HTTP}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 198.51.100.7}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: stock, namespace: store}
spec:
  hosts: [stock.warehouse.example]
  http:
  - route: [{destination: {host: stock.warehouse.example}}]
    retries: {attempts: 2, retryOn: 5xx}
";

const STOCK: &str = "198.51.100.7:8181";

/// What the upstream saw: the body length of every request.
#[derive(Default)]
struct Seen(Mutex<Vec<usize>>);

/// A real HTTP server that reads each request's body whole, records its
/// length and answers `status`.
async fn upstream(status: u16, seen: Arc<Seen>, scope: &Scope) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let s2 = scope.clone();
    scope.spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let seen = seen.clone();
            s2.spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            // Only requests that arrived whole are counted.
                            if let Ok(b) = req.into_body().collect().await {
                                seen.0.lock().expect("seen").push(b.to_bytes().len());
                            }
                            let mut r = http::Response::new(Full::new(Bytes::from("stock\n")));
                            *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Till {
    _proxy: Proxy,
    capture: SocketAddr,
    lines: Arc<Lines>,
    src: SocketAddr,
    scope: Scope,
}

async fn till(upstream: SocketAddr, scope: Scope) -> Till {
    let world = common::world(SHOP);
    let pod = meshsim_compiler::find_proxy(&world, "deploy/till.store").expect("till");
    let lines = Arc::new(Lines::default());
    let env = Arc::new(MapEnv {
        map: BTreeMap::from([(STOCK.parse().expect("addr"), upstream)]),
        delay: Duration::ZERO,
    });
    let (proxy, capture) =
        common::sidecar(&world, "deploy/till.store", env, lines.clone(), &scope).await;
    Till {
        _proxy: proxy,
        capture,
        lines,
        src: SocketAddr::new(IpAddr::V4(pod.ip), 42424),
        scope,
    }
}

impl Till {
    /// Sends `bytes` after the capture's PROXY header; everything the proxy
    /// answered until it closed (or 10 s).
    async fn exchange(&self, bytes: &[u8]) -> String {
        let mut c = tokio::net::TcpStream::connect(self.capture)
            .await
            .expect("connect");
        c.write_all(&proxy_header(self.src, STOCK.parse().expect("addr")))
            .await
            .expect("header");
        c.write_all(bytes).await.expect("request");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn logged(&self) -> Vec<meshsim_proxy::accesslog::LogEntry> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.lines.entries()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_body_is_400_dpe_codec_error() {
    let scope = Scope::new();
    let seen = Arc::new(Seen::default());
    let up = upstream(200, seen.clone(), &scope).await;
    let t = till(up, scope.clone()).await;
    let resp = t
        .exchange(
            b"POST /reserve HTTP/1.1\r\nhost: stock.warehouse.example:8181\r\ntransfer-encoding: chunked\r\n\r\n4\r\nsku1\r\nnot-hex\r\n",
        )
        .await;
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert!(resp.contains("connection: close\r\n"), "{resp}");
    let logged = t.logged().await;
    let e = logged.last().expect("a log line");
    assert_eq!(e.response_code, 400);
    assert_eq!(e.details.as_deref(), Some("http1.codec_error"));
    assert_eq!(
        e.flags,
        vec![meshsim_proxy::accesslog::Flag::DownstreamProtocolError]
    );
    // Whatever reached the upstream, it never answered a request.
    assert!(seen.0.lock().expect("seen").is_empty());
    t.scope.shutdown().await;
}

/// A body of `n` bytes with its content-length.
fn post(n: usize) -> Vec<u8> {
    let mut v = format!(
        "POST /reserve HTTP/1.1\r\nhost: stock.warehouse.example:8181\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    v.extend(std::iter::repeat_n(b'q', n));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_replay_the_body_until_it_outgrows_the_buffer_limit() {
    let scope = Scope::new();
    let seen = Arc::new(Seen::default());
    let up = upstream(503, seen.clone(), &scope).await;
    let t = till(up, scope.clone()).await;

    // 3 KiB: buffered, so both retries send it again, whole.
    let resp = t.exchange(&post(3 * 1024)).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert_eq!(*seen.0.lock().expect("seen"), vec![3072, 3072, 3072]);
    let e = t.logged().await.pop().expect("line");
    assert_eq!(e.bytes_received, 3072);
    assert!(e
        .flags
        .contains(&meshsim_proxy::accesslog::Flag::UpstreamRetryLimitExceeded));

    // Past 1 MiB the router gives up buffering: one attempt, no URX.
    seen.0.lock().expect("seen").clear();
    let big = meshsim_proxy::http::DEFAULT_BUFFER_LIMIT + 4096;
    let resp = t.exchange(&post(big)).await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert_eq!(*seen.0.lock().expect("seen"), vec![big]);
    let e = t.logged().await.pop().expect("line");
    assert_eq!(e.bytes_received, big as u64);
    assert!(e.flags.is_empty(), "{:?}", e.flags);
    t.scope.shutdown().await;
}

const GATEWAY: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: edge, namespace: front}
spec:
  template:
    metadata: {labels: {istio: edge}}
    spec: {containers: [{name: istio-proxy, image: docker.io/istio/proxyv2:1.28.0}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: front}
spec:
  selector: {istio: edge}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: ['*.shop.example']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: carts, namespace: front}
spec:
  hosts: [carts.shop.example]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.9}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: carts, namespace: front}
spec:
  hosts: [carts.shop.example]
  gateways: [edge]
  tls:
  - match: [{sniHosts: [carts.shop.example]}]
    route: [{destination: {host: carts.shop.example, port: {number: 443}}}]
";

/// The first bytes of a ClientHello: record header and handshake header,
/// and nothing more (a client that stalls, or a slowloris).
const TRUNCATED_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];

/// `proxy` of the world `yaml` as a standalone proxy with no upstreams,
/// its tables, its pod IP and a bound loopback listener for it.
async fn standalone(
    yaml: &str,
    proxy: &str,
    scope: &Scope,
) -> (
    Proxy,
    meshsim_tables::ProxyTables,
    IpAddr,
    tokio::net::TcpListener,
) {
    let world = common::world(yaml);
    let pod = meshsim_compiler::find_proxy(&world, proxy).expect("proxy");
    let tables = meshsim_compiler::compile_proxy(&world, pod);
    let env = Arc::new(MapEnv {
        map: BTreeMap::new(),
        delay: Duration::ZERO,
    });
    let p = Proxy::new(
        tables.clone(),
        ProxyRuntime::new(env, Arc::new(Lines::default()), scope.clone(), 1),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    (p, tables, IpAddr::V4(pod.ip), l)
}

/// A gateway proxy accepting on a real port, served by `accept_port`.
async fn gateway(scope: &Scope) -> SocketAddr {
    let (p, tables, _, listener) = standalone(GATEWAY, "deploy/edge.front", scope).await;
    let l = tables
        .listeners
        .iter()
        .find(|l| l.address.socket_address.port_value == 9443)
        .unwrap_or_else(|| {
            panic!(
                "the 9443 listener: {:?}",
                tables.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        l.listener_filters_timeout,
        meshsim_tables::ListenerFiltersTimeout::EnvoyDefault
    );
    let addr = listener.local_addr().expect("addr");
    scope.spawn(async move {
        while let Ok((s, peer)) = listener.accept().await {
            p.accept_port(s, peer, 9443);
        }
    });
    addr
}

#[tokio::test(start_paused = true)]
async fn a_truncated_client_hello_is_closed_after_the_gateway_listener_filter_timeout() {
    let scope = Scope::new();
    let addr = gateway(&scope).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(TRUNCATED_HELLO).await.expect("write");
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(60), c.read(&mut buf))
        .await
        .expect("closed before 60 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_secs(16),
        "{waited:?}"
    );
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_inspector_waits_as_long_as_the_client_istiod_sets_0s() {
    // The sidecar's inbound listener (istiod: listener_filters_timeout 0s,
    // continue_on_listener_filters_timeout): a stalled ClientHello is held.
    let scope = Scope::new();
    let (p, tables, pod_ip, l) = standalone(SHOP, "deploy/till.store", &scope).await;
    assert!(tables
        .listeners
        .iter()
        .filter(|l| !l.listener_filters.is_empty())
        .all(|l| l.listener_filters_timeout == meshsim_tables::ListenerFiltersTimeout::Disabled));
    let addr = l.local_addr().expect("addr");
    p.serve_capture(l, meshsim_proxy::listener::Capture::Inbound);
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let src = SocketAddr::new(IpAddr::from([10, 1, 1, 1]), 40000);
    let dst = SocketAddr::new(pod_ip, 8080);
    c.write_all(&proxy_header(src, dst)).await.expect("header");
    c.write_all(TRUNCATED_HELLO).await.expect("write");
    let mut buf = [0u8; 16];
    let still_open = tokio::time::timeout(Duration::from_secs(120), c.read(&mut buf)).await;
    assert!(still_open.is_err(), "held open: {still_open:?}");
    scope.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_capture_port_closes_a_connection_without_its_proxy_header() {
    let scope = Scope::new();
    let (p, _, _, l) = standalone(SHOP, "deploy/till.store", &scope).await;
    let addr = l.local_addr().expect("addr");
    p.serve_capture(l, meshsim_proxy::listener::Capture::Outbound);
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(&[0x0d, 0x0a]).await.expect("two bytes");
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 4];
    let r = tokio::time::timeout(Duration::from_secs(60), c.read(&mut buf))
        .await
        .expect("closed before 60 s");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(t0.elapsed() >= meshsim_proxy::listener::PROXY_HEADER_WAIT);
    scope.shutdown().await;
}
