//! Sidecar listeners (listener.go, listener_builder.go, listener_inbound.go):
//! per-port outbound listeners, `virtualOutbound`, `virtualInbound` with
//! PeerAuthentication-driven filter chains.

use std::collections::BTreeMap;

use meshsim_model::mesh::OutboundMode;
use meshsim_tables::*;

use crate::ctx::Ctx;
use crate::filters::{self, HTTP_INSPECTOR, TLS_INSPECTOR};
use crate::names;
use crate::protocol::Protocol;
use crate::routes;
use crate::world::{Resolution, Service};

mod inbound;
use inbound::{blackhole_chain, virtual_inbound};

const PLAINTEXT_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];
#[derive(Default)]
struct Entry<'a> {
    http: bool,
    /// (service, port protocol) of TCP and sniffed services bound here.
    tcp: Vec<&'a Service>,
    sniffed: Vec<&'a Service>,
}

pub struct SidecarOutput {
    pub listeners: Vec<Listener>,
    pub route_configs: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
}

pub fn build(ctx: &Ctx<'_>, services: &[&Service]) -> SidecarOutput {
    let mut out = SidecarOutput {
        listeners: vec![],
        route_configs: vec![],
        clusters: vec![],
    };
    let mut entries: BTreeMap<(String, u16), Entry<'_>> = BTreeMap::new();
    for svc in services {
        for p in &svc.ports {
            if p.protocol == Protocol::Udp || !ctx.egress_carries(svc, p.port) {
                continue;
            }
            if p.protocol.is_http() {
                entries.entry(("0.0.0.0".into(), p.port)).or_default().http = true;
                continue;
            }
            let binds: Vec<String> = if let Some(a) = svc.addresses.first() {
                vec![a.clone()]
            } else if svc.resolution == Resolution::Passthrough
                && !svc.endpoints.is_empty()
                && svc.is_headless()
            {
                // Headless TCP: one listener per endpoint address.
                svc.endpoints.iter().map(|e| e.address.clone()).collect()
            } else {
                vec!["0.0.0.0".into()]
            };
            for b in binds {
                let e = entries.entry((b, p.port)).or_default();
                if p.protocol == Protocol::Unsupported {
                    e.sniffed.push(svc);
                } else {
                    e.tcp.push(svc);
                }
            }
        }
    }
    let version = ctx.version;
    let accept10 = ctx.world.mesh.http10;
    let passthrough_target = if ctx.outbound_mode() == OutboundMode::AllowAny {
        names::PASSTHROUGH_CLUSTER
    } else {
        names::BLACKHOLE_CLUSTER
    };
    for ((bind, port), e) in &entries {
        let name = names::listener_name(bind, *port);
        let mut chains = Vec::new();
        let mut default_chain = None;
        let mut lfilters: Vec<&str> = vec![];
        if e.http {
            let hcm = filters::hcm(
                format!("outbound_{bind}_{port}"),
                Some(port.to_string()),
                None,
                version,
                filters::HcmRole::SidecarOutbound,
                accept10,
                &ctx.world.mesh,
            );
            let fall_through = version.http_ports_fall_through();
            let m = if fall_through {
                let mut alpn: Vec<String> =
                    PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                if accept10 {
                    alpn.insert(0, "http/1.0".into());
                }
                FilterChainMatch {
                    transport_protocol: if version.http_chain_requires_raw_buffer() {
                        TransportProtocol::RawBuffer
                    } else {
                        TransportProtocol::Any
                    },
                    application_protocols: alpn,
                    ..Default::default()
                }
            } else {
                FilterChainMatch::default()
            };
            chains.push(FilterChain {
                name: String::new(),
                filter_chain_match: m,
                transport_socket: None,
                filters: vec![hcm],
            });
            for t in &e.tcp {
                chains.push(tcp_chain(ctx, t, *port, Some(bind)));
            }
            if fall_through {
                lfilters = vec![TLS_INSPECTOR, HTTP_INSPECTOR];
                let passthrough = FilterChain {
                    name: "PassthroughFilterChain".into(),
                    filter_chain_match: FilterChainMatch::default(),
                    transport_socket: None,
                    filters: filters::tcp_filters(
                        version,
                        passthrough_target.into(),
                        Some(passthrough_target.into()),
                        None,
                    ),
                };
                // 1.8+: the default chain; 1.6/1.7: a match-all chain.
                if version.http_chain_requires_raw_buffer() {
                    default_chain = Some(passthrough);
                } else {
                    chains.push(passthrough);
                }
            }
            out.route_configs.push(routes::sidecar_outbound(
                ctx,
                &carried(ctx, services, *port),
                *port,
                None,
            ));
        } else {
            // tls.go: TLS/HTTPS ports route by SNI; other TCP as one chain.
            let wildcard = bind == "0.0.0.0";
            let mut tcp = Vec::new();
            for t in &e.tcp {
                let tls = t.port(*port).is_some_and(|p| p.protocol.is_tls());
                if tls {
                    tcp.extend(tls_chains(ctx, t, *port, wildcard));
                } else {
                    tcp.push(tcp_chain(ctx, t, *port, None));
                }
            }
            if let Some(s) = e.sniffed.first() {
                let rds = names::domain_name(&s.hostname, *port);
                let hcm = filters::hcm(
                    format!("outbound_{bind}_{port}"),
                    Some(rds),
                    None,
                    version,
                    filters::HcmRole::SidecarOutbound,
                    accept10,
                    &ctx.world.mesh,
                );
                let mut alpn: Vec<String> =
                    PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                if accept10 {
                    alpn.insert(0, "http/1.0".into());
                }
                chains.push(FilterChain {
                    name: String::new(),
                    filter_chain_match: FilterChainMatch {
                        transport_protocol: TransportProtocol::RawBuffer,
                        application_protocols: alpn,
                        ..Default::default()
                    },
                    transport_socket: None,
                    filters: vec![hcm],
                });
                default_chain = Some(tcp_chain(ctx, s, *port, None));
                lfilters = vec![TLS_INSPECTOR, HTTP_INSPECTOR];
                out.route_configs.push(routes::sidecar_outbound(
                    ctx,
                    &carried(ctx, services, *port),
                    *port,
                    Some(s),
                ));
            }
            let sniffed = !e.sniffed.is_empty();
            // listener.go merges services' chains into one listener; a
            // chain matching exactly what an earlier one matches is
            // dropped (Envoy would reject the listener).
            for c in tcp {
                if c.filter_chain_match == FilterChainMatch::default()
                    || !chains
                        .iter()
                        .any(|k| k.filter_chain_match == c.filter_chain_match)
                {
                    chains.push(c);
                }
            }
            if !sniffed {
                default_chain = default_chain_rule(ctx, &mut chains, passthrough_target);
                if chains
                    .iter()
                    .any(|c| !c.filter_chain_match.server_names.is_empty())
                {
                    lfilters = vec![TLS_INSPECTOR];
                }
            }
        }
        out.listeners.push(Listener {
            name,
            address: Address::new(bind.clone(), *port),
            traffic_direction: TrafficDirection::Outbound,
            use_original_dst: false,
            bind_to_port: false,
            listener_filters: filters::listener_filters(&lfilters),
            listener_filters_timeout: ListenerFiltersTimeout::Disabled,
            filter_chains: chains,
            default_filter_chain: default_chain,
        });
    }
    out.listeners
        .push(virtual_outbound(ctx, passthrough_target));
    let (inbound_listener, inbound_clusters) = virtual_inbound(ctx);
    out.listeners.push(inbound_listener);
    out.clusters = inbound_clusters;
    out
}

