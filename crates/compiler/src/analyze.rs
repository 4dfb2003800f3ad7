//! `meshsim analyze`: a subset of `istioctl analyze` (istio
//! `pkg/config/analysis/analyzers`), with its message codes and words, on
//! the configuration as given. Pure: no network, no proxies.

use std::fmt;

use crate::host;
use crate::protocol::Protocol;
use crate::routes::resolve_gateway;
use crate::world::{ServiceSource, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One finding, printed as istioctl prints it:
/// `Error [IST0101] (VirtualService reviews.default) Referenced host not found: "reviewss"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub code: &'static str,
    /// `Kind name.namespace` (or `Namespace name`).
    pub resource: String,
    pub namespace: String,
    pub text: String,
    /// Where the resource was declared (`file:line`).
    pub origin: String,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        };
        write!(
            f,
            "{level} [{}] ({}) {}",
            self.code, self.resource, self.text
        )
    }
}

/// Runs the analyzers on every namespace (or only `namespace`).
pub fn analyze(world: &World, namespace: Option<&str>) -> Vec<Message> {
    let mut out = Vec::new();
    virtual_service_references(world, &mut out);
    gateway_hosts(world, &mut out);
    port_names(world, &mut out);
    injection(world, &mut out);
    out.retain(|m| namespace.is_none_or(|ns| m.namespace == ns));
    out.sort_by(|a, b| (a.level, &a.resource, &a.text).cmp(&(b.level, &b.resource, &b.text)));
    out.dedup();
    out
}

fn msg(
    level: Level,
    code: &'static str,
    kind: &str,
    meta: &meshsim_model::Meta,
    text: String,
) -> Message {
    Message {
        level,
        code,
        resource: format!("{kind} {}.{}", meta.name, meta.ns()),
        namespace: meta.ns().to_string(),
        text,
        origin: meta.origin.to_string(),
    }
}

/// IST0101 ReferencedResourceNotFound (virtualservice/destinationhosts.go,
/// destinationrules.go, gateways.go): destination hosts, host+subset pairs
/// and gateways that do not exist.
fn virtual_service_references(world: &World, out: &mut Vec<Message>) {
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        let dests = vs
            .spec
            .http
            .iter()
            .flat_map(|h| h.route.iter().map(|r| &r.destination))
            .chain(
                vs.spec
                    .tcp
                    .iter()
                    .flat_map(|t| t.route.iter().map(|r| &r.destination)),
            )
            .chain(
                vs.spec
                    .tls
                    .iter()
                    .flat_map(|t| t.route.iter().map(|r| &r.destination)),
            );
        for d in dests {
            let fqdn = world.resolve_host(&d.host, ns);
            if !host_exists(world, &fqdn) {
                out.push(msg(
                    Level::Error,
                    "IST0101",
                    "VirtualService",
                    &vs.meta,
                    format!("Referenced host not found: {:?}", d.host),
                ));
            }
            if let Some(subset) = &d.subset {
                if !subset_exists(world, &fqdn, subset) {
                    out.push(msg(
                        Level::Error,
                        "IST0101",
                        "VirtualService",
                        &vs.meta,
                        format!(
                            "Referenced host+subset in destinationrule not found: \"{}+{subset}\"",
                            d.host
                        ),
                    ));
                }
            }
        }
        for g in &vs.spec.gateways {
            if g == "mesh" {
                continue;
            }
            let full = resolve_gateway(g, ns);
            if find_gateway(world, &full).is_none() {
                out.push(msg(
                    Level::Error,
                    "IST0101",
                    "VirtualService",
                    &vs.meta,
                    format!("Referenced gateway not found: {g:?}"),
                ));
            }
        }
    }
}

/// A Gateway by `namespace/name`.
fn find_gateway<'w>(
    world: &'w World,
    full: &str,
) -> Option<&'w meshsim_model::Object<meshsim_model::gateway::GatewaySpec>> {
    world
        .gateways
        .iter()
        .find(|gw| full.split_once('/') == Some((gw.meta.ns(), gw.meta.name.as_str())))
}

