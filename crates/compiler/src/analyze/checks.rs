//! meshsim's checks: one per failure of Istio's "Traffic Management
//! Problems" page that istioctl analyze does not catch, each a general rule
//! of istiod or Envoy, each naming the page section and its fix. Silent on
//! the page's fixed configurations.

use std::collections::{BTreeMap, BTreeSet};

use meshsim_model::destination_rule::{ClientTlsMode, DestinationRuleSpec};
use meshsim_model::envoy_filter::PatchOperation;
use meshsim_model::gateway::{GatewaySpec, ServerTlsMode};
use meshsim_model::peer_auth::MtlsMode;
use meshsim_model::virtual_service::VirtualServiceSpec;
use meshsim_model::{Object, Resource};

use super::istio::mode_name;
#[cfg(test)]
use super::istio::selector_string;
use super::{msg, Message};
use crate::ctx::Ctx;
use crate::host;
use crate::protocol::Protocol;
use crate::world::{Service, ServiceSource, World};

pub(super) fn run(world: &World, out: &mut Vec<Message>) {
    gateway_route_kinds(world, out);
    http_on_tls_port(world, out);
    double_tls(world, out);
    mtls_conflicts(world, out);
    http_routes_on_tcp_ports(world, out);
    sni_behind_tls_load_balancer(world, out);
    relative_patch_on_versioned_filter(world, out);
    headless_http_under_strict(world, out);
    low_circuit_breakers(world, out);
    no_default_route(world, out);
    nginx_http10(world, out);
}

fn bound_to_mesh(vs: &VirtualServiceSpec) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")
}

/// VirtualServices for mesh traffic that have http routes.
fn mesh_http_virtual_services(world: &World) -> impl Iterator<Item = &Object<VirtualServiceSpec>> {
    world
        .virtual_services
        .iter()
        .filter(|v| bound_to_mesh(&v.spec) && !v.spec.http.is_empty())
}

/// The servers of `gw` whose hosts overlap the VirtualService's hosts.
fn servers_for<'g>(
    gw: &'g Object<GatewaySpec>,
    vs_hosts: &[String],
) -> Vec<&'g meshsim_model::gateway::Server> {
    gw.spec
        .servers
        .iter()
        .filter(|s| {
            s.hosts.iter().any(|h| {
                let h = h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h);
                vs_hosts.iter().any(|v| host::intersects(h, v))
            })
        })
        .collect()
}

fn passthrough(s: &meshsim_model::gateway::Server) -> bool {
    let p = Protocol::parse(&s.port.protocol);
    (p == Protocol::Tls || p == Protocol::Https)
        && s.tls.as_ref().is_some_and(|t| {
            matches!(
                t.mode,
                ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
            )
        })
}

fn server_mode(s: &meshsim_model::gateway::Server) -> &'static str {
    match s.tls.as_ref().map(|t| t.mode) {
        None => "none (plaintext)",
        Some(ServerTlsMode::Simple) => "SIMPLE",
        Some(ServerTlsMode::Mutual) => "MUTUAL",
        Some(ServerTlsMode::IstioMutual) => "ISTIO_MUTUAL",
        Some(ServerTlsMode::OptionalMutual) => "OPTIONAL_MUTUAL",
        Some(ServerTlsMode::Passthrough) => "PASSTHROUGH",
        Some(ServerTlsMode::AutoPassthrough) => "AUTO_PASSTHROUGH",
    }
}

