//! What the mesh runs for a world, as plain data apart from starting any
//! of it: pods with their application and proxy, kube-proxy's service map,
//! cluster DNS, the internet hosts ServiceEntries name, and the addresses
//! gateways are reached at from outside. Comparing the plan of a change
//! with the running one tells the mesh exactly what to start, stop or
//! restart; everything else only gets new tables.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use meshsim_compiler::protocol::Protocol;
use meshsim_compiler::world::{Pod, PodRole, Resolution, ServiceSource, APP_ANNOTATION};
use meshsim_compiler::World;
use meshsim_model::common::IntOrString;

use crate::apps::{self, AppKind, EchoIdentity};
use crate::nginx::NginxConf;

/// Everything the mesh runs.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub pods: BTreeMap<Ipv4Addr, PodPlan>,
    /// ClusterIP:port → endpoint pod IP:targetPort.
    pub vips: HashMap<SocketAddr, Vec<SocketAddr>>,
    /// Cluster DNS: fully qualified name → address.
    pub dns: BTreeMap<String, IpAddr>,
    /// Names only some resolvers know: the internet's DNS for declared
    /// hosts, Istio's DNS proxy tables.
    pub names: crate::network::NameTables,
    /// Internet hosts ServiceEntries name, served by an external server.
    pub external_hosts: BTreeMap<String, ExternalHost>,
    /// Gateway Service outside address and port → where it goes.
    pub ingress: BTreeMap<(Ipv4Addr, u16), Ingress>,
}

/// One pod: what listens in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    /// The built-in application (none for client pods and gateways).
    pub app: Option<AppPlan>,
    pub proxy: Option<ProxyPlan>,
    /// The sidecar's DNS proxy.
    pub dns: meshsim_compiler::world::DnsProxy,
}

/// A pod's application: which one, on which ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlan {
    pub kind: AppKind,
    pub ports: Vec<u16>,
    pub identity: EchoIdentity,
    /// nginx with a mounted nginx.conf proxies; otherwise it serves.
    pub nginx: Option<Arc<NginxConf>>,
    /// Problems with its annotations (reported when it starts).
    pub warnings: Vec<String>,
    /// `meshsim.io/app: "cmd:..."`: the command line meshsim runs.
    pub command: Option<String>,
}

/// A pod's sidecar or gateway proxy: what makes it a different process
/// (its identity, its Istio version); its tables are pushed, not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPlan {
    pub id: String,
    /// SPIFFE identity of its certificate.
    pub identity: String,
    pub istio_version: String,
    pub gateway: bool,
    /// Its place in proxy-id order, which seeds its random choices.
    pub seed_index: u64,
}

/// An internet host: its address and the ports its server answers on
/// (TLS where the real host would speak it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalHost {
    pub ip: IpAddr,
    /// ServiceEntry `addresses` that reach the same server.
    pub vips: Vec<IpAddr>,
    pub ports: Vec<(u16, bool)>,
}

/// Where an outside address of a gateway Service goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The gateway Service, `NAME.NAMESPACE`.
    pub service: String,
    /// The proxy id of the replica the load balancer sends to.
    pub proxy: String,
    /// The container port its listener binds.
    pub target_port: u16,
}

/// The first address internet hosts get (TEST-NET-3).
const EXTERNAL_BASE: [u8; 4] = [203, 0, 113, 10];

/// Plans `world`. Internet hosts that existed in `previous` keep their
/// addresses, as pods and ClusterIPs do.
pub fn plan(world: &World, previous: Option<&Topology>) -> Topology {
    let mut t = Topology::default();
    let proxy_ids: Vec<String> = {
        let mut v: Vec<String> = world.proxies().map(Pod::id).collect();
        v.sort();
        v
    };
    for pod in &world.pods {
        let seed_index = proxy_ids.iter().position(|id| *id == pod.id());
        t.pods.insert(pod.ip, pod_plan(world, pod, seed_index));
    }
    services(world, &mut t);
    external_hosts(world, previous, &mut t);
    name_tables(world, &mut t);
    ingress(world, &mut t);
    t
}

fn pod_plan(world: &World, pod: &Pod, seed_index: Option<usize>) -> PodPlan {
    let proxy = pod.is_proxy().then(|| ProxyPlan {
        id: pod.id(),
        identity: pod.identity(&world.mesh.trust_domain),
        istio_version: world.settings.istio_version.to_string(),
        gateway: pod.role == PodRole::Gateway,
        seed_index: seed_index.unwrap_or(0) as u64,
    });
    PodPlan {
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        ip: pod.ip,
        app: app_plan(world, pod),
        proxy,
        dns: pod.dns_proxy(&world.mesh, &world.features),
    }
}

/// A replica's fixed answer status (see [`apps`]).
pub const APP_STATUS_ANNOTATION: &str = "meshsim.io/app-status";

