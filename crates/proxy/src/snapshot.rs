//! A pushed table set, resolved for serving: names become indexes so the
//! per-connection and per-request path never searches by name, and each
//! cluster gets its run-time state (endpoints with TLS, pool, breakers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use meshsim_tables::{
    ClusterSpecifier, FilterChain, Listener, ProxyTables, RouteAction, RouteConfiguration,
};

use crate::accesslog::{AccessLogger, FlagOrder, LogSink};
use crate::env::Environment;
use crate::error::ProxyError;
use crate::tls;
use crate::upstream::{ClusterRt, ClusterStats};

/// Cluster counters survive pushes (Envoy keeps stats by name).
#[derive(Default)]
pub struct StatsRegistry {
    clusters: Mutex<HashMap<String, Arc<ClusterStats>>>,
}

impl StatsRegistry {
    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        let mut m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    pub fn all(&self) -> Vec<(String, Arc<ClusterStats>)> {
        let m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Server TLS contexts per (listener, chain), built at push time.
pub type ChainTls = HashMap<(usize, usize), Result<tls::ServerTls, ProxyError>>;

/// A route configuration whose routes point at cluster handles, resolved
/// when the tables are pushed.
pub struct RouteTable {
    pub config: RouteConfiguration,
    /// `[virtual host][route]` → the route's clusters: one, or one per
    /// weighted cluster in order; `None` where the cluster does not exist
    /// (Envoy answers 503 NC).
    pub targets: Vec<Vec<Vec<Option<Arc<ClusterRt>>>>>,
    /// `[virtual host][route]` → the clusters of the route's
    /// `request_mirror_policies`, in order.
    pub mirrors: Vec<Vec<Vec<Option<Arc<ClusterRt>>>>>,
}

impl RouteTable {
    pub fn build(config: RouteConfiguration, clusters: &HashMap<String, Arc<ClusterRt>>) -> Self {
        let get = |name: &str| clusters.get(name).cloned();
        let targets = per_route(&config, |t| match &t.destination {
            ClusterSpecifier::Cluster(c) => vec![get(c.as_str())],
            ClusterSpecifier::WeightedClusters(w) => {
                w.clusters.iter().map(|c| get(&c.name)).collect()
            }
        });
        let mirrors = per_route(&config, |t| {
            t.request_mirror_policies
                .iter()
                .map(|m| get(&m.cluster))
                .collect()
        });
        Self {
            config,
            targets,
            mirrors,
        }
    }
}

/// `[virtual host][route]` → what `f` resolves for a route to clusters
/// (nothing for direct responses and redirects).
fn per_route(
    config: &RouteConfiguration,
    f: impl Fn(&meshsim_tables::RouteTarget) -> Vec<Option<Arc<ClusterRt>>>,
) -> Vec<Vec<Vec<Option<Arc<ClusterRt>>>>> {
    config
        .virtual_hosts
        .iter()
        .map(|vh| {
            vh.routes
                .iter()
                .map(|r| match &r.action {
                    RouteAction::Route(t) => f(t),
                    _ => vec![],
                })
                .collect()
        })
        .collect()
}

pub struct Snapshot {
    pub tables: ProxyTables,
    /// The access logger these tables configure (swapped with them, so a
    /// request never sees new tables with the old logger).
    pub logger: Arc<AccessLogger>,
    /// Per-port listeners handed connections by `virtualOutbound`:
    /// exact `(ip, port)` first, then `(0.0.0.0, port)`.
    exact: HashMap<(IpAddr, u16), usize>,
    wildcard: HashMap<u16, usize>,
    pub virtual_outbound: Option<usize>,
    pub virtual_inbound: Option<usize>,
    routes: HashMap<String, usize>,
    route_tables: Vec<Arc<RouteTable>>,
    clusters: HashMap<String, Arc<ClusterRt>>,
    pub chain_tls: ChainTls,
    /// Problems found while resolving (missing secrets, bad TLS): reported
    /// by the proxy, and connections that need them fail like Envoy's would.
    pub warnings: Vec<String>,
}

/// Index of the default chain in `chain_tls` keys.
pub const DEFAULT_CHAIN: usize = usize::MAX;

impl Snapshot {
    pub fn build(
        tables: ProxyTables,
        env: &dyn Environment,
        stats: &StatsRegistry,
        sink: Arc<dyn LogSink>,
    ) -> Snapshot {
        let logger = Arc::new(AccessLogger::new(
            &tables.proxy.id,
            &tables.access_log,
            FlagOrder::for_version(tables.proxy.istio_version),
            sink,
        ));
        let mut warnings = Vec::new();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut virtual_outbound = None;
        let mut virtual_inbound = None;
        for (i, l) in tables.listeners.iter().enumerate() {
            match l.name.as_str() {
                "virtualOutbound" => virtual_outbound = Some(i),
                "virtualInbound" => virtual_inbound = Some(i),
                _ => {
                    let a = &l.address.socket_address;
                    match a.address.parse::<IpAddr>() {
                        Ok(ip) if ip.is_unspecified() => {
                            wildcard.insert(a.port_value, i);
                        }
                        Ok(ip) => {
                            exact.insert((ip, a.port_value), i);
                        }
                        Err(_) => warnings.push(format!(
                            "listener {}: address {} is not an IP",
                            l.name, a.address
                        )),
                    }
                }
            }
        }
        let routes = tables
            .route_configs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut clusters = HashMap::new();
        for c in &tables.clusters {
            let eps = match &c.load_assignment {
                Some(cla) => cla.all().cloned().collect::<Vec<_>>(),
                None => tables
                    .load_assignment(&c.name)
                    .map(|cla| cla.all().cloned().collect())
                    .unwrap_or_default(),
            };
            match ClusterRt::new(c.clone(), &eps, env, stats.cluster(&c.name)) {
                Ok(rt) => {
                    clusters.insert(c.name.clone(), Arc::new(rt));
                }
                Err(e) => warnings.push(format!("cluster {}: {e}", c.name)),
            }
        }
        let route_tables = tables
            .route_configs
            .iter()
            .map(|rc| Arc::new(RouteTable::build(rc.clone(), &clusters)))
            .collect();
        let mut chain_tls = HashMap::new();
        for (li, l) in tables.listeners.iter().enumerate() {
            let chains = l
                .filter_chains
                .iter()
                .enumerate()
                .chain(l.default_filter_chain.iter().map(|c| (DEFAULT_CHAIN, c)));
            for (ci, c) in chains {
                if let Some(ts) = &c.transport_socket {
                    let r = tls::server_config(&ts.typed_config, env);
                    if let Err(e) = &r {
                        warnings.push(format!("listener {} chain {}: {e}", l.name, ci));
                    }
                    chain_tls.insert((li, ci), r);
                }
            }
        }
        Snapshot {
            tables,
            logger,
            exact,
            wildcard,
            virtual_outbound,
            virtual_inbound,
            routes,
            route_tables,
            clusters,
            chain_tls,
            warnings,
        }
    }

    /// The listener `virtualOutbound` hands a connection to: the one bound
    /// to the original destination, else `0.0.0.0:port`, else itself.
    pub fn outbound_listener(&self, ip: IpAddr, port: u16) -> Option<usize> {
        self.exact
            .get(&(ip, port))
            .or_else(|| self.wildcard.get(&port))
            .copied()
            .or(self.virtual_outbound)
    }

    /// Gateway listeners bound on a port.
    pub fn port_listener(&self, port: u16) -> Option<usize> {
        self.wildcard.get(&port).copied().or_else(|| {
            self.exact
                .iter()
                .find(|((_, p), _)| *p == port)
                .map(|(_, i)| *i)
        })
    }

    pub fn listener(&self, i: usize) -> &Listener {
        &self.tables.listeners[i]
    }

    /// A listener's chain by index ([`DEFAULT_CHAIN`]: its default chain).
    pub fn chain(&self, li: usize, ci: usize) -> Option<&FilterChain> {
        let l = self.tables.listeners.get(li)?;
        if ci == DEFAULT_CHAIN {
            l.default_filter_chain.as_ref()
        } else {
            l.filter_chains.get(ci)
        }
    }

    /// The resolved route table for an RDS name.
    pub fn route_table(&self, name: &str) -> Option<Arc<RouteTable>> {
        self.routes
            .get(name)
            .and_then(|i| self.route_tables.get(*i))
            .cloned()
    }

    /// Resolves an inline route configuration against this snapshot's clusters.
    pub fn resolve_inline(&self, rc: &RouteConfiguration) -> Arc<RouteTable> {
        Arc::new(RouteTable::build(rc.clone(), &self.clusters))
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<ClusterRt>> {
        self.clusters.get(name)
    }
}