/// MS0001 / MS0002: istiod builds `tls` routes only for passthrough
/// servers and `http` routes only for servers that terminate TLS or serve
/// HTTP (gateway.go `buildGatewayListeners`): a VirtualService whose only
/// routes are of the other kind configures nothing on the gateway.
fn gateway_route_kinds(world: &World, out: &mut Vec<Message>) {
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        for g in vs.spec.gateways.iter().filter(|g| *g != "mesh") {
            let full = crate::routes::resolve_gateway(g, ns);
            let Some(gw) = world
                .gateways
                .iter()
                .find(|gw| full.split_once('/') == Some((gw.meta.ns(), gw.meta.name.as_str())))
            else {
                continue;
            };
            let servers = servers_for(gw, &vs.spec.hosts);
            if servers.is_empty() {
                continue;
            }
            if !vs.spec.tls.is_empty() && vs.spec.http.is_empty() {
                if let Some(s) = servers.iter().find(|s| !passthrough(s)) {
                    if !servers.iter().any(|s| passthrough(s)) {
                        out.push(msg(
                            "MS0001",
                            &vs.meta,
                            format!(
                                "Its tls routes are not used: server port {} ({}) of Gateway {full} terminates TLS (mode {}), and istiod builds only http routes for such a server, so requests get 404 NR. (\"Gateway with TLS termination\") Fix: route with http (matching the Host) instead of tls, or set the server's tls mode to PASSTHROUGH.",
                                s.port.number,
                                s.port.protocol,
                                server_mode(s)
                            ),
                        ));
                    }
                }
            }
            if !vs.spec.http.is_empty()
                && vs.spec.tls.is_empty()
                && servers.iter().all(|s| passthrough(s))
            {
                let s = servers[0];
                out.push(msg(
                    "MS0002",
                    &vs.meta,
                    format!(
                        "Its http routes are not used: server port {} ({}) of Gateway {full} is {} (TLS passed through), and istiod builds only tls routes for it, so the gateway has no filter chain for these hosts and resets the connection. (\"Gateway with TLS passthrough\") Fix: route with tls and sniHosts to a backend that terminates TLS, or terminate at the gateway (tls mode SIMPLE with a credentialName).",
                        s.port.number,
                        s.port.protocol,
                        server_mode(s)
                    ),
                ));
            }
        }
    }
}

fn service_entries(
    world: &World,
) -> impl Iterator<Item = &Object<meshsim_model::service_entry::ServiceEntrySpec>> {
    world.resources.iter().filter_map(|r| match r {
        Resource::ServiceEntry(o) => Some(&**o),
        _ => None,
    })
}

/// DestinationRules whose host covers `hostname`, with the client TLS
/// settings each gives `port` (top level, then port level).
fn tls_for<'w>(
    world: &'w World,
    hostname: &str,
    port: u16,
) -> Vec<(
    &'w Object<DestinationRuleSpec>,
    meshsim_model::destination_rule::ClientTlsSettings,
)> {
    world
        .destination_rules
        .iter()
        .filter(|dr| host::matches(&world.resolve_host(&dr.spec.host, dr.meta.ns()), hostname))
        .filter_map(|dr| {
            let eff = Ctx::effective_policy(Some(&dr.spec), port, "");
            eff.tls.map(|t| (dr, t))
        })
        .collect()
}

fn originates(t: &meshsim_model::destination_rule::ClientTlsSettings) -> bool {
    matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
}

/// MS0003: a ServiceEntry port 443 declared HTTP without TLS origination:
/// clients that send HTTPS to it have their TLS parsed as HTTP.
fn http_on_tls_port(world: &World, out: &mut Vec<Message>) {
    for se in service_entries(world) {
        for p in &se.spec.ports {
            let proto = Protocol::parse(p.protocol.as_deref().unwrap_or_default());
            if p.number != 443 || !proto.is_http() {
                continue;
            }
            let originated = se.spec.hosts.iter().any(|h| {
                tls_for(world, &world.resolve_host(h, se.meta.ns()), 443)
                    .iter()
                    .any(|(_, t)| originates(t))
            });
            if !originated {
                out.push(msg(
                    "MS0003",
                    &se.meta,
                    format!(
                        "Port 443 ({}) is declared {}: a client that sends HTTPS to it has its TLS handshake parsed as HTTP by its sidecar, which answers 400 (DPE, http1.codec_error; curl: wrong version number). (\"Sending HTTPS to an HTTP port\") Fix: declare the port protocol HTTPS (or TLS).",
                        p.name,
                        proto.name()
                    ),
                ));
            }
        }
    }
}

/// MS0004: TLS originated (SIMPLE/MUTUAL) to a port declared HTTPS or TLS,
/// which the application already speaks TLS to.
fn double_tls(world: &World, out: &mut Vec<Message>) {
    for svc in &world.services {
        for p in &svc.ports {
            if !matches!(p.protocol, Protocol::Https | Protocol::Tls) {
                continue;
            }
            for (dr, t) in tls_for(world, &svc.hostname, p.port) {
                if originates(&t) {
                    out.push(msg(
                        "MS0004",
                        &dr.meta,
                        format!(
                            "It originates TLS (mode {}) to {}:{}, a port declared {}: the application's own TLS is wrapped in a second TLS session, and the server answers the inner handshake with an error (curl: wrong version number). (\"Double TLS\") Fix: declare the port HTTP and have the application send plaintext (Istio >= 1.8: port 80 with targetPort {}).",
                            mode_name(t.mode),
                            svc.hostname,
                            p.port,
                            p.protocol.name(),
                            p.port
                        ),
                    ));
                }
            }
        }
    }
}