fn app_plan(world: &World, pod: &Pod) -> Option<AppPlan> {
    if pod.role == PodRole::Gateway {
        return None;
    }
    let annotation = pod.annotations.get(APP_ANNOTATION).map(String::as_str);
    let kind = apps::app_for(&pod.image, annotation);
    if kind == AppKind::Client {
        return None;
    }
    let mut ports: Vec<u16> = pod.container_ports.iter().map(|(p, _)| *p).collect();
    for svc in world.services_selecting(pod) {
        for sp in &svc.ports {
            if let Some(tp) = pod.resolve_target_port(&sp.target_port, sp.port) {
                ports.push(tp);
            }
        }
    }
    let nginx = (kind == AppKind::Nginx)
        .then(|| nginx_config(world, pod))
        .flatten();
    if let Some(conf) = &nginx {
        ports.extend(conf.listen.iter().copied());
    }
    ports.sort_unstable();
    ports.dedup();
    let mut warnings = Vec::new();
    let calls = match pod.annotations.get(crate::graph::CALLS_ANNOTATION) {
        Some(text) => {
            let (rules, errors) = crate::graph::parse(text);
            warnings.extend(errors.into_iter().map(|e| format!("pod {}: {e}", pod.id())));
            rules
        }
        None => Vec::new(),
    };
    let delay = pod
        .annotations
        .get(crate::graph::DELAY_ANNOTATION)
        .and_then(|d| match meshsim_model::common::Duration::parse(d.trim()) {
            Ok(d) => Some(std::time::Duration::from_millis(d.millis)),
            Err(e) => {
                warnings.push(format!(
                    "pod {}: {}: {e}",
                    pod.id(),
                    crate::graph::DELAY_ANNOTATION
                ));
                None
            }
        });
    let command = annotation
        .and_then(|a| a.strip_prefix("cmd:"))
        .map(|c| c.trim().to_string());
    Some(AppPlan {
        kind,
        ports,
        warnings,
        command,
        identity: EchoIdentity {
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            version: pod
                .labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| "v1".into()),
            host: None,
            status: pod
                .annotations
                .get(APP_STATUS_ANNOTATION)
                .and_then(|s| s.trim().parse().ok()),
            bookinfo: crate::bookinfo::role(&pod.image),
            httpbin: crate::httpbin::is_httpbin(&pod.image),
            calls,
            delay,
        },
        nginx,
    })
}

/// The nginx.conf of a pod: the first mounted ConfigMap value with nginx
/// directives in it.
fn nginx_config(world: &World, pod: &Pod) -> Option<Arc<NginxConf>> {
    pod.config_maps
        .iter()
        .filter_map(|cm| {
            world
                .config_maps
                .iter()
                .find(|c| c.meta.name == *cm && c.meta.ns() == pod.namespace)
        })
        .flat_map(|c| c.spec.values())
        .find(|v| v.contains("proxy_pass") || v.contains("listen"))
        .map(|text| Arc::new(crate::nginx::parse(text)))
}

/// kube-proxy's map and cluster DNS. The first name wins, as before.
fn services(world: &World, t: &mut Topology) {
    let mut add_dns = |name: &str, ip: IpAddr| {
        t.dns
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_insert(ip);
    };
    for svc in world
        .services
        .iter()
        .filter(|s| s.source == ServiceSource::Kubernetes)
    {
        for vip in svc
            .addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
        {
            add_dns(&svc.hostname, vip);
            for p in &svc.ports {
                let eps = svc
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        Some(SocketAddr::new(
                            e.address.parse().ok()?,
                            *e.ports.get(&p.port)?,
                        ))
                    })
                    .collect();
                t.vips.insert(SocketAddr::new(vip, p.port), eps);
            }
        }
        if svc.resolution == Resolution::Passthrough {
            if let Some(first) = svc.endpoints.first().and_then(|e| e.address.parse().ok()) {
                add_dns(&svc.hostname, first);
            }
        }
    }
    for pod in &world.pods {
        // StatefulSet pods behind a headless Service: web-0.nginx.NS.svc.DOMAIN.
        if pod.owner.starts_with("StatefulSet/") {
            for svc in world.services_selecting(pod).filter(|s| s.is_headless()) {
                add_dns(
                    &format!("{}.{}", pod.name, svc.hostname),
                    IpAddr::V4(pod.ip),
                );
            }
        }
    }
}

/// Istio's DNS proxy tables (pkg/dns/server/name_table.go): ServiceEntry
/// hosts with addresses, and those auto-allocation addressed.
fn name_tables(world: &World, t: &mut Topology) {
    for svc in world
        .services
        .iter()
        .filter(|s| s.source == ServiceSource::ServiceEntry && !s.hostname.starts_with('*'))
    {
        let host = svc.hostname.to_ascii_lowercase();
        if let Some(ip) = svc
            .addresses
            .iter()
            .find_map(|a| a.parse::<IpAddr>().ok().filter(|ip| !ip.is_unspecified()))
        {
            t.names.capture.entry(host.clone()).or_insert(ip);
        }
        if let Some(ip) = svc.auto_address {
            t.names.auto.entry(host).or_insert(IpAddr::V4(ip));
        }
    }
}

