//! HTTP connection pools per cluster with Envoy's circuit breakers
//! (conn_pool_base.cc): a request with no ready connection is pending —
//! also while a connection is being opened for it — and overflows (`503
//! UO`, `upstream_rq_pending_overflow`) when `max_pending_requests` are
//! already waiting; `max_connections` caps new connections
//! (`upstream_cx_overflow`); `max_requests` caps requests in flight.
//! Connections are opened through [`super::connect`], the path the TCP
//! proxy uses too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use meshsim_tables::{Cluster, LbEndpoint, Thresholds, UpstreamTlsMode, UpstreamTransportSocket};
use tokio::sync::Notify;

use super::{classify, connect, Carries, ClusterStats, Host, UpstreamError};
use crate::env::Environment;
use crate::error::ProxyError;
use crate::tls;
use crate::Inner;

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

type Body = crate::http::UpBody;

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// An idle HTTP connection in the pool.
struct Idle {
    sender: Sender,
    endpoint: usize,
    /// The SNI an `auto_sni` cluster's connection was opened with (Envoy
    /// pools such connections apart); empty otherwise.
    key: String,
    used: u32,
    local: String,
    since: tokio::time::Instant,
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
    /// ORIGINAL_DST clusters (no endpoint list): the cluster's own TLS, or
    /// why it could not be built (a missing secret).
    pub(super) original_dst_tls: Result<Option<TlsTarget>, ProxyError>,
    /// The cluster's outlier detector, when it has `outlier_detection`.
    pub outlier: Option<super::outlier::Outlier>,
}