/// What a client sidecar sends to one cluster.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientMode {
    Mutual,
    Plaintext,
    /// Auto mTLS (per endpoint) or TLS origination: no conflict to report.
    Other,
}

/// (resource kind, namespace, name, client sends mTLS, host, port).
type ConflictKey = (String, String, String, bool, String, u16);

/// MS0005: a DestinationRule TLS mode (or its absence with auto mTLS off)
/// that the server side cannot accept: ISTIO_MUTUAL to a workload without
/// a sidecar, or plaintext to a sidecar whose PeerAuthentication is STRICT.
/// Each client namespace sees the DestinationRules istiod gives it.
fn mtls_conflicts(world: &World, out: &mut Vec<Message>) {
    let mut clients: BTreeMap<&str, &crate::world::Pod> = BTreeMap::new();
    for p in world.proxies() {
        clients.entry(p.namespace.as_str()).or_insert(p);
    }
    let mut found: BTreeMap<ConflictKey, BTreeSet<String>> = BTreeMap::new();
    let mut metas: BTreeMap<(String, String, String), meshsim_model::Meta> = BTreeMap::new();
    for client in clients.values() {
        let ctx = Ctx::new(world, client);
        for svc in world
            .services
            .iter()
            .filter(|s| s.source == ServiceSource::Kubernetes)
        {
            let dr = ctx.destination_rule(svc);
            let subsets: Vec<(&str, BTreeMap<String, String>)> =
                std::iter::once(("", BTreeMap::new()))
                    .chain(dr.iter().flat_map(|d| {
                        d.spec
                            .subsets
                            .iter()
                            .map(|s| (s.name.as_str(), s.labels.clone()))
                    }))
                    .collect();
            for p in &svc.ports {
                for (subset, labels) in &subsets {
                    let eff = Ctx::effective_policy(dr.map(|d| &d.spec), p.port, subset);
                    let mode = match eff.tls.as_ref().map(|t| t.mode) {
                        Some(ClientTlsMode::IstioMutual) => ClientMode::Mutual,
                        Some(ClientTlsMode::Disable) => ClientMode::Plaintext,
                        Some(_) => ClientMode::Other,
                        None if world.mesh.auto_mtls => ClientMode::Other,
                        None => ClientMode::Plaintext,
                    };
                    if mode == ClientMode::Other {
                        continue;
                    }
                    for ep in &svc.endpoints {
                        let Some(pod) = ep.pod.map(|i| &world.pods[i]) else {
                            continue;
                        };
                        if !meshsim_model::common::labels_match(labels, &ep.labels) {
                            continue;
                        }
                        let target = ep.ports.get(&p.port).copied().unwrap_or(p.port);
                        let conflict = match mode {
                            ClientMode::Mutual => !pod.sidecar,
                            _ => {
                                pod.sidecar
                                    && crate::mtls::inbound_mode(world, pod, target)
                                        == MtlsMode::Strict
                            }
                        };
                        if !conflict {
                            continue;
                        }
                        let meta = match dr {
                            Some(d) => d.meta.clone(),
                            None => service_meta(world, svc),
                        };
                        let key = (meta.kind.clone(), meta.ns().to_string(), meta.name.clone());
                        metas.entry(key.clone()).or_insert(meta);
                        let workload = pod
                            .owner
                            .rsplit_once('/')
                            .map_or(pod.name.as_str(), |(_, n)| n);
                        found
                            .entry((
                                key.0,
                                key.1,
                                key.2,
                                mode == ClientMode::Mutual,
                                svc.hostname.clone(),
                                p.port,
                            ))
                            .or_default()
                            .insert(match pod.role {
                                crate::world::PodRole::Gateway => {
                                    format!("{}.{} (a gateway)", workload, pod.namespace)
                                }
                                crate::world::PodRole::Workload => {
                                    format!("{}.{}", workload, pod.namespace)
                                }
                            });
                    }
                }
            }
        }
    }
    for ((kind, ns, name, mutual, hostname, port), workloads) in found {
        let Some(meta) = metas.get(&(kind, ns, name)) else {
            continue;
        };
        let target = format!("{hostname}:{port}");
        let workloads = workloads.into_iter().collect::<Vec<_>>().join(", ");
        let text = if mutual {
            format!(
                "Sidecars originate ISTIO_MUTUAL to {target}, but nothing takes mutual TLS at {workloads} (no sidecar, or a gateway port serving its Gateway servers): the TLS handshake fails and clients get 503 (URX,UF, TLS_error). (\"Requests are rejected by Envoy (UF)\": a mutual TLS configuration conflict) Fix: set tls mode DISABLE for this host, or delete the DestinationRule's tls settings and let auto mTLS see that the workload has no sidecar."
            )
        } else {
            let why = if meta.kind == "DestinationRule" {
                "sidecars send plaintext (tls mode DISABLE, or no tls mode with enableAutoMtls false)"
            } else {
                "with enableAutoMtls false and no DestinationRule, sidecars send plaintext"
            };
            format!(
                "To {target} {why}, but the PeerAuthentication of {workloads} is STRICT: the server sidecar finds no filter chain and resets the connection, 503 UC. (\"503 errors after setting destination rule\") Fix: set tls mode ISTIO_MUTUAL in the DestinationRule's trafficPolicy (and in any subset that overrides it)."
            )
        };
        out.push(msg("MS0005", meta, text));
    }
}

