//! Clusters at run time: endpoint selection, connecting (with the TLS the
//! cluster or its transport-socket match asks for), HTTP connection pools and
//! Envoy's circuit breakers (conn_pool_base.cc): `max_connections` overflow
//! queues the request as pending (`upstream_cx_overflow`), `max_pending_requests`
//! and `max_requests` overflow fail it with `503 UO`
//! (`upstream_rq_pending_overflow`).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshsim_tables::{
    Cluster, DiscoveryType, LbEndpoint, Thresholds, UpstreamTlsMode, UpstreamTransportSocket,
};
use rustls::pki_types::ServerName;
use tokio::sync::Notify;

use crate::accesslog::Flag;
use crate::env::Environment;
use crate::io::BoxIo;
use crate::tls;

/// Why an upstream attempt failed, with what Envoy logs for it.
#[derive(Debug, Clone)]
pub enum UpstreamError {
    /// Circuit breaker: `UO`, reset reason `overflow`.
    Overflow,
    /// Connect refused or unreachable: `UF`.
    ConnectFailure(String),
    /// TLS handshake failed: `UF` with the TLS error as transport failure reason.
    TlsFailure(String),
    /// The upstream closed or reset before a response: `UC`.
    ConnectionTermination,
    /// No endpoint: `UH`.
    NoHealthyUpstream,
    /// The upstream spoke something that is not HTTP: `UPE`.
    ProtocolError,
}

impl UpstreamError {
    pub fn flag(&self) -> Flag {
        match self {
            UpstreamError::Overflow => Flag::UpstreamOverflow,
            UpstreamError::ConnectFailure(_) | UpstreamError::TlsFailure(_) => {
                Flag::UpstreamConnectionFailure
            }
            UpstreamError::ConnectionTermination => Flag::UpstreamConnectionTermination,
            UpstreamError::NoHealthyUpstream => Flag::NoHealthyUpstream,
            UpstreamError::ProtocolError => Flag::UpstreamProtocolError,
        }
    }

    /// Envoy's reset reason in bodies and details.
    pub fn reset_reason(&self) -> &'static str {
        match self {
            UpstreamError::Overflow => "overflow",
            UpstreamError::ConnectFailure(_) | UpstreamError::TlsFailure(_) => {
                "remote connection failure"
            }
            UpstreamError::ConnectionTermination => "connection termination",
            UpstreamError::NoHealthyUpstream => "no healthy upstream",
            UpstreamError::ProtocolError => "protocol error",
        }
    }

    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub fn transport_failure_reason(&self) -> Option<String> {
        match self {
            UpstreamError::ConnectFailure(r) | UpstreamError::TlsFailure(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// `upstream_reset_before_response_started{...}` details (spaces → `_`).
    pub fn details(&self) -> String {
        let reason = self.reset_reason().replace(' ', "_");
        match self.transport_failure_reason() {
            Some(t) => format!(
                "upstream_reset_before_response_started{{{reason}|{}}}",
                t.replace(' ', "_")
            ),
            None => format!("upstream_reset_before_response_started{{{reason}}}"),
        }
    }
}

/// Envoy's name for a connect error (`delayed_connect_error:_Connection_refused`).
pub fn connect_error_reason(e: &io::Error) -> String {
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".to_string(),
        io::ErrorKind::TimedOut => "Connection timed out".to_string(),
        _ => e.to_string(),
    };
    format!("delayed connect error: {what}")
}

/// BoringSSL-style reason for a rustls failure, as Envoy prints it.
pub fn tls_error_reason(e: &io::Error) -> String {
    let msg = e.to_string();
    let code = if msg.contains("InvalidContentType")
        || msg.contains("corrupt message")
        || msg.contains("received corrupt")
    {
        "268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER"
    } else if msg.contains("invalid peer certificate")
        || msg.contains("UnknownIssuer")
        || msg.contains("NotValidForName")
    {
        "268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
    } else if msg.contains("CertificateRequired") || msg.contains("peer sent no certificates") {
        "268436124:SSL routines:OPENSSL_internal:TLSV1_ALERT_CERTIFICATE_REQUIRED"
    } else if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("close_notify")
        || msg.contains("eof")
    {
        "268435650:SSL routines:OPENSSL_internal:CONNECTION_CLOSED"
    } else {
        "268435470:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE"
    };
    format!("TLS_error:|{code}:TLS_error_end")
}

/// Counters a cluster exposes on `/stats` and `/clusters`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_active: AtomicU64,
    pub upstream_cx_overflow: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    pub upstream_rq_total: AtomicU64,
    pub upstream_rq_pending_overflow: AtomicU64,
    pub upstream_rq_pending_total: AtomicU64,
    pub upstream_rq_retry: AtomicU64,
    pub upstream_rq_2xx: AtomicU64,
    pub upstream_rq_4xx: AtomicU64,
    pub upstream_rq_5xx: AtomicU64,
}

