//! The live traffic graph behind the sandbox's page: a tap on the access
//! logs aggregates, per edge (workload to workload, service, external
//! host), requests per second, response codes and flags over a sliding
//! window, whether the hop was mutual TLS (the server's inbound line
//! carries Istio's `outbound_.PORT_...` SNI), and each client's observed
//! version split next to the weights its route table holds. Kiali's graph,
//! from the same access-log lines a user reads.
//!
//! Bounded: a fixed window of one-second buckets per edge, the last
//! [`RECENT`] requests per edge, [`TAIL`] lines per proxy, at most
//! [`MAX_EDGES`] edges.

pub mod server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshsim_compiler::world::{Pod, PodRole};
use meshsim_proxy::accesslog::LogEntry;
use serde::Serialize;

use crate::mesh::Mesh;

/// Seconds of traffic the graph shows.
pub const WINDOW_SECS: u64 = 60;
/// Requests kept per edge for the edge panel.
pub const RECENT: usize = 20;
/// Access-log lines kept per proxy for the node panel.
pub const TAIL: usize = 100;
/// Edges kept at most (external hosts could otherwise grow the map).
pub const MAX_EDGES: usize = 2000;

/// One request as the edge panel lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    pub proxy: String,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub code: u16,
    pub flags: String,
    pub details: String,
    pub line: String,
}

