//! meshsim-compiler: istiod's configuration rules as a pure function. A
//! resolved [`World`] goes in; one [`ProxyTables`] per sidecar and gateway
//! comes out, with istiod's names (`outbound|9080|v1|reviews...`,
//! `virtualInbound`, `http.8080`, `allow_any`, ...).
//!
//! Place in the data flow: model → **compiler** → tables → proxy. No tokio,
//! no hyper, no I/O. Each rule cites the istiod source it follows.
//!
//! # Layout
//! * [`world`] — pods, IPs, Services/ServiceEntries with endpoints,
//!   injection; `World::load` is the one way callers turn files into a
//!   world (with `-n` as a [`NamespaceFlag`]); `World::rebuild` keeps
//!   addresses across a change.
//! * [`store`] — the API server's store: objects by kind/namespace/name in
//!   creation order, `kubectl apply`/`delete` on it.
//! * [`ctx`] — per-proxy lookups (DestinationRule, Sidecar scope).
//! * [`clusters`] — outbound/inbound/special clusters, TLS, circuit breakers.
//! * [`routes`] — VirtualService → routes; sidecar and inbound route configs.
//! * [`sidecar`] — sidecar listeners (per-port, virtualOutbound, virtualInbound).
//! * [`gateway`] — gateway listeners and route configs.
//! * [`envoyfilter`] — EnvoyFilter patches in istiod's order.
//! * [`protocol`], [`mtls`], [`host`], [`names`], [`version`] — rules and names.
//! * [`error`] — this stage's error (a proxy or pod that is not there).

pub mod analyze;
pub mod clusters;
pub mod ctx;
pub mod envoyfilter;
pub mod error;
pub mod features;
pub mod filters;
pub mod gateway;
pub mod host;
pub mod mtls;
pub mod names;
pub mod protocol;
pub mod routes;
pub mod sidecar;
pub mod store;
pub mod version;
pub mod world;

use meshsim_model::mesh::AccessLogEncoding;
use meshsim_tables::*;

pub use error::CompileError;
pub use version::IstioVersion;
pub use world::{NamespaceFlag, Settings, World};

use crate::ctx::Ctx;
use crate::world::{Pod, PodRole};

/// Compiles the tables for one proxy.
pub fn compile_proxy(world: &World, proxy: &Pod) -> ProxyTables {
    let ctx = Ctx::new(world, proxy);
    let visible = ctx.visible_services();
    // service.go `getAllAddressesForProxy`: a proxy whose DNS proxy uses
    // auto-allocated addresses sees them as the ServiceEntries' addresses
    // (its listeners and domains); others keep none.
    let auto: Vec<world::Service> = if proxy.dns_proxy(&world.mesh, &world.features).auto_allocate {
        visible
            .iter()
            .filter_map(|s| {
                let ip = s.auto_address?;
                let mut c = (*s).clone();
                c.addresses = vec![ip.to_string()];
                Some(c)
            })
            .collect()
    } else {
        vec![]
    };
    let services: Vec<&world::Service> = visible
        .iter()
        .map(|s| {
            auto.iter()
                .find(|a| a.hostname == s.hostname && a.namespace == s.namespace)
                .unwrap_or(s)
        })
        .collect();
    let (mut clusters, endpoints) = clusters::outbound(&ctx, &services);
    let (listeners, route_configs) = if proxy.role == PodRole::Gateway {
        clusters.push(clusters::special(names::BLACKHOLE_CLUSTER));
        let g = gateway::build(&ctx);
        (g.listeners, g.route_configs)
    } else {
        let s = sidecar::build(&ctx, &services);
        clusters.extend(s.clusters);
        clusters.push(clusters::special(names::BLACKHOLE_CLUSTER));
        clusters.push(clusters::special(names::INBOUND_PASSTHROUGH_CLUSTER));
        clusters.push(clusters::special(names::PASSTHROUGH_CLUSTER));
        (s.listeners, s.route_configs)
    };
    let mesh = &world.mesh;
    let mut t = ProxyTables {
        proxy: ProxyInfo {
            id: proxy.id(),
            pod: proxy.name.clone(),
            namespace: proxy.namespace.clone(),
            kind: if proxy.role == PodRole::Gateway {
                ProxyKind::Router
            } else {
                ProxyKind::Sidecar
            },
            ip: std::net::IpAddr::V4(proxy.ip),
            istio_version: world.settings.istio_version,
            identity: proxy.identity(&mesh.trust_domain),
            labels: proxy.labels.clone(),
        },
        listeners,
        route_configs,
        clusters,
        endpoints,
        access_log: AccessLogConfig {
            path: mesh.access_log_file.clone(),
            encoding: match mesh.access_log_encoding {
                AccessLogEncoding::Text => LogEncoding::Text,
                AccessLogEncoding::Json => LogEncoding::Json,
            },
            format: mesh.access_log_format.clone(),
        },
        envoy_filter_patches: vec![],
        accept_http_10: mesh.http10,
    };
    envoyfilter::apply(&ctx, &mut t);
    t
}

/// Compiles every proxy of the world, in proxy-id order.
pub fn compile_all(world: &World) -> Vec<ProxyTables> {
    let mut v: Vec<ProxyTables> = world.proxies().map(|p| compile_proxy(world, p)).collect();
    v.sort_by(|a, b| a.proxy.id.cmp(&b.proxy.id));
    v
}

/// Finds a proxy as istioctl names it: `POD[.NAMESPACE]` or
/// `deploy/NAME[.NAMESPACE]` (first pod of the Deployment).
pub fn find_proxy<'w>(world: &'w World, name: &str) -> Result<&'w Pod, CompileError> {
    match find_pod(world, name)? {
        Some(p) if p.is_proxy() => Ok(p),
        Some(p) => Err(CompileError::NoSidecar {
            pod: p.name.clone(),
            namespace: p.namespace.clone(),
        }),
        None => {
            let known: Vec<String> = world.proxies().map(Pod::id).collect();
            Err(CompileError::NoProxy {
                name: name.to_string(),
                known: known.join(", "),
            })
        }
    }
}

/// Finds a pod, with or without a sidecar, named as [`find_proxy`] takes it.
pub fn find_pod<'w>(world: &'w World, name: &str) -> Result<Option<&'w Pod>, CompileError> {
    let (kind, rest) = match name.split_once('/') {
        Some((k, r)) => (Some(k), r),
        None => (None, name),
    };
    let (n, ns) = match rest.split_once('.') {
        Some((n, ns)) => (n, ns),
        None => (rest, world.settings.default_namespace.as_str()),
    };
    let found = match kind {
        None | Some("pod" | "pods") => world.pods.iter().find(|p| p.name == n && p.namespace == ns),
        Some("deploy" | "deployment" | "deployments") => {
            let want = format!("Deployment/{n}");
            world
                .pods
                .iter()
                .find(|p| p.owner == want && p.namespace == ns)
        }
        Some("statefulset" | "sts") => {
            let want = format!("StatefulSet/{n}");
            world
                .pods
                .iter()
                .find(|p| p.owner == want && p.namespace == ns)
        }
        Some(k) => return Err(CompileError::UnsupportedKind(k.to_string())),
    };
    Ok(found)
}