impl ClusterStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("upstream_cx_total", g(&self.upstream_cx_total)),
            ("upstream_cx_active", g(&self.upstream_cx_active)),
            ("upstream_cx_overflow", g(&self.upstream_cx_overflow)),
            (
                "upstream_cx_connect_fail",
                g(&self.upstream_cx_connect_fail),
            ),
            ("upstream_rq_total", g(&self.upstream_rq_total)),
            (
                "upstream_rq_pending_overflow",
                g(&self.upstream_rq_pending_overflow),
            ),
            (
                "upstream_rq_pending_total",
                g(&self.upstream_rq_pending_total),
            ),
            ("upstream_rq_retry", g(&self.upstream_rq_retry)),
            ("upstream_rq_2xx", g(&self.upstream_rq_2xx)),
            ("upstream_rq_4xx", g(&self.upstream_rq_4xx)),
            ("upstream_rq_5xx", g(&self.upstream_rq_5xx)),
        ]
    }
}

/// One endpoint, with the TLS (if any) its transport socket selects.
pub struct EndpointRt {
    /// IP or DNS name on the virtual network.
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsTarget>,
}

#[derive(Clone)]
pub struct TlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    /// Same context with ALPN `istio-http/1.1` (Istio's `istio.alpn` for HTTP over mTLS).
    pub http_config: Arc<rustls::ClientConfig>,
    /// ... and `istio-h2` for HTTP/2 upstreams (the server side picks its
    /// codec from it).
    pub h2_config: Arc<rustls::ClientConfig>,
    pub sni: String,
}

type Body = BoxBody<Bytes, hyper::Error>;

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// An idle HTTP connection in the pool.
struct Idle {
    sender: Sender,
    endpoint: usize,
    used: u32,
    local: String,
}

/// A cluster's live state; kept across table pushes while the cluster's
/// name stays, like Envoy's cluster manager does for unchanged clusters.
pub struct ClusterRt {
    pub config: Cluster,
    pub endpoints: Vec<EndpointRt>,
    pub stats: Arc<ClusterStats>,
    rr: AtomicUsize,
    thresholds: Thresholds,
    cx_active: Arc<AtomicU32>,
    rq_active: AtomicU32,
    rq_pending: AtomicU32,
    idle: Mutex<VecDeque<Idle>>,
    released: Notify,
}

impl ClusterRt {
    pub fn new(
        config: Cluster,
        lb: &[LbEndpoint],
        env: &dyn Environment,
        stats: Arc<ClusterStats>,
    ) -> Result<Self, String> {
        let mut endpoints = Vec::new();
        for e in lb {
            let sock = match &config.transport_socket {
                Some(s) => Some(s.clone()),
                None => config
                    .transport_socket_matches
                    .iter()
                    .find(|m| socket_matches(&m.match_, e))
                    .and_then(|m| m.transport_socket.clone()),
            };
            let tls = sock.as_ref().map(|s| tls_target(s, env)).transpose()?;
            let a = &e.endpoint.address.socket_address;
            endpoints.push(EndpointRt {
                host: a.address.clone(),
                port: a.port_value,
                tls,
            });
        }
        let thresholds = config.circuit_breakers.default_thresholds();
        Ok(Self {
            endpoints,
            stats,
            rr: AtomicUsize::new(0),
            thresholds,
            cx_active: Arc::new(AtomicU32::new(0)),
            rq_active: AtomicU32::new(0),
            rq_pending: AtomicU32::new(0),
            idle: Mutex::new(VecDeque::new()),
            released: Notify::new(),
            config,
        })
    }

    /// TLS for ORIGINAL_DST clusters (no endpoint list): the cluster's socket.
    pub fn original_dst_tls(&self, env: &dyn Environment) -> Result<Option<TlsTarget>, String> {
        self.config
            .transport_socket
            .as_ref()
            .map(|s| tls_target(s, env))
            .transpose()
    }

    /// Round-robin pick (Envoy's LEAST_REQUEST with equal load degenerates to it).
    pub fn pick(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(self.rr.fetch_add(1, Ordering::Relaxed) % self.endpoints.len())
    }
}

fn socket_matches(m: &serde_json::Value, e: &LbEndpoint) -> bool {
    let Some(obj) = m.as_object() else {
        return true;
    };
    obj.iter().all(|(k, v)| match k.as_str() {
        "tlsMode" => {
            v.as_str()
                == Some(if e.tls_mode_istio() {
                    "istio"
                } else {
                    "disabled"
                })
        }
        _ => false,
    })
}