#[derive(Default)]
struct Bucket {
    second: u64,
    count: u64,
    codes: BTreeMap<u16, u64>,
    flags: BTreeMap<String, u64>,
    /// Destination version → requests (for splits).
    versions: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Edge {
    buckets: VecDeque<Bucket>,
    mtls: Option<bool>,
    recent: VecDeque<Recent>,
    /// The destination service, when the destination is a workload.
    service: Option<String>,
}

#[derive(Default)]
struct State {
    edges: HashMap<(String, String), Edge>,
    tails: HashMap<String, VecDeque<(String, String)>>,
}

/// The aggregate, fed by the log tap.
pub struct TrafficGraph {
    started: Instant,
    state: Mutex<State>,
}

/// A node of the page's graph.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    /// `workload`, `service`, `gateway`, `external`, `outside`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The proxy of a workload or gateway (`pod.namespace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    pub id: String,
    pub source: String,
    pub target: String,
    pub requests: u64,
    pub rps: f64,
    /// Response code → share of requests.
    pub codes: BTreeMap<String, f64>,
    /// Response flag → requests (not `-`).
    pub flags: BTreeMap<String, u64>,
    pub error_rate: f64,
    /// `None` when no server-side line told.
    pub mtls: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Share {
    pub name: String,
    pub share: f64,
}

/// A client's split across one service's versions.
#[derive(Debug, Clone, Serialize)]
pub struct Split {
    pub id: String,
    pub source: String,
    pub service: String,
    pub observed: Vec<Share>,
    /// The route's weighted clusters, by subset (percent).
    pub configured: Vec<Share>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub window_seconds: u64,
    pub nodes: Vec<Node>,
    pub edges: Vec<EdgeView>,
    pub splits: Vec<Split>,
}

/// A pod's node id and, for a workload, its service's.
fn pod_node(world: &meshsim_compiler::World, pod: &Pod) -> (String, Option<String>) {
    let workload = pod
        .owner
        .rsplit_once('/')
        .map_or(pod.name.as_str(), |(_, n)| n);
    let prefix = if pod.role == PodRole::Gateway {
        "gw"
    } else {
        "wl"
    };
    let svc = world
        .services_selecting(pod)
        .next()
        .map(|s| format!("svc:{}/{}", s.namespace, s.name));
    (format!("{prefix}:{}/{workload}", pod.namespace), svc)
}

fn pod_by_ip(world: &meshsim_compiler::World, ip: IpAddr) -> Option<&Pod> {
    world.pods.iter().find(|p| IpAddr::V4(p.ip) == ip)
}

fn host_only(authority: &str) -> &str {
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

impl TrafficGraph {
    /// Starts aggregating `mesh`'s access logs (the tap lives as long as
    /// the mesh).
    pub fn attach(mesh: &Arc<Mesh>) -> Arc<TrafficGraph> {
        let g = Arc::new(TrafficGraph {
            started: Instant::now(),
            state: Mutex::new(State::default()),
        });
        let weak_mesh = Arc::downgrade(mesh);
        let graph = g.clone();
        mesh.logs().tap(Arc::new(move |proxy, line, e| {
            if let Some(m) = weak_mesh.upgrade() {
                graph.record(&m, proxy, line, e);
            }
        }));
        g
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn record(&self, mesh: &Mesh, proxy: &str, line: &str, e: &LogEntry) {
        let world = mesh.world();
        let Some(pod) = proxy_pod(&world, proxy) else {
            return;
        };
        let now = self.now();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let tail = st.tails.entry(pod.id()).or_default();
        tail.push_back((e.flags_string(), line.trim_end().to_string()));
        while tail.len() > TAIL {
            tail.pop_front();
        }
        let (me, _) = pod_node(&world, pod);
        let cluster = e.upstream_cluster.as_deref().unwrap_or("");
        let peer = e.downstream_remote.map(|a| a.ip());
        if cluster.starts_with("inbound|") {
            // The server's line: was the hop from a meshed client mTLS?
            if let Some(client) = peer.and_then(|ip| pod_by_ip(&world, ip)) {
                let (src, _) = pod_node(&world, client);
                let mtls = e
                    .requested_server_name
                    .as_deref()
                    .is_some_and(|s| s.starts_with("outbound_"));
                // The server logs before its client does: the edge may
                // not exist yet.
                let key = (src, me);
                if st.edges.contains_key(&key) || st.edges.len() < MAX_EDGES {
                    st.edges.entry(key).or_default().mtls = Some(mtls);
                }
            }
            return;
        }
        let authority = e.req_headers.get(":authority").cloned().unwrap_or_default();
        let upstream = e
            .upstream_host
            .as_deref()
            .and_then(|h| h.parse::<std::net::SocketAddr>().ok());
        // Passed through to a Service's address (a port it does not
        // declare, say): that Service.
        let vip_service = upstream.and_then(|a| {
            world.services.iter().find(|s| {
                s.source == meshsim_compiler::world::ServiceSource::Kubernetes
                    && s.addresses.iter().any(|x| x.parse() == Ok(a.ip()))
            })
        });
        let target = upstream
            .and_then(|a| pod_by_ip(&world, a.ip()))
            .map(|p| {
                let (id, svc) = pod_node(&world, p);
                let version = p.labels.get("version").cloned();
                (id, svc, version, p.is_proxy())
            })
            .or_else(|| {
                vip_service.map(|s| (format!("svc:{}/{}", s.namespace, s.name), None, None, true))
            })
            .unwrap_or_else(|| {
                // No pod: a service that had no endpoint for it, or an
                // external host.
                let host = cluster
                    .split('|')
                    .nth(3)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .or_else(|| e.requested_server_name.clone())
                    .unwrap_or_else(|| host_only(&authority).to_string());
                let fqdn = world.resolve_host(&host, &pod.namespace);
                match world
                    .service(&fqdn)
                    .filter(|s| s.source == meshsim_compiler::world::ServiceSource::Kubernetes)
                {
                    Some(s) => (format!("svc:{}/{}", s.namespace, s.name), None, None, true),
                    None if host.is_empty() => ("ext:unknown".into(), None, None, true),
                    None => (format!("ext:{host}"), None, None, true),
                }
            });
        let flags = e.flags_string();
        let recent = Recent {
            proxy: pod.id(),
            method: e.method.clone().unwrap_or_default(),
            authority: authority.clone(),
            path: e.path.clone().unwrap_or_default(),
            code: e.response_code,
            flags: flags.clone(),
            details: e.details.clone().unwrap_or_default(),
            line: line.trim_end().to_string(),
        };
        let (dst, svc, version, server_proxy) = target;
        let mut keys = vec![(me.clone(), dst, svc, version)];
        // A gateway's request came from outside the mesh.
        let external_peer = peer.is_none_or(|ip| pod_by_ip(&world, ip).is_none());
        if pod.role == PodRole::Gateway && external_peer {
            keys.push(("outside".into(), me, None, None));
        }
        for (src, dst, svc, version) in keys {
            let src_outside = src == "outside";
            let key = (src, dst);
            if !st.edges.contains_key(&key) && st.edges.len() >= MAX_EDGES {
                // Full: forget the edges that left the window first.
                st.edges.retain(|_, e| {
                    e.buckets
                        .back()
                        .is_some_and(|b| b.second + WINDOW_SECS > now)
                });
                if st.edges.len() >= MAX_EDGES {
                    continue;
                }
            }
            let edge = st.edges.entry(key).or_default();
            if src_outside || !server_proxy {
                // Clients outside the mesh hold no mesh certificate; a
                // server without a sidecar has none to answer with.
                edge.mtls = Some(false);
            }
            if edge.service.is_none() {
                edge.service = svc;
            }
            if edge.buckets.back().is_none_or(|b| b.second != now) {
                edge.buckets.push_back(Bucket {
                    second: now,
                    ..Default::default()
                });
            }
            while edge
                .buckets
                .front()
                .is_some_and(|b| b.second + WINDOW_SECS <= now)
            {
                edge.buckets.pop_front();
            }
            if let Some(b) = edge.buckets.back_mut() {
                b.count += 1;
                *b.codes.entry(e.response_code).or_default() += 1;
                if flags != "-" {
                    for f in flags.split(',') {
                        *b.flags.entry(f.to_string()).or_default() += 1;
                    }
                }
                if let Some(v) = &version {
                    *b.versions.entry(v.clone()).or_default() += 1;
                }
            }
            edge.recent.push_back(recent.clone());
            while edge.recent.len() > RECENT {
                edge.recent.pop_front();
            }
        }
    }

    /// The graph now: every workload, its service, gateways, and the
    /// hosts and edges traffic used in the window.
    pub fn snapshot(&self, mesh: &Mesh) -> Snapshot {
        let world = mesh.world();
        let now = self.now();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for pod in &world.pods {
            let (id, svc) = pod_node(&world, pod);
            let kind = if pod.role == PodRole::Gateway {
                "gateway"
            } else {
                "workload"
            };
            let parent = svc.clone().filter(|_| kind == "workload");
            if let Some(s) = &parent {
                nodes.entry(s.clone()).or_insert_with(|| Node {
                    id: s.clone(),
                    label: s.split('/').nth(1).unwrap_or(s).to_string(),
                    kind: "service",
                    parent: None,
                    proxy: None,
                });
            }
            let workload = id.split('/').nth(1).unwrap_or(&id).to_string();
            let label = match pod.labels.get("version") {
                Some(v) if kind == "workload" => format!("{workload} ({v})"),
                _ => workload,
            };
            nodes.entry(id.clone()).or_insert_with(|| Node {
                id,
                label,
                kind,
                parent,
                proxy: pod.is_proxy().then(|| pod.id()),
            });
        }
        let Ok(st) = self.state.lock() else {
            return Snapshot {
                window_seconds: WINDOW_SECS,
                nodes: nodes.into_values().collect(),
                edges: vec![],
                splits: vec![],
            };
        };
        let mut edges = Vec::new();
        let mut per_split: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
        for ((src, dst), e) in &st.edges {
            let live: Vec<&Bucket> = e
                .buckets
                .iter()
                .filter(|b| b.second + WINDOW_SECS > now)
                .collect();
            let total: u64 = live.iter().map(|b| b.count).sum();
            if total == 0 {
                continue;
            }
            for id in [src, dst] {
                if !nodes.contains_key(id.as_str()) {
                    let (kind, label) = match id.as_str() {
                        "outside" => ("outside", "outside the mesh".to_string()),
                        other => match other.strip_prefix("ext:") {
                            Some(h) => ("external", h.to_string()),
                            None => (
                                "service",
                                other.split('/').nth(1).unwrap_or(other).to_string(),
                            ),
                        },
                    };
                    nodes.insert(
                        id.clone(),
                        Node {
                            id: id.clone(),
                            label,
                            kind,
                            parent: None,
                            proxy: None,
                        },
                    );
                }
            }
            let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
            let mut flags: BTreeMap<String, u64> = BTreeMap::new();
            for b in &live {
                for (c, n) in &b.codes {
                    *codes.entry(*c).or_default() += n;
                }
                for (f, n) in &b.flags {
                    *flags.entry(f.clone()).or_default() += n;
                }
                if let Some(svc) = &e.service {
                    let s = per_split.entry((src.clone(), svc.clone())).or_default();
                    for (v, n) in &b.versions {
                        *s.entry(v.clone()).or_default() += n;
                    }
                }
            }
            let errors: u64 = codes
                .iter()
                .filter(|(c, _)| **c >= 500 || **c == 0)
                .map(|(_, n)| n)
                .sum();
            // A rate over the window, or over the time the page has
            // watched when that is shorter: the same span for every edge.
            let span = self
                .started
                .elapsed()
                .as_secs_f64()
                .clamp(1.0, WINDOW_SECS as f64);
            edges.push(EdgeView {
                id: format!("{src}->{dst}"),
                source: src.clone(),
                target: dst.clone(),
                requests: total,
                rps: total as f64 / span,
                codes: codes
                    .iter()
                    .map(|(c, n)| (c.to_string(), *n as f64 / total as f64))
                    .collect(),
                flags,
                error_rate: errors as f64 / total as f64,
                mtls: e.mtls,
            });
        }
        drop(st);
        edges.sort_by(|a, b| a.id.cmp(&b.id));
        let splits = per_split
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|((src, svc), versions)| {
                let total: u64 = versions.values().sum::<u64>().max(1);
                let configured = configured_weights(mesh, &world, &src, &svc);
                // A split: weights configured, or more than one version
                // answering.
                if configured.len() < 2 && versions.len() < 2 {
                    return None;
                }
                Some(Split {
                    id: format!("{src}->{svc}"),
                    configured,
                    source: src,
                    service: svc,
                    observed: versions
                        .into_iter()
                        .map(|(name, n)| Share {
                            name,
                            share: n as f64 / total as f64,
                        })
                        .collect(),
                })
            })
            .collect();
        Snapshot {
            window_seconds: WINDOW_SECS,
            nodes: nodes.into_values().collect(),
            edges,
            splits,
        }
    }

    /// A proxy's kept access-log lines, with their flags.
    pub fn tail(&self, proxy: &str) -> Vec<(String, String)> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.tails.get(proxy).map(|t| t.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// The last requests on an edge (`SRC->DST`).
    pub fn recent(&self, edge: &str) -> Vec<Recent> {
        let Some((src, dst)) = edge.split_once("->") else {
            return vec![];
        };
        self.state
            .lock()
            .ok()
            .and_then(|s| {
                s.edges
                    .get(&(src.to_string(), dst.to_string()))
                    .map(|e| e.recent.iter().cloned().collect())
            })
            .unwrap_or_default()
    }
}

/// The pod a proxy id (`pod.namespace`) names.
fn proxy_pod<'w>(world: &'w meshsim_compiler::World, proxy: &str) -> Option<&'w Pod> {
    let (name, ns) = proxy.split_once('.').unwrap_or((proxy, "default"));
    world.pod(name, ns)
}

/// The weighted clusters the client's route table holds for a service
/// (`svc:NS/NAME`), by subset: what the observed split is compared with.
fn configured_weights(
    mesh: &Mesh,
    world: &meshsim_compiler::World,
    src: &str,
    svc: &str,
) -> Vec<Share> {
    let Some((ns, name)) = svc.strip_prefix("svc:").and_then(|s| s.split_once('/')) else {
        return vec![];
    };
    let host = format!("{name}.{ns}.svc.{}", world.settings.cluster_domain);
    // The source workload's first proxy.
    let Some(pod) = world.pods.iter().find(|p| pod_node(world, p).0 == src) else {
        return vec![];
    };
    let Some(proxy) = mesh.proxy(&pod.id()) else {
        return vec![];
    };
    let t = proxy.tables();
    for rc in &t.route_configs {
        for vh in &rc.virtual_hosts {
            if !vh
                .domains
                .iter()
                .any(|d| d == &host || d.starts_with(&format!("{host}:")))
            {
                continue;
            }
            for r in &vh.routes {
                if let meshsim_tables::route::RouteAction::Route(target) = &r.action {
                    if let meshsim_tables::route::ClusterSpecifier::WeightedClusters(w) =
                        &target.destination
                    {
                        let total: u32 = w.clusters.iter().map(|c| c.weight).sum::<u32>().max(1);
                        return w
                            .clusters
                            .iter()
                            .map(|c| Share {
                                name: c.name.split('|').nth(2).unwrap_or_default().to_string(),
                                share: f64::from(c.weight) / f64::from(total),
                            })
                            .collect();
                    }
                }
            }
        }
    }
    vec![]
}

/// How long the page waits between updates.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);