/// listener.go `buildListenerFromEntry`: a match-all chain becomes the
/// default chain when there are others (the last one wins); a lone
/// match-all chain stays the only chain; without one, the default is the
/// `PassthroughFilterChain` to PassthroughCluster or BlackHoleCluster.
/// The services an egress listener on `port` carries (see
/// [`Ctx::egress_carries`]).
fn carried<'s>(ctx: &Ctx<'_>, services: &[&'s Service], port: u16) -> Vec<&'s Service> {
    services
        .iter()
        .copied()
        .filter(|s| ctx.egress_carries(s, port))
        .collect()
}

fn default_chain_rule(
    ctx: &Ctx<'_>,
    chains: &mut Vec<FilterChain>,
    passthrough_target: &str,
) -> Option<FilterChain> {
    let is_match_all = |c: &FilterChain| c.filter_chain_match == FilterChainMatch::default();
    let mut default = None;
    chains.retain(|c| {
        if is_match_all(c) {
            default = Some(c.clone());
            false
        } else {
            true
        }
    });
    match default {
        Some(d) if chains.is_empty() => {
            chains.push(d);
            None
        }
        Some(d) => Some(d),
        None => Some(FilterChain {
            name: "PassthroughFilterChain".into(),
            filter_chain_match: FilterChainMatch::default(),
            transport_socket: None,
            filters: filters::tcp_filters(
                ctx.version,
                passthrough_target.into(),
                Some(passthrough_target.into()),
                None,
            ),
        }),
    }
}

/// tls.go `buildSidecarOutboundTLSFilterChainOpts`: a chain per
/// VirtualService `tls` match (by SNI, first match per SNI set wins), else
/// one chain to the service, matching its hostname as SNI when the
/// listener is the wildcard one (no VIP tells services apart).
fn tls_chains(ctx: &Ctx<'_>, svc: &Service, port: u16, wildcard: bool) -> Vec<FilterChain> {
    let cluster = names::outbound_cluster(port, "", &svc.hostname);
    let mut out = Vec::new();
    let mut handled = std::collections::BTreeSet::new();
    for v in ctx.mesh_virtual_services() {
        if !vs_binds(ctx, v, &svc.hostname) {
            continue;
        }
        for r in v.spec.tls.iter().filter(|r| !r.route.is_empty()) {
            for m in &r.matches {
                let static_ok = m.port.is_none_or(|p| p == port)
                    && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"));
                if !static_ok || !handled.insert(m.sni_hosts.join(",")) {
                    continue;
                }
                let (c, w) = route_clusters(ctx, v.meta.ns(), &r.route, port);
                out.push(FilterChain {
                    name: String::new(),
                    filter_chain_match: FilterChainMatch {
                        server_names: m.sni_hosts.clone(),
                        ..Default::default()
                    },
                    transport_socket: None,
                    filters: filters::tcp_filters(ctx.version, cluster.clone(), c, w),
                });
            }
        }
    }
    if out.is_empty() {
        let server_names = if wildcard || svc.addresses.is_empty() {
            vec![svc.hostname.clone()]
        } else {
            vec![]
        };
        out.push(FilterChain {
            name: String::new(),
            filter_chain_match: FilterChainMatch {
                server_names,
                ..Default::default()
            },
            transport_socket: None,
            filters: filters::tcp_filters(ctx.version, cluster.clone(), Some(cluster), None),
        });
    }
    out
}

/// A VirtualService whose hosts cover `hostname`.
fn vs_binds(
    ctx: &Ctx<'_>,
    v: &meshsim_model::Object<meshsim_model::virtual_service::VirtualServiceSpec>,
    hostname: &str,
) -> bool {
    v.spec
        .hosts
        .iter()
        .map(|h| ctx.world.resolve_host(h, v.meta.ns()))
        .any(|h| crate::host::matches(&h, hostname))
}

/// A route's destinations as one cluster or weighted clusters.
fn route_clusters(
    ctx: &Ctx<'_>,
    ns: &str,
    route: &[meshsim_model::virtual_service::RouteDestination],
    port: u16,
) -> (Option<String>, Option<WeightedClusters>) {
    let scope = routes::RouteScope {
        ctx,
        port,
        gateway: "mesh".into(),
    };
    let w = WeightedClusters {
        clusters: route
            .iter()
            .map(|d| {
                ClusterWeight::new(
                    routes::destination_cluster(&scope, ns, &d.destination),
                    d.weight.unwrap_or(if route.len() == 1 { 100 } else { 0 }),
                )
            })
            .collect(),
    };
    if w.clusters.len() == 1 {
        (Some(w.clusters[0].name.clone()), None)
    } else {
        (None, Some(w))
    }
}

/// A TCP chain for one service: VirtualService `tcp` routes, else the
/// service's own cluster.
fn tcp_chain(ctx: &Ctx<'_>, svc: &Service, port: u16, cidr_bind: Option<&String>) -> FilterChain {
    let cluster = names::outbound_cluster(port, "", &svc.hostname);
    let mut routed = None;
    for v in ctx.mesh_virtual_services() {
        if !vs_binds(ctx, v, &svc.hostname) {
            continue;
        }
        if let Some(r) = v.spec.tcp.iter().find(|r| {
            r.matches.is_empty() || r.matches.iter().any(|m| m.port.is_none_or(|p| p == port))
        }) {
            routed = Some(route_clusters(ctx, v.meta.ns(), &r.route, port));
            break;
        }
    }
    let (c, w) = routed.unwrap_or((Some(cluster.clone()), None));
    let mut m = FilterChainMatch::default();
    if let Some(b) = cidr_bind {
        if b == "0.0.0.0" {
            if let Some(a) = svc.addresses.first() {
                m.prefix_ranges = vec![CidrRange {
                    address_prefix: a.clone(),
                    prefix_len: 32,
                }];
            }
        }
    }
    FilterChain {
        name: String::new(),
        filter_chain_match: m,
        transport_socket: None,
        filters: filters::tcp_filters(ctx.version, cluster, c, w),
    }
}

fn virtual_outbound(ctx: &Ctx<'_>, passthrough_target: &str) -> Listener {
    Listener {
        name: names::VIRTUAL_OUTBOUND.into(),
        address: Address::new("0.0.0.0", names::VIRTUAL_OUTBOUND_PORT),
        traffic_direction: TrafficDirection::Outbound,
        use_original_dst: true,
        bind_to_port: true,
        listener_filters: vec![],
        listener_filters_timeout: ListenerFiltersTimeout::Disabled,
        filter_chains: vec![blackhole_chain(
            ctx,
            "virtualOutbound-blackhole",
            names::VIRTUAL_OUTBOUND_PORT,
        )],
        default_filter_chain: Some(FilterChain {
            name: "PassthroughFilterChain".into(),
            filter_chain_match: FilterChainMatch::default(),
            transport_socket: None,
            filters: filters::tcp_filters(
                ctx.version,
                passthrough_target.into(),
                Some(passthrough_target.into()),
                None,
            ),
        }),
    }
}
