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

use meshsim_compiler::world::PodRole;
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
    pub line: Arc<str>,
}

#[derive(Default)]
struct Bucket {
    second: u64,
    count: u64,
    codes: BTreeMap<u16, u64>,
    flags: BTreeMap<String, u64>,
    /// Destination version → requests (for splits).
    versions: BTreeMap<Arc<str>, u64>,
}

#[derive(Default)]
struct Edge {
    buckets: VecDeque<Bucket>,
    mtls: Option<bool>,
    recent: VecDeque<Arc<Recent>>,
    /// The destination service, when the destination is a workload.
    service: Option<Arc<str>>,
}

/// What the lines made of the traffic.
#[derive(Default)]
struct Traffic {
    edges: HashMap<(Arc<str>, Arc<str>), Edge>,
    tails: HashMap<Arc<str>, VecDeque<(String, Arc<str>)>>,
}

#[derive(Default)]
struct State {
    traffic: Traffic,
    /// Lookups for the world the lines come from (rebuilt when a change
    /// replaces it): nothing scans pods or services per line or snapshot.
    index: Option<Index>,
}

impl State {
    /// The index for `mesh`'s world now (built when the world changed),
    /// beside the traffic.
    fn split(&mut self, mesh: &Mesh) -> (&Index, &mut Traffic) {
        let world = mesh.world();
        let State { traffic, index } = self;
        if index
            .as_ref()
            .is_none_or(|i| !Arc::ptr_eq(&i.world, &world))
        {
            *index = Some(Index::new(world.clone()));
        }
        let ix = index.get_or_insert_with(|| Index::new(world));
        (ix, traffic)
    }
}

/// A pod as the graph names it.
struct PodNode {
    /// `pod.namespace` (its proxy's id).
    id: Arc<str>,
    namespace: Arc<str>,
    /// `WORKLOAD (VERSION)` for a workload, `WORKLOAD` for a gateway.
    label: String,
    /// `wl:NS/WORKLOAD` or `gw:NS/WORKLOAD`.
    node: Arc<str>,
    /// `svc:NS/NAME` of a Service selecting it.
    service: Option<Arc<str>>,
    version: Option<Arc<str>>,
    proxy: bool,
    gateway: bool,
}

struct Index {
    world: Arc<meshsim_compiler::World>,
    by_ip: HashMap<IpAddr, Arc<PodNode>>,
    by_proxy: HashMap<Arc<str>, Arc<PodNode>>,
    /// A workload's first pod (world order), by node id.
    by_node: HashMap<Arc<str>, Arc<PodNode>>,
    /// Kubernetes Service addresses → `svc:NS/NAME`.
    vips: HashMap<IpAddr, Arc<str>>,
    outside: Arc<str>,
}

impl Index {
    fn new(world: Arc<meshsim_compiler::World>) -> Index {
        let mut by_ip = HashMap::new();
        let mut by_proxy = HashMap::new();
        let mut by_node = HashMap::new();
        for pod in &world.pods {
            let workload = pod
                .owner
                .rsplit_once('/')
                .map_or(pod.name.as_str(), |(_, n)| n);
            let gateway = pod.role == PodRole::Gateway;
            let prefix = if gateway { "gw" } else { "wl" };
            let version = pod.labels.get("version");
            let n = Arc::new(PodNode {
                id: pod.id().into(),
                namespace: pod.namespace.as_str().into(),
                label: match version {
                    Some(v) if !gateway => format!("{workload} ({v})"),
                    _ => workload.to_string(),
                },
                node: format!("{prefix}:{}/{workload}", pod.namespace).into(),
                service: world
                    .services_selecting(pod)
                    .next()
                    .map(|s| format!("svc:{}/{}", s.namespace, s.name).into()),
                version: version.map(|v| v.as_str().into()),
                proxy: pod.is_proxy(),
                gateway,
            });
            by_ip.insert(IpAddr::V4(pod.ip), n.clone());
            by_node.entry(n.node.clone()).or_insert_with(|| n.clone());
            by_proxy.insert(n.id.clone(), n);
        }
        let vips = world
            .services
            .iter()
            .filter(|s| s.source == meshsim_compiler::world::ServiceSource::Kubernetes)
            .flat_map(|s| {
                let node: Arc<str> = format!("svc:{}/{}", s.namespace, s.name).into();
                s.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(move |ip| (ip, node.clone()))
            })
            .collect();
        Index {
            world,
            by_ip,
            by_proxy,
            by_node,
            vips,
            outside: "outside".into(),
        }
    }
}

