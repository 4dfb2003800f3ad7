//! meshsim-proxy: the data plane. One [`Proxy`] per sidecar or gateway
//! enforces its [`ProxyTables`] on real sockets: listener and filter-chain
//! selection (original destination, SNI and ALPN from a sniffed ClientHello,
//! transport protocol, sniffed HTTP), the HTTP connection manager on hyper
//! (HTTP/1.1 and HTTP/2), the router (routes, weighted clusters, retries,
//! timeouts, local replies with Envoy's response flags), the TCP proxy, TLS
//! termination and origination on rustls (ring), connection pools with
//! Envoy's circuit breakers, and Envoy access logs.
//!
//! Place in the data flow: compiler → tables → **proxy** → access log.
//! The mesh (another crate) owns the sockets' addresses and certificates and
//! reaches the proxy only through [`env::Environment`].
//!
//! # Layout
//! * [`listener`] — accepting, original destination (PROXY v2), sniffing,
//!   chain selection, TLS termination, dispatch to HTTP or TCP.
//! * [`http`] — HTTP connection manager and router.
//! * [`tcp`] — TCP proxy.
//! * [`upstream`] — clusters at run time: endpoints, pools, breakers, errors.
//! * [`snapshot`] — tables resolved for serving; swapped atomically.
//! * [`accesslog`] — Envoy's log formats and response flags.
//! * [`tls`], [`io`], [`env`] — plumbing.

pub mod accesslog;
pub mod admin;
pub mod env;
pub mod http;
pub mod io;
pub mod listener;
pub mod snapshot;
pub mod tcp;
pub mod tls;
pub mod upstream;
mod xfcc;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use meshsim_tables::ProxyTables;
use rand::{Rng, SeedableRng};

use crate::accesslog::{AccessLogger, LogSink};
use crate::env::SharedEnv;
use crate::snapshot::{Snapshot, StatsRegistry};

/// Listener-level counters (`/stats`).
#[derive(Default)]
pub struct ServerStats {
    pub downstream_cx_total: AtomicU64,
    pub downstream_cx_active: AtomicU64,
    pub downstream_rq_total: AtomicU64,
    pub no_filter_chain_match: AtomicU64,
    pub downstream_cx_protocol_error: AtomicU64,
}

/// What to do when the process runs out of file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdExhaustion {
    /// Back off and keep serving (library use: never take the host down).
    Retry,
    /// What Envoy does: log the critical assert line and abort the process
    /// (Envoy treats EMFILE like out-of-memory).
    Abort,
}

/// The line Istio's page quotes, with the current time and pid.
pub fn envoy_fd_assert_line() -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let ts = now.trim_end_matches('Z').replacen('T', " ", 1);
    format!("[{ts}][{}][critical][assert] assert failure: fd_ != -1: external/envoy/source/common/network/connection_impl.cc:58", std::process::id())
}

pub(crate) struct Inner {
    pub id: String,
    /// The proxy's own IP on the virtual network.
    pub ip: IpAddr,
    pub env: SharedEnv,
    pub snapshot: ArcSwap<Snapshot>,
    pub logger: ArcSwap<AccessLogger>,
    pub sink: Arc<dyn LogSink>,
    pub stats: StatsRegistry,
    pub server: ServerStats,
    rng: Mutex<rand::rngs::SmallRng>,
    /// Request ids come from their own generator, so weighted picks depend
    /// only on the seed and the number of picks.
    id_rng: Mutex<rand::rngs::SmallRng>,
    pub version: AtomicU64,
    pub fd_policy: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// An accept (or connect) failed: on descriptor exhaustion, behave as
    /// configured; otherwise back off briefly.
    pub async fn accept_failed(&self, e: &std::io::Error) {
        let emfile = matches!(e.raw_os_error(), Some(24) | Some(23));
        if emfile && self.fd_policy.load(Ordering::Relaxed) {
            eprintln!("{}", envoy_fd_assert_line());
            std::process::abort();
        }
        tokio::time::sleep(std::time::Duration::from_millis(if emfile {
            50
        } else {
            5
        }))
        .await;
    }

    /// A random number for weighted picks and request ids (seeded: runs repeat).
    pub fn random(&self) -> u64 {
        self.rng.lock().map(|mut r| r.random()).unwrap_or(0)
    }

    pub fn random_id(&self) -> u64 {
        self.id_rng.lock().map(|mut r| r.random()).unwrap_or(0)
    }
}

/// A running proxy's handle. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

impl Proxy {
    /// Builds a proxy for `tables`. `seed` fixes the random choices.
    pub fn new(tables: ProxyTables, env: SharedEnv, sink: Arc<dyn LogSink>, seed: u64) -> Self {
        let stats = StatsRegistry::default();
        let ip = tables.proxy.ip;
        let id = tables.proxy.id.clone();
        let logger = AccessLogger::new(&id, &tables.access_log, sink.clone());
        let snap = Snapshot::build(tables, env.as_ref(), &stats);
        Proxy {
            inner: Arc::new(Inner {
                id,
                ip,
                env,
                snapshot: ArcSwap::from_pointee(snap),
                logger: ArcSwap::from_pointee(logger),
                sink,
                stats,
                server: ServerStats::default(),
                rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
                id_rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(
                    seed ^ 0x9e37_79b9_7f4a_7c15,
                )),
                version: AtomicU64::new(1),
                fd_policy: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Swaps in new tables. Established connections keep going; new
    /// connections and new requests see the new tables.
    pub fn update(&self, tables: ProxyTables) {
        let logger = AccessLogger::new(&self.inner.id, &tables.access_log, self.inner.sink.clone());
        let snap = Snapshot::build(tables, self.inner.env.as_ref(), &self.inner.stats);
        self.inner.snapshot.store(Arc::new(snap));
        self.inner.logger.store(Arc::new(logger));
        self.inner.version.fetch_add(1, Ordering::Relaxed);
    }

    /// The tables currently served.
    pub fn tables(&self) -> ProxyTables {
        self.inner.snapshot.load().tables.clone()
    }

    /// Problems found when the current tables were loaded.
    pub fn warnings(&self) -> Vec<String> {
        self.inner.snapshot.load().warnings.clone()
    }

    /// Sets what running out of file descriptors does.
    pub fn set_fd_exhaustion(&self, policy: FdExhaustion) {
        self.inner
            .fd_policy
            .store(policy == FdExhaustion::Abort, Ordering::Relaxed);
        upstream::FD_ABORT.store(policy == FdExhaustion::Abort, Ordering::Relaxed);
    }

    /// Whether a listener is bound on `port` (gateways).
    pub fn listens_on(&self, port: u16) -> bool {
        self.inner.snapshot.load().port_listener(port).is_some()
    }

    /// Whether the listener on `port` expects TLS from clients (a gateway
    /// server terminating or passing through TLS).
    pub fn expects_tls(&self, port: u16) -> bool {
        let snap = self.inner.snapshot.load();
        snap.port_listener(port).is_some_and(|i| {
            snap.tables.listeners[i].filter_chains.iter().any(|c| {
                c.transport_socket.is_some()
                    || c.filter_chain_match.transport_protocol
                        == meshsim_tables::TransportProtocol::Tls
            })
        })
    }

    /// How many table sets this proxy has received.
    pub fn config_version(&self) -> u64 {
        self.inner.version.load(Ordering::Relaxed)
    }
}