impl ClusterRt {
    pub fn new(
        config: Cluster,
        lb: &[LbEndpoint],
        env: &dyn Environment,
        stats: Arc<ClusterStats>,
    ) -> Result<Self, ProxyError> {
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
            let tls = sock
                .as_ref()
                .map(|s| tls_target(s, env, config.auto_sni))
                .transpose()?;
            let a = &e.endpoint.address.socket_address;
            endpoints.push(EndpointRt {
                host: a.address.clone(),
                port: a.port_value,
                tls,
            });
        }
        let thresholds = config.circuit_breakers.default_thresholds();
        let original_dst_tls = config
            .transport_socket
            .as_ref()
            .map(|s| tls_target(s, env, config.auto_sni))
            .transpose();
        let outlier = config
            .outlier_detection
            .clone()
            .map(|o| super::outlier::Outlier::new(o, endpoints.len()));
        Ok(Self {
            original_dst_tls,
            outlier,
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

    /// Round-robin pick over the hosts outlier detection leaves in the
    /// set (Envoy's LEAST_REQUEST with equal load degenerates to it).
    pub fn pick(&self) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.rr.fetch_add(1, Ordering::Relaxed);
        match &self.outlier {
            None => Some(n % self.endpoints.len()),
            Some(o) => o.pick(n, self.config.healthy_panic_threshold),
        }
    }

    /// Tells the outlier detector how an attempt to endpoint `i` went.
    pub fn report(&self, i: usize, r: super::outlier::Report) {
        if let Some(o) = &self.outlier {
            o.report(i, r);
        }
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

fn tls_target(
    s: &UpstreamTransportSocket,
    env: &dyn Environment,
    auto_sni: bool,
) -> Result<TlsTarget, ProxyError> {
    let ctx = s.typed_config.clone();
    let config = tls::client_config(&ctx, env, None, auto_sni)?;
    let (http_config, h2_config) = if ctx.istio_mode == UpstreamTlsMode::IstioMutual {
        (
            tls::client_config(&ctx, env, Some(&["istio-http/1.1"]), auto_sni)?,
            tls::client_config(&ctx, env, Some(&["istio-h2"]), auto_sni)?,
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

/// A pooled HTTP connection checked out for one request.
pub struct Lease {
    /// The pool to return to; `None` for a one-off connection.
    cluster: Option<Arc<ClusterRt>>,
    sender: Option<Sender>,
    endpoint: usize,
    key: String,
    used: u32,
    pub local: String,
    /// A request was sent and its response head has not come: dropped
    /// now (the downstream went away), the stream is reset and the
    /// connection closed, as Envoy does — never pooled.
    waiting: bool,
    /// Taken ready from the pool (not opened for this request).
    pub pooled: bool,
}

impl Lease {
    /// Sends one request; failures are classified as Envoy would report them.
    pub async fn send(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
        self.used += 1;
        self.waiting = true;
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
        self.waiting = false;
        r.map_err(|e| classify(&e))
    }
}
/// A lease goes back to its pool (when the connection can carry more) and
/// frees its request slot.
impl Drop for Lease {
    fn drop(&mut self) {
        let Some(c) = self.cluster.take() else { return };
        c.rq_active.fetch_sub(1, Ordering::AcqRel);
        let reusable = !self.waiting
            && match &self.sender {
                Some(Sender::H1(s)) => {
                    !s.is_closed()
                        && c.config
                            .max_requests_per_connection
                            .is_none_or(|m| self.used < m)
                }
                Some(Sender::H2(s)) => !s.is_closed(),
                None => false,
            };
        if self.waiting {
            // Reset: the connection goes with the sender.
            self.sender = None;
        }
        if let (true, Some(sender)) = (reusable, self.sender.take()) {
            if let Ok(mut idle) = c.idle.lock() {
                idle.push_back(Idle {
                    sender,
                    endpoint: self.endpoint,
                    key: std::mem::take(&mut self.key),
                    used: self.used,
                    local: self.local.clone(),
                    since: tokio::time::Instant::now(),
                });
            }
        } else {
            self.sender = None;
        }
        c.released.notify_one();
    }
}

/// A connection for one HTTP request to `host`: pooled for an endpoint,
/// a one-off for an original destination.
pub(crate) async fn lease(
    inner: &Inner,
    cluster: &Arc<ClusterRt>,
    host: &Host,
) -> Result<Lease, UpstreamError> {
    acquire(inner, cluster, host, cluster.config.http2_protocol_options).await
}

/// The pool slot of an original destination (ORIGINAL_DST clusters, e.g.
/// Istio's inbound `inbound|PORT||` and `PassthroughCluster`): Envoy makes
/// a host per destination address (original_dst_cluster.cc) with its own
/// connection pool, so keep-alive connections to the app are reused.
const ORIGINAL_DST: usize = usize::MAX;

/// Checks out a connection to `host` (an endpoint the load balancer chose)
/// for one HTTP request, obeying the circuit breakers.
pub(crate) async fn acquire(
    inner: &Inner,
    cluster: &Arc<ClusterRt>,
    host: &Host,
    http2: bool,
) -> Result<Lease, UpstreamError> {
    let endpoint = host.endpoint.unwrap_or(ORIGINAL_DST);
    let th = cluster.thresholds;
    if cluster.rq_active.load(Ordering::Acquire) >= th.max_requests {
        ClusterStats::inc(&cluster.stats.upstream_rq_pending_overflow);
        return Err(UpstreamError::Overflow);
    }
    cluster.rq_active.fetch_add(1, Ordering::AcqRel);
    let result = checkout(inner, cluster, host, endpoint, http2).await;
    if result.is_err() {
        cluster.rq_active.fetch_sub(1, Ordering::AcqRel);
    }
    result
}

/// An idle connection to `endpoint`, if the pool has one.
fn take_idle(cluster: &Arc<ClusterRt>, endpoint: usize, key: &str) -> Option<Lease> {
    let i = cluster.idle.lock().ok().and_then(|mut q| {
        // The cluster's idle_timeout closes connections idle that long.
        if let Some(t) = cluster.config.idle_timeout.and_then(|t| t.as_timeout()) {
            let now = tokio::time::Instant::now();
            q.retain(|i| now.saturating_duration_since(i.since) < t);
        }
        // The load balancer picked the host first; only its pool counts.
        let pos = q.iter().position(|i| {
            i.endpoint == endpoint
                && i.key == key
                && match &i.sender {
                    Sender::H1(s) => !s.is_closed(),
                    Sender::H2(s) => !s.is_closed(),
                }
        })?;
        q.remove(pos)
    })?;
    Some(Lease {
        cluster: Some(cluster.clone()),
        sender: Some(i.sender),
        endpoint: i.endpoint,
        key: i.key,
        used: i.used,
        local: i.local,
        waiting: false,
        pooled: true,
    })
}

/// Which of an endpoint's connections a request may use: an `auto_sni`
/// cluster keeps one pool per SNI.
/// An original destination's pool is its address (and the source the
/// cluster binds).
fn pool_key(cluster: &ClusterRt, host: &Host) -> String {
    let sni = match (&host.tls, cluster.config.auto_sni) {
        (Some(t), true) => t.sni.as_str(),
        _ => "",
    };
    match host.endpoint {
        Some(_) => sni.to_string(),
        None => format!(
            "{}:{}|{}|{sni}",
            host.address,
            host.port,
            host.source.map(|s| s.to_string()).unwrap_or_default()
        ),
    }
}

/// conn_pool_base.cc `newStreamImpl`: a ready connection serves the
/// request at once; otherwise it becomes a pending request (overflowing
/// when `max_pending_requests` are already waiting) — and stays one while
/// a new connection is established for it, if `max_connections` allows.
async fn checkout(
    inner: &Inner,
    cluster: &Arc<ClusterRt>,
    host: &Host,
    endpoint: usize,
    http2: bool,
) -> Result<Lease, UpstreamError> {
    let key = pool_key(cluster, host);
    if let Some(lease) = take_idle(cluster, endpoint, &key) {
        return Ok(lease);
    }
    let th = cluster.thresholds;
    if cluster.rq_pending.load(Ordering::Acquire) >= th.max_pending_requests {
        ClusterStats::inc(&cluster.stats.upstream_rq_pending_overflow);
        return Err(UpstreamError::Overflow);
    }
    cluster.rq_pending.fetch_add(1, Ordering::AcqRel);
    ClusterStats::inc(&cluster.stats.upstream_rq_pending_total);
    let mut counted_cx_overflow = false;
    let result = loop {
        let cx = cluster.cx_active.load(Ordering::Acquire);
        if cx < th.max_connections
            && cluster
                .cx_active
                .compare_exchange(cx, cx + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            break new_connection(inner, cluster, host, endpoint, http2).await;
        }
        if !std::mem::replace(&mut counted_cx_overflow, true) {
            ClusterStats::inc(&cluster.stats.upstream_cx_overflow);
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            cluster.released.notified(),
        )
        .await;
        if let Some(lease) = take_idle(cluster, endpoint, &key) {
            break Ok(lease);
        }
    };
    cluster.rq_pending.fetch_sub(1, Ordering::AcqRel);
    result
}

async fn new_connection(
    inner: &Inner,
    cluster: &Arc<ClusterRt>,
    host: &Host,
    endpoint: usize,
    http2: bool,
) -> Result<Lease, UpstreamError> {
    let carries = if http2 {
        Carries::Http2
    } else {
        Carries::Http1
    };
    let (io, local) = match connect(inner, cluster, host, carries).await {
        Ok(x) => x,
        Err(e) => {
            cluster.cx_active.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
    };
    cluster
        .stats
        .upstream_cx_active
        .fetch_add(1, Ordering::Relaxed);
    let guard = CxGuard {
        active: cluster.cx_active.clone(),
        stats: cluster.stats.clone(),
    };
    let sender = open_sender(inner, io, http2, Some(guard)).await?;
    Ok(Lease {
        cluster: Some(cluster.clone()),
        sender: Some(sender),
        endpoint,
        key: pool_key(cluster, host),
        used: 0,
        local: local.to_string(),
        waiting: false,
        pooled: false,
    })
}

/// The HTTP/1 or HTTP/2 handshake on a new upstream connection; its
/// driver task holds `guard` (the connection's circuit-breaker slot).
async fn open_sender(
    inner: &Inner,
    io: crate::io::BoxIo,
    h2: bool,
    guard: Option<CxGuard>,
) -> Result<Sender, UpstreamError> {
    if h2 {
        let (s, conn) = http2::handshake(inner.scope.clone(), TokioIo::new(io))
            .await
            .map_err(|_| UpstreamError::ProtocolError)?;
        inner.scope.spawn(async move {
            let _ = conn.await;
            drop(guard);
        });
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|_| UpstreamError::ConnectionTermination)?;
        inner.scope.spawn(async move {
            // A websocket upgrade takes the connection over.
            let _ = conn.with_upgrades().await;
            drop(guard);
        });
        Ok(Sender::H1(s))
    }
}

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