/// Internet hosts: every ServiceEntry host that is not a cluster name.
fn external_hosts(world: &World, previous: Option<&Topology>, t: &mut Topology) {
    let domain = &world.settings.cluster_domain;
    let mut hosts: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for svc in &world.services {
        let internet = svc.source != ServiceSource::Kubernetes
            && !svc.hostname.starts_with('*')
            && !svc.hostname.ends_with(&format!(".svc.{domain}"));
        if internet && !hosts.contains_key(&svc.hostname) {
            hosts.insert(
                svc.hostname.clone(),
                svc.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .collect(),
            );
        }
    }
    // Keep the addresses hosts had; give new ones the first free address.
    let old = |h: &str| previous.and_then(|p| p.external_hosts.get(h)).map(|e| e.ip);
    let mut used: Vec<IpAddr> = hosts.keys().filter_map(|h| old(h)).collect();
    let mut next = u32::from(Ipv4Addr::from(EXTERNAL_BASE));
    for (host, vips) in hosts {
        let ip = old(&host).unwrap_or_else(|| loop {
            let candidate = IpAddr::V4(Ipv4Addr::from(next));
            next += 1;
            if !used.contains(&candidate) {
                used.push(candidate);
                break candidate;
            }
        });
        t.names.external.entry(host.clone()).or_insert(ip);
        let ports = external_ports(world, &host);
        t.external_hosts
            .insert(host, ExternalHost { ip, vips, ports });
    }
}

/// The ports an internet host serves: the usual ones plus every port (and
/// targetPort) ServiceEntries declare for it; TLS where the real host would
/// speak it (443, 8443, HTTPS/TLS ports). TLS wins when a port is listed
/// both ways.
fn external_ports(world: &World, host: &str) -> Vec<(u16, bool)> {
    let mut ports: Vec<(u16, bool)> = vec![(80, false), (443, true), (8080, false), (8443, true)];
    for svc in world.services.iter().filter(|s| s.hostname == host) {
        for p in &svc.ports {
            let tls = matches!(p.protocol, Protocol::Https | Protocol::Tls);
            ports.push((p.port, tls || p.port == 443));
            if let Some(IntOrString::Int(t)) = &p.target_port {
                if let Ok(t) = u16::try_from(*t) {
                    ports.push((t, t == 443 || t == 8443 || tls));
                }
            }
        }
    }
    ports.sort_unstable_by_key(|(p, tls)| (*p, !*tls));
    ports.dedup_by_key(|(p, _)| *p);
    ports
}

/// Each gateway Service's outside address and ports go to its first
/// replica (the load balancer's choice).
fn ingress(world: &World, t: &mut Topology) {
    for pod in world.pods.iter().filter(|p| p.role == PodRole::Gateway) {
        for svc in world.services_selecting(pod) {
            let Some(external) = svc.external_ip else {
                continue;
            };
            for sp in &svc.ports {
                let Some(tp) = pod.resolve_target_port(&sp.target_port, sp.port) else {
                    continue;
                };
                t.ingress.entry((external, sp.port)).or_insert(Ingress {
                    service: format!("{}.{}", svc.name, svc.namespace),
                    proxy: pod.id(),
                    target_port: tp,
                });
            }
        }
    }
}

/// What a change does to the running pieces.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Pods whose application starts, restarts or stops.
    pub apps: Vec<Ipv4Addr>,
    /// Pods whose proxy starts, restarts or stops.
    pub proxies: Vec<Ipv4Addr>,
    /// Internet hosts that start, restart or stop.
    pub external_hosts: Vec<String>,
    /// Outside addresses that open, move or close.
    pub ingress: Vec<(Ipv4Addr, u16)>,
}

impl Diff {
    /// Compares two plans: what differs must be (re)started or stopped.
    pub fn between(old: &Topology, new: &Topology) -> Diff {
        let mut d = Diff::default();
        let ips: std::collections::BTreeSet<&Ipv4Addr> =
            old.pods.keys().chain(new.pods.keys()).collect();
        for ip in ips {
            let (o, n) = (old.pods.get(ip), new.pods.get(ip));
            let same_pod = o.map(|p| (&p.name, &p.namespace)) == n.map(|p| (&p.name, &p.namespace));
            if !same_pod || o.and_then(|p| p.app.as_ref()) != n.and_then(|p| p.app.as_ref()) {
                d.apps.push(*ip);
            }
            if !same_pod || o.and_then(|p| p.proxy.as_ref()) != n.and_then(|p| p.proxy.as_ref()) {
                d.proxies.push(*ip);
            }
        }
        let hosts: std::collections::BTreeSet<&String> = old
            .external_hosts
            .keys()
            .chain(new.external_hosts.keys())
            .collect();
        for h in hosts {
            if old.external_hosts.get(h) != new.external_hosts.get(h) {
                d.external_hosts.push(h.clone());
            }
        }
        let keys: std::collections::BTreeSet<&(Ipv4Addr, u16)> =
            old.ingress.keys().chain(new.ingress.keys()).collect();
        for k in keys {
            if old.ingress.get(k) != new.ingress.get(k) {
                d.ingress.push(*k);
            }
        }
        d
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.proxies.is_empty()
            && self.external_hosts.is_empty()
            && self.ingress.is_empty()
    }
}
