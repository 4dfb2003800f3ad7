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
//! reaches the proxy only through [`env::Environment`]. Every task a proxy
//! starts lives in its [`scope::Scope`] and ends with [`Proxy::shutdown`].
//!
//! # Layout
//! * [`listener`] — accepting, original destination (PROXY v2), listener
//!   and filter-chain selection, TLS termination, dispatch to HTTP or TCP.
//! * [`sniff`] — the TLS and HTTP inspectors (read once, parsed once).
//! * [`http`] — the HTTP connection manager and the request pipeline:
//!   decode → route → filters → upstream → forward → log, with one
//!   [`http::LocalReply`] type for every reply Envoy makes itself.
//! * [`tcp`] — TCP proxy and the network RBAC filter.
//! * [`upstream`] — clusters at run time: host choice, the one connect path
//!   (TCP and HTTP), pools, breakers, Envoy's failure vocabulary.
//! * [`snapshot`] — tables and logger resolved for serving, swapped as one.
//! * [`accesslog`] — Envoy's log formats and response flags.
//! * [`scope`] — task ownership; [`tls`], [`io`], [`env`], [`admin`].

pub mod accesslog;
pub mod admin;
pub mod env;
pub mod error;
pub mod http;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod scope;
pub mod snapshot;
pub mod sniff;
pub mod tcp;
pub mod tls;
pub mod upstream;
mod xfcc;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use meshsim_tables::ProxyTables;
use rand::{Rng, SeedableRng};

use crate::accesslog::LogSink;
use crate::env::SharedEnv;
use crate::scope::Scope;
use crate::snapshot::{Snapshot, StatsRegistry};

/// Listener-level counters (`/stats`).
#[derive(Default)]
pub struct ServerStats {
    pub downstream_cx_total: AtomicU64,
    pub downstream_cx_active: AtomicU64,
    pub downstream_rq_total: AtomicU64,
    pub no_filter_chain_match: AtomicU64,
    pub downstream_cx_protocol_error: AtomicU64,
    /// Connections closed when the listener filters timed out.
    pub downstream_pre_cx_timeout: AtomicU64,
}

/// Wall-clock time for access-log timestamps; tests inject a fixed one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What happens when accept or connect fails for lack of file descriptors.
/// The library only calls it; a process that wants Envoy's behaviour
/// (log `assert failure: fd_ != -1` and abort) installs that hook itself.
pub type FdExhaustedHook = Arc<dyn Fn(&std::io::Error) + Send + Sync>;

/// The line Istio's page quotes, with the current time and pid.
pub fn envoy_fd_assert_line() -> String {
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let ts = now.trim_end_matches('Z').replacen('T', " ", 1);
    format!("[{ts}][{}][critical][assert] assert failure: fd_ != -1: external/envoy/source/common/network/connection_impl.cc:58", std::process::id())
}

/// Whether an I/O error means "out of file descriptors" (EMFILE, ENFILE).
pub fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// Accepts and connects that failed for lack of descriptors, process-wide.
static FD_EXHAUSTION_EVENTS: AtomicU64 = AtomicU64::new(0);

/// How many accepts and connects of this process's proxies failed for
/// lack of file descriptors (a client's hint reads it).
pub fn fd_exhaustion_events() -> u64 {
    FD_EXHAUSTION_EVENTS.load(Ordering::Relaxed)
}

