//! meshsim-tables: the compiled intermediate representation, in Envoy's
//! vocabulary, and the pure matchers the proxy runs over it.
//!
//! Place in the data flow: compiler → **tables** → proxy. The compiler fills
//! these types with istiod's names and rules; the proxy only reads them.
//! Field names follow Envoy's `config_dump` JSON so the serialized form reads
//! like `istioctl proxy-config -o json`. No tokio, no hyper, no I/O.
//!
//! # Layout
//! * [`listener`] — listeners, filter chains, network filters, downstream TLS.
//! * [`route`] — route configurations, virtual hosts, routes.
//! * [`cluster`] — clusters, circuit breakers, upstream TLS, endpoints.
//! * [`filter_chain_match`] — Envoy's filter-chain selection.
//! * [`vhost_match`] — virtual-host selection by `Host`/`:authority`.
//! * [`route_match`] — route selection for a request.
//! * [`display`] — istioctl-style tables and config_dump JSON.
//! * [`weighted`] — weighted cluster pick with an injected random number.
//! * [`types`] — typed values (durations, retry conditions, append actions,
//!   transport protocols, log encodings) that serialize to Envoy's text, so
//!   the proxy never parses a string the compiler wrote.

pub mod accesslog;
pub mod cluster;
pub mod display;
pub mod envoy;
pub mod filter_chain_match;
pub mod istioctl;
pub mod listener;
pub mod route;
pub mod route_match;
pub mod types;
pub mod version;
pub mod vhost_match;
pub mod weighted;

use serde::Serialize;

pub use cluster::*;
pub use listener::*;
pub use route::*;
pub use types::*;

/// What kind of proxy a table set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProxyKind {
    /// A sidecar next to an application container.
    Sidecar,
    /// A gateway (Envoy's "router" node type in istiod).
    Router,
}

/// Identity of the proxy the tables were compiled for.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyInfo {
    /// `pod.namespace`, as `istioctl proxy-status` names proxies.
    pub id: String,
    pub pod: String,
    pub namespace: String,
    pub kind: ProxyKind,
    /// The pod IP on the virtual network.
    pub ip: std::net::IpAddr,
    pub istio_version: version::IstioVersion,
    /// SPIFFE identity of the workload (`spiffe://cluster.local/ns/N/sa/S`).
    pub identity: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// How access logs are written, from the mesh config.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AccessLogConfig {
    /// `accessLogFile`; empty means access logging is off (Istio's default).
    pub path: String,
    pub encoding: LogEncoding,
    /// Custom `accessLogFormat`, or empty for Istio's default.
    pub format: String,
}

/// Outcome of one EnvoyFilter patch for one proxy, so tools can show why a
/// patch did or did not take effect.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PatchOutcome {
    /// `namespace/name` of the EnvoyFilter.
    pub envoy_filter: String,
    /// Index in `configPatches`.
    pub patch: usize,
    pub apply_to: String,
    pub operation: String,
    pub applied: bool,
    /// Why it was (not) applied: e.g. `proxyVersion "^1\\.10.*" does not match 1.11.0`.
    pub detail: String,
}

/// Everything one proxy needs: its own listeners, routes, clusters and
/// endpoints, as istiod would push them over xDS.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyTables {
    pub proxy: ProxyInfo,
    pub listeners: Vec<Listener>,
    pub route_configs: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub access_log: AccessLogConfig,
    pub envoy_filter_patches: Vec<PatchOutcome>,
    /// `accept_http_10` (Istio's `PILOT_HTTP10` / proxy metadata `HTTP10=1`).
    pub accept_http_10: bool,
}

impl ProxyTables {
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    pub fn route_config(&self, name: &str) -> Option<&RouteConfiguration> {
        self.route_configs.iter().find(|r| r.name == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn load_assignment(&self, cluster: &str) -> Option<&ClusterLoadAssignment> {
        self.endpoints.iter().find(|e| e.cluster_name == cluster)
    }
}