impl Traffic {
    fn record(&mut self, ix: &Index, now: u64, proxy: &str, line: &Arc<str>, e: &LogEntry) {
        let Some(pod) = ix.by_proxy.get(proxy) else {
            return;
        };
        let flags = e.flags_string();
        let tail = self.tails.entry(pod.id.clone()).or_default();
        tail.push_back((flags.clone(), line.clone()));
        while tail.len() > TAIL {
            tail.pop_front();
        }
        let me = pod.node.clone();
        let cluster = e.upstream_cluster.as_deref().unwrap_or("");
        let peer = e.downstream_remote.map(|a| a.ip());
        if cluster.starts_with("inbound|") {
            // The server's line: was the hop from a meshed client mTLS?
            if let Some(client) = peer.and_then(|ip| ix.by_ip.get(&ip)) {
                let mtls = e
                    .requested_server_name
                    .as_deref()
                    .is_some_and(|s| s.starts_with("outbound_"));
                // The server logs before its client does: the edge may
                // not exist yet.
                let key = (client.node.clone(), me);
                if self.edges.contains_key(&key) || self.edges.len() < MAX_EDGES {
                    self.edges.entry(key).or_default().mtls = Some(mtls);
                }
            }
            return;
        }
        let authority = e.req_headers.get(":authority").map_or("", String::as_str);
        let upstream = e
            .upstream_host
            .as_deref()
            .and_then(|h| h.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip());
        let (dst, svc, version, server_proxy) = match upstream.and_then(|ip| ix.by_ip.get(&ip)) {
            Some(p) => (
                p.node.clone(),
                p.service.clone(),
                p.version.clone(),
                p.proxy,
            ),
            // Passed through to a Service's address (a port it does not
            // declare, say): that Service.
            None => match upstream.and_then(|ip| ix.vips.get(&ip)) {
                Some(s) => (s.clone(), None, None, true),
                None => {
                    // No pod: a service that had no endpoint for it, or
                    // an external host.
                    let host = cluster
                        .split('|')
                        .nth(3)
                        .filter(|h| !h.is_empty())
                        .or(e.requested_server_name.as_deref())
                        .unwrap_or_else(|| host_only(authority));
                    let fqdn = ix.world.resolve_host(host, &pod.namespace);
                    let node: Arc<str> =
                        match ix.world.service(&fqdn).filter(|s| {
                            s.source == meshsim_compiler::world::ServiceSource::Kubernetes
                        }) {
                            Some(s) => format!("svc:{}/{}", s.namespace, s.name).into(),
                            None if host.is_empty() => "ext:unknown".into(),
                            None => format!("ext:{host}").into(),
                        };
                    (node, None, None, true)
                }
            },
        };
        let recent = Arc::new(Recent {
            proxy: pod.id.to_string(),
            method: e.method.clone().unwrap_or_default(),
            authority: authority.to_string(),
            path: e.path.clone().unwrap_or_default(),
            code: e.response_code,
            flags: flags.clone(),
            details: e.details.clone().unwrap_or_default(),
            line: line.clone(),
        });
        let mut keys = vec![(me.clone(), dst, svc, version)];
        // A gateway's request came from outside the mesh.
        let external_peer = peer.is_none_or(|ip| !ix.by_ip.contains_key(&ip));
        if pod.gateway && external_peer {
            keys.push((ix.outside.clone(), me, None, None));
        }
        for (src, dst, svc, version) in keys {
            let src_outside = Arc::ptr_eq(&src, &ix.outside);
            let key = (src, dst);
            if !self.edges.contains_key(&key) && self.edges.len() >= MAX_EDGES {
                // Full: forget the edges that left the window first.
                self.edges.retain(|_, e| {
                    e.buckets
                        .back()
                        .is_some_and(|b| b.second + WINDOW_SECS > now)
                });
                if self.edges.len() >= MAX_EDGES {
                    continue;
                }
            }
            let edge = self.edges.entry(key).or_default();
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
                        match b.flags.get_mut(f) {
                            Some(n) => *n += 1,
                            None => {
                                b.flags.insert(f.to_string(), 1);
                            }
                        }
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

    fn record(&self, mesh: &Mesh, proxy: &str, line: &Arc<str>, e: &LogEntry) {
        let now = self.now();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let (ix, traffic) = st.split(mesh);
        traffic.record(ix, now, proxy, line, e);
    }

    /// The graph now: every workload, its service, gateways, and the
    /// hosts and edges traffic used in the window.
    pub fn snapshot(&self, mesh: &Mesh) -> Snapshot {
        let now = self.now();
        let Ok(mut st) = self.state.lock() else {
            return Snapshot {
                window_seconds: WINDOW_SECS,
                nodes: vec![],
                edges: vec![],
                splits: vec![],
            };
        };
        let (ix, traffic) = st.split(mesh);
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for pod in ix.by_proxy.values() {
            let parent = pod.service.as_deref().filter(|_| !pod.gateway);
            if let Some(s) = parent {
                nodes.entry(s.to_string()).or_insert_with(|| Node {
                    id: s.to_string(),
                    label: s.split('/').nth(1).unwrap_or(s).to_string(),
                    kind: "service",
                    parent: None,
                    proxy: None,
                });
            }
            nodes.entry(pod.node.to_string()).or_insert_with(|| Node {
                id: pod.node.to_string(),
                label: pod.label.clone(),
                kind: if pod.gateway { "gateway" } else { "workload" },
                parent: parent.map(str::to_string),
                // The workload's first pod answers for it.
                proxy: ix.by_node[&pod.node]
                    .proxy
                    .then(|| ix.by_node[&pod.node].id.to_string()),
            });
        }
        let mut edges = Vec::new();
        let mut per_split: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
        for ((src, dst), e) in &traffic.edges {
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
                if !nodes.contains_key(&**id) {
                    let (kind, label) = match &**id {
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
                        id.to_string(),
                        Node {
                            id: id.to_string(),
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
                    let s = per_split
                        .entry((src.to_string(), svc.to_string()))
                        .or_default();
                    for (v, n) in &b.versions {
                        *s.entry(v.to_string()).or_default() += n;
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
                source: src.to_string(),
                target: dst.to_string(),
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
        edges.sort_by(|a, b| a.id.cmp(&b.id));
        let splits = per_split
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|((src, svc), versions)| {
                let total: u64 = versions.values().sum::<u64>().max(1);
                let configured = configured_weights(mesh, ix, &src, &svc);
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
            .and_then(|s| {
                s.traffic
                    .tails
                    .get(proxy)
                    .map(|t| t.iter().map(|(f, l)| (f.clone(), l.to_string())).collect())
            })
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
                s.traffic
                    .edges
                    .get(&(Arc::from(src), Arc::from(dst)))
                    .map(|e| e.recent.iter().map(|r| (**r).clone()).collect())
            })
            .unwrap_or_default()
    }
}

/// The weighted clusters the client's route table holds for a service
/// (`svc:NS/NAME`), by subset: what the observed split is compared with.
fn configured_weights(mesh: &Mesh, ix: &Index, src: &str, svc: &str) -> Vec<Share> {
    let Some((ns, name)) = svc.strip_prefix("svc:").and_then(|s| s.split_once('/')) else {
        return vec![];
    };
    let host = format!("{name}.{ns}.svc.{}", ix.world.settings.cluster_domain);
    // The source workload's first proxy.
    let Some(proxy) = ix.by_node.get(src).and_then(|p| mesh.proxy(&p.id)) else {
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