/// The Service object a world service came from.
fn service_meta(world: &World, svc: &Service) -> meshsim_model::Meta {
    world
        .resources
        .iter()
        .find_map(|r| match r {
            Resource::Service(s) if s.meta.name == svc.name && s.meta.ns() == svc.namespace => {
                Some(s.meta.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| meshsim_model::Meta {
            kind: "Service".into(),
            name: svc.name.clone(),
            namespace: Some(svc.namespace.clone()),
            origin: svc.origin.clone(),
            ..Default::default()
        })
}

/// MS0006: http routes for a host whose every port is declared TCP (or
/// another non-HTTP protocol): sidecars build TCP proxies for it, never
/// HTTP routes.
fn http_routes_on_tcp_ports(world: &World, out: &mut Vec<Message>) {
    for vs in mesh_http_virtual_services(world) {
        for h in &vs.spec.hosts {
            let Some(svc) = world.service(&world.resolve_host(h, vs.meta.ns())) else {
                continue;
            };
            let declared = |p: &crate::world::ServicePort| {
                !p.protocol.is_http() && p.protocol != Protocol::Unsupported
            };
            if svc.ports.is_empty() || !svc.ports.iter().all(declared) {
                continue;
            }
            let ports: Vec<String> = svc
                .ports
                .iter()
                .map(|p| format!("{} ({}, {})", p.port, p.name, p.protocol.name()))
                .collect();
            out.push(msg(
                "MS0006",
                &vs.meta,
                format!(
                    "Its http routes never apply to {h}: the port(s) {} of {} are not declared HTTP, so sidecars proxy the traffic as opaque TCP to any endpoint. (\"Route rules don't seem to affect traffic flow\": requirements for Pods and Services) Fix: name the port http or http-<suffix> (or set appProtocol: http).",
                    ports.join(", "),
                    svc.hostname
                ),
            ));
        }
    }
}

/// Service annotations by which a cloud load balancer terminates TLS.
const LB_TLS_ANNOTATIONS: &[&str] = &[
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
    "service.beta.kubernetes.io/oci-load-balancer-ssl-ports",
    "service.beta.kubernetes.io/do-loadbalancer-certificate-id",
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-cert-id",
    "service.beta.kubernetes.io/azure-load-balancer-tls-cert",
];

/// MS0008: a gateway server that matches SNI (hosts other than `*`) behind
/// a Service whose load balancer terminates TLS and forwards no SNI.
fn sni_behind_tls_load_balancer(world: &World, out: &mut Vec<Message>) {
    for r in &world.resources {
        let Resource::Service(s) = r else { continue };
        let Some(ann) = LB_TLS_ANNOTATIONS
            .iter()
            .find(|a| s.meta.annotations.contains_key(**a))
        else {
            continue;
        };
        let Some(sel) = &s.spec.selector else {
            continue;
        };
        for gw in &world.gateways {
            let on_lb = world.pods.iter().any(|p| {
                p.namespace == s.meta.ns()
                    && meshsim_model::common::labels_match(sel, &p.labels)
                    && meshsim_model::common::labels_match(&gw.spec.selector, &p.labels)
            });
            if !on_lb {
                continue;
            }
            for srv in &gw.spec.servers {
                let tls = Protocol::parse(&srv.port.protocol);
                let sni = srv.hosts.iter().all(|h| h.rsplit('/').next() != Some("*"));
                if (tls == Protocol::Https || tls == Protocol::Tls) && sni {
                    out.push(msg(
                        "MS0008",
                        &gw.meta,
                        format!(
                            "Server port {} matches SNI {}, but Service {}/{} puts the gateway behind a load balancer that terminates TLS ({ann}) and does not forward SNI: its connections find no filter chain and are reset. (\"Configuring SNI routing when not sending SNI\") Fix: set the server's hosts to \"*\" (no SNI matching), or let the load balancer pass TLS through.",
                            srv.port.number,
                            srv.hosts.join(","),
                            s.meta.ns(),
                            s.meta.name
                        ),
                    ));
                }
            }
        }
    }
}

/// MS0009: a relative patch (INSERT_BEFORE/AFTER, REPLACE, MERGE, REMOVE)
/// on a filter that only a proxy-version-specific EnvoyFilter adds, at a
/// priority that does not order it after that filter. EnvoyFilters apply
/// by priority, then creation time: the next version's filter is created
/// after this one, so after an upgrade the patch finds nothing and is
/// skipped without a word.
fn relative_patch_on_versioned_filter(world: &World, out: &mut Vec<Message>) {
    // Filter name → (EnvoyFilter, priority, proxyVersion) that adds it.
    let mut providers: BTreeMap<String, Vec<(String, i32, String)>> = BTreeMap::new();
    for ef in &world.envoy_filters {
        for p in &ef.spec.config_patches {
            let Some(version) = p
                .match_
                .as_ref()
                .and_then(|m| m.proxy.as_ref())
                .and_then(|x| x.proxy_version.clone())
            else {
                continue;
            };
            if let Some(name) = p
                .patch
                .value
                .as_ref()
                .and_then(|v| v.get("name"))
                .and_then(|n| n.as_str())
            {
                providers.entry(name.to_string()).or_default().push((
                    format!("{}/{}", ef.meta.ns(), ef.meta.name),
                    ef.spec.priority,
                    version,
                ));
            }
        }
    }
    for ef in &world.envoy_filters {
        for p in &ef.spec.config_patches {
            let relative = matches!(
                p.patch.operation,
                PatchOperation::InsertBefore
                    | PatchOperation::InsertAfter
                    | PatchOperation::Replace
                    | PatchOperation::Merge
                    | PatchOperation::Remove
            );
            if !relative {
                continue;
            }
            let filter = p
                .match_
                .as_ref()
                .and_then(|m| m.listener.as_ref())
                .and_then(|l| l.filter_chain.as_ref())
                .and_then(|fc| fc.filter.as_ref());
            let names = filter
                .and_then(|f| f.sub_filter.as_ref().and_then(|s| s.name.clone()))
                .into_iter()
                .chain(filter.and_then(|f| f.name.clone()));
            for name in names {
                let Some(list) = providers.get(&name) else {
                    continue;
                };
                let me = format!("{}/{}", ef.meta.ns(), ef.meta.name);
                let risky: Vec<&(String, i32, String)> = list
                    .iter()
                    .filter(|(n, prio, _)| *n != me && *prio >= ef.spec.priority)
                    .collect();
                if risky.is_empty() {
                    continue;
                }
                let by: Vec<String> = risky
                    .iter()
                    .map(|(n, _, v)| format!("{n} (proxyVersion {v})"))
                    .collect();
                out.push(msg(
                    "MS0009",
                    &ef.meta,
                    format!(
                        "A {} patch relative to {name}, which only version-specific EnvoyFilters add: {}. EnvoyFilters apply by priority, then creation time; after an upgrade the new version's filter is newer than this one, {name} is not there yet when this patch runs, and the patch is skipped. (\"Unchanged Envoy filter configuration suddenly stops working\") Fix: use INSERT_FIRST, or give this EnvoyFilter a priority above theirs (e.g. priority: 10).",
                        op_name(p.patch.operation),
                        by.join(", ")
                    ),
                ));
            }
        }
    }
}

fn op_name(op: PatchOperation) -> &'static str {
    match op {
        PatchOperation::InsertBefore => "INSERT_BEFORE",
        PatchOperation::InsertAfter => "INSERT_AFTER",
        PatchOperation::Replace => "REPLACE",
        PatchOperation::Merge => "MERGE",
        PatchOperation::Remove => "REMOVE",
        _ => "relative",
    }
}

/// MS0010: a headless Service with a port declared HTTP whose pods enforce
/// STRICT mTLS: a request to a pod IP without the Service's Host goes to
/// PassthroughCluster in plaintext and is reset.
fn headless_http_under_strict(world: &World, out: &mut Vec<Message>) {
    for svc in world.services.iter().filter(|s| s.is_headless()) {
        for p in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            let strict: BTreeSet<String> = svc
                .endpoints
                .iter()
                .filter_map(|ep| ep.pod.map(|i| (&world.pods[i], ep)))
                .filter(|(pod, ep)| {
                    let target = ep.ports.get(&p.port).copied().unwrap_or(p.port);
                    pod.sidecar && crate::mtls::inbound_mode(world, pod, target) == MtlsMode::Strict
                })
                .map(|(pod, _)| pod.name.clone())
                .collect();
            let Some(example) = strict.iter().next().cloned() else {
                continue;
            };
            out.push(msg(
                "MS0010",
                &service_meta(world, svc),
                format!(
                    "Port {} ({}) is declared HTTP on a headless Service whose pods ({}) are STRICT: a request to a pod IP without the Service's Host header goes to PassthroughCluster in plaintext and the pod's sidecar resets it, 503 UC. (\"503 error while accessing headless services\") Fix: send the Service's Host header, call the pod by its DNS name ({example}.{}.{}), or declare the port TCP (tcp-<suffix>).",
                    p.port,
                    p.name,
                    strict.into_iter().collect::<Vec<_>>().join(", "),
                    svc.name,
                    svc.namespace
                ),
            ));
        }
    }
}

/// Concurrency below which a connection pool trips under ordinary use (a
/// browser opens six connections; fortio's default is four).
const MODEST_CONCURRENCY: u32 = 10;

/// MS0011: connection-pool limits low enough that a few concurrent
/// requests from one client sidecar overflow with 503 UO.
fn low_circuit_breakers(world: &World, out: &mut Vec<Message>) {
    for dr in &world.destination_rules {
        let policies = dr
            .spec
            .traffic_policy
            .iter()
            .map(|tp| (String::new(), tp.connection_pool.as_ref()))
            .chain(dr.spec.subsets.iter().filter_map(|s| {
                s.traffic_policy
                    .as_ref()
                    .map(|tp| (format!(" (subset {})", s.name), tp.connection_pool.as_ref()))
            }));
        for (where_, cp) in policies {
            let Some(cp) = cp else { continue };
            let conns = cp.tcp.as_ref().and_then(|t| t.max_connections);
            let pending = cp.http.as_ref().and_then(|h| h.http1_max_pending_requests);
            let requests = cp.http.as_ref().and_then(|h| h.http2_max_requests);
            let h1 = match (conns, pending) {
                (None, None) => None,
                (c, p) => Some(c.unwrap_or(u32::MAX).saturating_add(p.unwrap_or(u32::MAX))),
            };
            let limit = h1.into_iter().chain(requests).min();
            let Some(limit) = limit.filter(|l| *l < MODEST_CONCURRENCY) else {
                continue;
            };
            out.push(msg(
                "MS0011",
                &dr.meta,
                format!(
                    "Its connection pool{where_} (maxConnections {}, http1MaxPendingRequests {}, http2MaxRequests {}) lets one client sidecar have at most {limit} request(s) in flight to {}: more concurrent requests overflow with 503 UO (upstream_reset_before_response_started{{overflow}}). (\"Requests are rejected by Envoy (UO)\") Fix: raise the connectionPool limits to the concurrency the clients need.",
                    opt(conns),
                    opt(pending),
                    opt(requests),
                    dr.spec.host
                ),
            ));
        }
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or("unset".into(), |v| v.to_string())
}

/// MS0012: a VirtualService for mesh traffic whose every http route has a
/// match: requests that match none get 404 NR from the client sidecar.
fn no_default_route(world: &World, out: &mut Vec<Message>) {
    for vs in mesh_http_virtual_services(world) {
        // A match on where the request comes from (gateways, source
        // labels, port) still takes every request of that source.
        let catch_all = vs.spec.http.iter().any(|r| {
            r.matches.is_empty()
                || r.matches.iter().any(|m| {
                    let mut m = m.clone();
                    m.name = None;
                    m.gateways.clear();
                    m.source_labels.clear();
                    m.source_namespace = None;
                    m.port = None;
                    let root = matches!(&m.uri, Some(meshsim_model::virtual_service::StringMatch::Prefix(p)) if p == "/");
                    if root {
                        m.uri = None;
                    }
                    format!("{m:?}") == format!("{:?}", meshsim_model::virtual_service::HttpMatchRequest::default())
                })
        });
        if catch_all {
            continue;
        }
        out.push(msg(
            "MS0012",
            &vs.meta,
            format!(
                "Every http route has a match: a request to {} that matches none gets 404 NR (route_not_found) from the client's sidecar. (\"Requests are rejected by Envoy (NR)\") Fix: add a last route without a match as the default.",
                vs.spec.hosts.join(", ")
            ),
        ));
    }
}

/// MS0013: an nginx configuration (a ConfigMap a meshed pod mounts) with a
/// `proxy_pass` and no `proxy_http_version 1.1` in scope: nginx speaks
/// HTTP/1.0 upstream, which Envoy rejects with 426.
fn nginx_http10(world: &World, out: &mut Vec<Message>) {
    if world.mesh.http10 {
        return;
    }
    for cm in &world.config_maps {
        let mounted = world.pods.iter().any(|p| {
            p.namespace == cm.meta.ns() && p.sidecar && p.config_maps.contains(&cm.meta.name)
        });
        if !mounted {
            continue;
        }
        for (key, text) in &cm.spec {
            if let Some(upstream) = http10_proxy_pass(text) {
                out.push(msg(
                    "MS0013",
                    &cm.meta,
                    format!(
                        "{key}: proxy_pass {upstream} without proxy_http_version 1.1 speaks HTTP/1.0 upstream (nginx's default), and the sidecars reject HTTP/1.0 with 426 Upgrade Required (DPE, low_version). (\"Envoy won't connect to my HTTP/1.0 service\") Fix: add proxy_http_version 1.1; next to proxy_pass (or enable HTTP/1.0 in the proxies with ISTIO_META_HTTP10=1)."
                    ),
                ));
            }
        }
    }
}

/// The first `proxy_pass` target with no `proxy_http_version 1.1` in its
/// block or an enclosing one (nginx inherits the directive inwards).
fn http10_proxy_pass(conf: &str) -> Option<String> {
    // A stack of "this block sets proxy_http_version 1.1", innermost last.
    let mut stack: Vec<bool> = vec![false];
    let mut pending: Vec<(usize, String)> = Vec::new();
    let mut stmt = String::new();
    let text: String = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    for c in text.chars() {
        match c {
            '{' => {
                stack.push(false);
                stmt.clear();
            }
            '}' => {
                // Closing a block: its proxy_pass lines are settled if it
                // sets the version, else they look at the enclosing block.
                let depth = stack.len() - 1;
                let set = stack.pop().unwrap_or(false);
                pending.retain_mut(|(d, _)| {
                    if *d == depth {
                        *d = depth.saturating_sub(1);
                        !set
                    } else {
                        true
                    }
                });
                stmt.clear();
            }
            ';' => {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                match words.as_slice() {
                    ["proxy_http_version", v] if *v == "1.1" || *v == "2" => {
                        if let Some(top) = stack.last_mut() {
                            *top = true;
                        }
                    }
                    ["proxy_pass", target] => pending.push((stack.len() - 1, target.to_string())),
                    _ => {}
                }
                stmt.clear();
            }
            c => stmt.push(c),
        }
    }
    if stack.first().copied().unwrap_or(false) {
        return None;
    }
    pending.into_iter().next().map(|(_, t)| t)
}

#[cfg(test)]
pub(super) fn nginx_check(conf: &str) -> Option<String> {
    http10_proxy_pass(conf)
}

#[cfg(test)]
pub(super) fn selector(m: &BTreeMap<String, String>) -> String {
    selector_string(m)
}