fn tls_target(s: &UpstreamTransportSocket, env: &dyn Environment) -> Result<TlsTarget, String> {
    let ctx = &s.typed_config;
    let mut ctx = ctx.clone();
    // Auto SAN validation: SIMPLE/MUTUAL without SANs verify the SNI host.
    if ctx.istio_mode != UpstreamTlsMode::IstioMutual && !ctx.sni.is_empty() {
        if let Some(v) = ctx.common_tls_context.validation_context.as_mut() {
            if v.match_subject_alt_names.is_empty() {
                v.match_subject_alt_names.push(ctx.sni.clone());
            }
        }
    }
    let config = tls::client_config(&ctx, env, None)?;
    let (http_config, h2_config) = if ctx.istio_mode == UpstreamTlsMode::IstioMutual {
        (
            tls::client_config(&ctx, env, Some(&["istio-http/1.1"]))?,
            tls::client_config(&ctx, env, Some(&["istio-h2"]))?,
        )
    } else {
        (config.clone(), config.clone())
    };
    Ok(TlsTarget {
        config,
        http_config,
        h2_config,
        sni: ctx.sni.clone(),
    })
}

/// Process-wide: abort on descriptor exhaustion while connecting upstream
/// (set by the proxy process mode, like Envoy).
pub static FD_ABORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens a connection to `dst` with optional TLS. Returns the stream and
/// the local address string for `%UPSTREAM_LOCAL_ADDRESS%`. `http` is
/// `Some(http2)` for HTTP upstreams (it picks the ALPN `istio.alpn` sets).
pub async fn connect(
    env: &dyn Environment,
    host: &str,
    port: u16,
    tls: Option<&TlsTarget>,
    http: Option<bool>,
) -> Result<(BoxIo, SocketAddr), UpstreamError> {
    let ip = match host.parse() {
        Ok(ip) => ip,
        Err(_) => env.resolve(host).ok_or_else(|| {
            UpstreamError::ConnectFailure(format!("dns resolution failed for {host}"))
        })?,
    };
    let (stream, local) = env
        .connect(SocketAddr::new(ip, port))
        .await
        .map_err(|e| UpstreamError::ConnectFailure(connect_error_reason(&e)))?;
    let Some(t) = tls else {
        return Ok((stream, local));
    };
    let sni = if t.sni.is_empty() {
        host.to_string()
    } else {
        t.sni.clone()
    };
    let name = ServerName::try_from(sni).unwrap_or(ServerName::IpAddress(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
    ));
    let connector = tokio_rustls::TlsConnector::from(match http {
        None => t.config.clone(),
        Some(false) => t.http_config.clone(),
        Some(true) => t.h2_config.clone(),
    });
    match connector.connect(name, stream).await {
        Ok(s) => Ok((Box::new(s), local)),
        Err(e) => Err(UpstreamError::TlsFailure(tls_error_reason(&e))),
    }
}

/// A pooled HTTP connection checked out for one request.
pub struct Lease {
    cluster: Arc<ClusterRt>,
    sender: Option<Sender>,
    pub endpoint: usize,
    used: u32,
    pub local: String,
}

impl Lease {
    /// Sends one request; failures are classified as Envoy would report them.
    pub async fn send(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
        self.used += 1;
        let r = match self.sender.as_mut() {
            Some(Sender::H1(s)) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            Some(Sender::H2(s)) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            // The connection was handed back already: treat as reset.
            None => return Err(UpstreamError::ConnectionTermination),
        };
        r.map_err(|e| classify(&e))
    }
}

/// An upstream HTTP error before a response: a parse error is `UPE`,
/// anything else a reset (`UC`).
pub fn classify(e: &hyper::Error) -> UpstreamError {
    if e.is_parse() {
        UpstreamError::ProtocolError
    } else {
        UpstreamError::ConnectionTermination
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let c = &self.cluster;
        c.rq_active.fetch_sub(1, Ordering::AcqRel);
        let reusable = match &self.sender {
            Some(Sender::H1(s)) => {
                !s.is_closed()
                    && self
                        .cluster
                        .config
                        .max_requests_per_connection
                        .is_none_or(|m| self.used < m)
            }
            Some(Sender::H2(s)) => !s.is_closed(),
            None => false,
        };
        if let (true, Some(sender)) = (reusable, self.sender.take()) {
            if let Ok(mut idle) = c.idle.lock() {
                idle.push_back(Idle {
                    sender,
                    endpoint: self.endpoint,
                    used: self.used,
                    local: self.local.clone(),
                });
            }
        } else {
            self.sender = None;
        }
        c.released.notify_one();
    }
}