/// Counts a descriptor-exhaustion failure seen outside a proxy (a client).
pub fn note_fd_exhaustion() {
    FD_EXHAUSTION_EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// The run-time handles a proxy is built with (apart from its tables).
#[derive(Clone)]
pub struct ProxyRuntime {
    pub env: SharedEnv,
    pub sink: Arc<dyn LogSink>,
    /// Where the proxy's tasks live; the owner shuts it down.
    pub scope: Scope,
    /// Seeds weighted picks and request ids.
    pub seed: u64,
    pub clock: Arc<dyn Clock>,
}

impl ProxyRuntime {
    pub fn new(env: SharedEnv, sink: Arc<dyn LogSink>, scope: Scope, seed: u64) -> Self {
        Self {
            env,
            sink,
            scope,
            seed,
            clock: Arc::new(SystemClock),
        }
    }
}

pub(crate) struct Inner {
    pub id: String,
    /// The proxy's own IP on the virtual network.
    pub ip: IpAddr,
    pub env: SharedEnv,
    /// Tables and logger, swapped together.
    pub snapshot: ArcSwap<Snapshot>,
    pub sink: Arc<dyn LogSink>,
    pub stats: StatsRegistry,
    pub server: ServerStats,
    pub scope: Scope,
    pub clock: Arc<dyn Clock>,
    rng: Mutex<rand::rngs::SmallRng>,
    /// Request ids come from their own generator, so weighted picks depend
    /// only on the seed and the number of picks.
    id_rng: Mutex<rand::rngs::SmallRng>,
    pub version: AtomicU64,
    fd_hook: arc_swap::ArcSwapOption<FdExhaustedHook>,
    /// Descriptor exhaustion was reported for this proxy already.
    fd_reported: std::sync::atomic::AtomicBool,
    /// `istio_requests_total`.
    pub metrics: metrics::RequestMetrics,
}

impl Inner {
    /// An accept or connect failed: on descriptor exhaustion, run the hook
    /// (if the process installed one) and back off; otherwise back off
    /// briefly.
    pub async fn io_failed(&self, e: &std::io::Error) {
        let exhausted = is_fd_exhaustion(e);
        if exhausted {
            self.fd_exhausted(e, "accept");
        }
        let ms = if exhausted { 50 } else { 5 };
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }

    /// A connect failed: descriptor exhaustion runs the hook.
    pub fn connect_failed(&self, e: &std::io::Error) {
        if is_fd_exhaustion(e) {
            self.fd_exhausted(e, "connect");
        }
    }

    /// Out of descriptors: counted; the process's hook (a proxy process:
    /// Envoy's assert and abort) or, in the shared mesh process, one line
    /// per proxy. Envoy's accept path says nothing (the listener just
    /// retries); its connect path is the page's assert, which would end
    /// this Envoy — the in-process proxy keeps serving and says so.
    fn fd_exhausted(&self, e: &std::io::Error, what: &str) {
        FD_EXHAUSTION_EVENTS.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.fd_hook.load_full() {
            hook(e);
            return;
        }
        if self.fd_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        let envoy = if what == "connect" {
            format!(
                "; an Envoy would log \"{}\" and abort here",
                envoy_fd_assert_line()
            )
        } else {
            String::new()
        };
        eprintln!(
            "meshsim: proxy {}: {what} failed: {e} (reported once per proxy){envoy}",
            self.id
        );
    }

    /// A random number for weighted picks and fault percentages (seeded).
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
    /// Builds a proxy for `tables`; it serves nothing until given listeners.
    pub fn new(tables: ProxyTables, rt: ProxyRuntime) -> Self {
        let stats = StatsRegistry::default();
        let ip = tables.proxy.ip;
        let id = tables.proxy.id.clone();
        let snap = Snapshot::build(tables, rt.env.as_ref(), &stats, rt.sink.clone());
        Proxy {
            inner: Arc::new(Inner {
                id,
                ip,
                env: rt.env,
                snapshot: ArcSwap::from_pointee(snap),
                sink: rt.sink,
                stats,
                server: ServerStats::default(),
                scope: rt.scope,
                clock: rt.clock,
                rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(rt.seed)),
                id_rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(
                    rt.seed ^ 0x9e37_79b9_7f4a_7c15,
                )),
                version: AtomicU64::new(1),
                fd_hook: arc_swap::ArcSwapOption::empty(),
                fd_reported: std::sync::atomic::AtomicBool::new(false),
                metrics: metrics::RequestMetrics::default(),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Swaps in new tables (and the logger they configure) as one snapshot.
    /// Established connections keep going; new connections and new
    /// requests see the new tables.
    pub fn update(&self, tables: ProxyTables) {
        let snap = Snapshot::build(
            tables,
            self.inner.env.as_ref(),
            &self.inner.stats,
            self.inner.sink.clone(),
        );
        self.inner.snapshot.store(Arc::new(snap));
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

    /// Installs what running out of file descriptors does.
    pub fn on_fd_exhausted(&self, hook: FdExhaustedHook) {
        self.inner.fd_hook.store(Some(Arc::new(hook)));
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

    /// Ends every listener and connection of this proxy and waits for them.
    pub async fn shutdown(&self) {
        self.inner.scope.shutdown().await;
    }

    /// The scope the proxy's tasks live in (its owner shuts it down).
    pub fn scope(&self) -> Scope {
        self.inner.scope.clone()
    }

    /// Whether the proxy was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.inner.scope.is_shut_down()
    }
}