fn host_exists(world: &World, fqdn: &str) -> bool {
    world.services.iter().any(|s| {
        s.hostname.eq_ignore_ascii_case(fqdn)
            || (s.source == ServiceSource::ServiceEntry && host::matches(&s.hostname, fqdn))
    })
}

fn subset_exists(world: &World, fqdn: &str, subset: &str) -> bool {
    world.destination_rules.iter().any(|dr| {
        let h = world.resolve_host(&dr.spec.host, dr.meta.ns());
        host::matches(&h, fqdn) && dr.spec.subsets.iter().any(|s| s.name == subset)
    })
}

/// IST0132 VirtualServiceHostNotFoundInGateway (virtualservice/gateways.go).
fn gateway_hosts(world: &World, out: &mut Vec<Message>) {
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        for g in vs.spec.gateways.iter().filter(|g| *g != "mesh") {
            let full = resolve_gateway(g, ns);
            let Some(gw) = find_gateway(world, &full) else {
                continue;
            };
            let server_hosts: Vec<&str> = gw
                .spec
                .servers
                .iter()
                .flat_map(|s| &s.hosts)
                .map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h))
                .collect();
            let missing: Vec<&str> = vs
                .spec
                .hosts
                .iter()
                .map(String::as_str)
                .filter(|h| !server_hosts.iter().any(|g| host::intersects(g, h)))
                .collect();
            if !missing.is_empty() {
                out.push(msg(
                    Level::Warning,
                    "IST0132",
                    "VirtualService",
                    &vs.meta,
                    format!(
                        "one or more host [{}] defined in VirtualService {}/{} not found in Gateway {full}.",
                        missing.join(" "),
                        ns,
                        vs.meta.name
                    ),
                ));
            }
        }
    }
}

/// IST0118 PortNameIsNotUnderNamingConvention (service/portname.go): a
/// named port with no `appProtocol` whose name selects no protocol.
fn port_names(world: &World, out: &mut Vec<Message>) {
    for s in world
        .services
        .iter()
        .filter(|s| s.source == ServiceSource::Kubernetes)
    {
        for p in &s.ports {
            if !p.name.is_empty() && p.protocol == Protocol::Unsupported {
                let target = match &p.target_port {
                    Some(meshsim_model::common::IntOrString::Int(t)) => t.to_string(),
                    Some(meshsim_model::common::IntOrString::Str(t)) => t.clone(),
                    None => p.port.to_string(),
                };
                out.push(Message {
                    level: Level::Info,
                    code: "IST0118",
                    resource: format!("Service {}.{}", s.name, s.namespace),
                    namespace: s.namespace.clone(),
                    text: format!(
                        "Port name {} (port: {}, targetPort: {target}) doesn't follow the naming convention of Istio port.",
                        p.name, p.port
                    ),
                    origin: s.origin.to_string(),
                });
            }
        }
    }
}

/// IST0102 NamespaceNotInjected (injection/injection.go): a declared
/// namespace with pods and no injection label either way.
fn injection(world: &World, out: &mut Vec<Message>) {
    for ns in world.namespaces.values().filter(|n| n.declared) {
        let labelled =
            ns.labels.contains_key("istio-injection") || ns.labels.contains_key("istio.io/rev");
        let has_pods = world.pods.iter().any(|p| p.namespace == ns.name);
        if !labelled && has_pods && ns.name != "istio-system" {
            out.push(Message {
                level: Level::Info,
                code: "IST0102",
                resource: format!("Namespace {}", ns.name),
                namespace: ns.name.clone(),
                text: format!(
                    "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {0} istio-injection=enabled' to enable it, or 'kubectl label namespace {0} istio-injection=disabled' to explicitly mark it as not needing injection.",
                    ns.name
                ),
                origin: String::new(),
            });
        }
    }
}