/// Checks out a connection for one HTTP request, obeying the circuit
/// breakers. `pick` chooses the endpoint for a new connection.
pub async fn acquire(
    cluster: &Arc<ClusterRt>,
    env: &dyn Environment,
    endpoint: usize,
    http2: bool,
) -> Result<Lease, UpstreamError> {
    let th = cluster.thresholds;
    if cluster.rq_active.load(Ordering::Acquire) >= th.max_requests {
        ClusterStats::inc(&cluster.stats.upstream_rq_pending_overflow);
        return Err(UpstreamError::Overflow);
    }
    cluster.rq_active.fetch_add(1, Ordering::AcqRel);
    let mut pending = false;
    let result = loop {
        let idle = cluster.idle.lock().ok().and_then(|mut q| {
            // The load balancer picked the host first; only its pool counts.
            let pos = q.iter().position(|i| {
                i.endpoint == endpoint
                    && match &i.sender {
                        Sender::H1(s) => !s.is_closed(),
                        Sender::H2(s) => !s.is_closed(),
                    }
            })?;
            q.remove(pos)
        });
        if let Some(i) = idle {
            break Ok(Lease {
                cluster: cluster.clone(),
                sender: Some(i.sender),
                endpoint: i.endpoint,
                used: i.used,
                local: i.local,
            });
        }
        let cx = cluster.cx_active.load(Ordering::Acquire);
        if cx < th.max_connections
            && cluster
                .cx_active
                .compare_exchange(cx, cx + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            break new_connection(cluster, env, endpoint, http2).await;
        }
        if !pending {
            ClusterStats::inc(&cluster.stats.upstream_cx_overflow);
            if cluster.rq_pending.load(Ordering::Acquire) >= th.max_pending_requests {
                ClusterStats::inc(&cluster.stats.upstream_rq_pending_overflow);
                break Err(UpstreamError::Overflow);
            }
            cluster.rq_pending.fetch_add(1, Ordering::AcqRel);
            ClusterStats::inc(&cluster.stats.upstream_rq_pending_total);
            pending = true;
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            cluster.released.notified(),
        )
        .await;
    };
    if pending {
        cluster.rq_pending.fetch_sub(1, Ordering::AcqRel);
    }
    if result.is_err() {
        cluster.rq_active.fetch_sub(1, Ordering::AcqRel);
    }
    result
}

async fn new_connection(
    cluster: &Arc<ClusterRt>,
    env: &dyn Environment,
    endpoint: usize,
    http2: bool,
) -> Result<Lease, UpstreamError> {
    let stats = &cluster.stats;
    ClusterStats::inc(&stats.upstream_cx_total);
    let Some(ep) = cluster.endpoints.get(endpoint) else {
        cluster.cx_active.fetch_sub(1, Ordering::AcqRel);
        return Err(UpstreamError::NoHealthyUpstream);
    };
    let (io, local) = match connect(env, &ep.host, ep.port, ep.tls.as_ref(), Some(http2)).await {
        Ok(x) => x,
        Err(e) => {
            ClusterStats::inc(&stats.upstream_cx_connect_fail);
            cluster.cx_active.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
    };
    stats.upstream_cx_active.fetch_add(1, Ordering::Relaxed);
    let guard = CxGuard {
        active: cluster.cx_active.clone(),
        stats: cluster.stats.clone(),
    };
    let sender = if http2 {
        match http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await {
            Ok((s, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(guard);
                });
                Sender::H2(s)
            }
            Err(_) => return Err(UpstreamError::ProtocolError),
        }
    } else {
        match http1::handshake(TokioIo::new(io)).await {
            Ok((s, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(guard);
                });
                Sender::H1(s)
            }
            Err(_) => return Err(UpstreamError::ConnectionTermination),
        }
    };
    Ok(Lease {
        cluster: cluster.clone(),
        sender: Some(sender),
        endpoint,
        used: 0,
        local: local.to_string(),
    })
}

/// Decrements the active-connection counts when the connection ends.
struct CxGuard {
    active: Arc<AtomicU32>,
    stats: Arc<ClusterStats>,
}

impl Drop for CxGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.stats
            .upstream_cx_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A single-use HTTP/1.1 connection (ORIGINAL_DST clusters: the endpoint
/// is the downstream connection's original destination).
pub async fn one_off(
    env: &dyn Environment,
    dst: SocketAddr,
    tls: Option<&TlsTarget>,
) -> Result<(http1::SendRequest<Body>, String), UpstreamError> {
    let (io, local) = connect(env, &dst.ip().to_string(), dst.port(), tls, Some(false)).await?;
    let (s, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| UpstreamError::ConnectionTermination)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((s, local.to_string()))
}

pub fn is_original_dst(c: &Cluster) -> bool {
    c.discovery_type == DiscoveryType::OriginalDst
}
