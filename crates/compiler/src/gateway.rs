//! Gateway listeners and route configurations (gateway.go): servers merged
//! by target port, SNI filter chains for TLS servers, RDS names
//! `http.<port>` and `https.<port>.<portName>.<gateway>.<namespace>`,
//! virtual hosts as the intersection of server and VirtualService hosts.

use std::collections::BTreeMap;

use meshsim_model::common::labels_match;
use meshsim_model::gateway::{GatewaySpec, Server, ServerTlsMode};
use meshsim_model::Object;
use meshsim_tables::*;

use crate::ctx::Ctx;
use crate::filters::{self, TLS_INSPECTOR};
use crate::host;
use crate::names;
use crate::protocol::Protocol;
use crate::routes::{self, RouteScope};

/// A server of a Gateway that applies to this gateway proxy.
struct BoundServer<'a> {
    gateway: &'a Object<GatewaySpec>,
    server: &'a Server,
    /// `ns/name` of the Gateway.
    gw_key: String,
    listener_port: u16,
    protocol: Protocol,
}

impl BoundServer<'_> {
    fn terminates_http(&self) -> bool {
        match self.protocol {
            Protocol::Https => self.server.tls.as_ref().is_some_and(|t| {
                !matches!(
                    t.mode,
                    ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                )
            }),
            p => p.is_http(),
        }
    }

    fn tls_terminated(&self) -> bool {
        matches!(self.protocol, Protocol::Https | Protocol::Tls)
            && self.server.tls.as_ref().is_some_and(|t| {
                !matches!(
                    t.mode,
                    ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                )
            })
    }

    /// `(namespace filter, host)` pairs; namespace `*` means any.
    fn hosts(&self) -> Vec<(String, String)> {
        self.server
            .hosts
            .iter()
            .map(|h| match h.split_once('/') {
                Some((".", host)) => (self.gateway.meta.ns().to_string(), host.to_string()),
                Some((ns, host)) => (ns.to_string(), host.to_string()),
                None => ("*".into(), h.clone()),
            })
            .collect()
    }

    fn https_rds(&self) -> String {
        format!(
            "https.{}.{}.{}.{}",
            self.server.port.number,
            self.server.port.name,
            self.gateway.meta.name,
            self.gateway.meta.ns()
        )
    }

    fn server_names(&self) -> Vec<String> {
        let hosts = self.hosts();
        if hosts.iter().any(|(_, h)| h == "*") {
            return vec![];
        }
        hosts.into_iter().map(|(_, h)| h).collect()
    }
}

pub struct GatewayOutput {
    pub listeners: Vec<Listener>,
    pub route_configs: Vec<RouteConfiguration>,
}

pub fn build(ctx: &Ctx<'_>) -> GatewayOutput {
    let servers = bound_servers(ctx);
    let mut by_port: BTreeMap<u16, Vec<&BoundServer<'_>>> = BTreeMap::new();
    for s in &servers {
        by_port.entry(s.listener_port).or_default().push(s);
    }
    let mut out = GatewayOutput {
        listeners: vec![],
        route_configs: vec![],
    };
    let accept10 = ctx.world.mesh.http10;
    for (port, servers) in by_port {
        let mut chains: Vec<FilterChain> = Vec::new();
        let plain_http: Vec<&BoundServer<'_>> = servers
            .iter()
            .copied()
            .filter(|s| s.protocol.is_http())
            .collect();
        if !plain_http.is_empty() {
            let rds = format!("http.{port}");
            chains.push(FilterChain {
                name: String::new(),
                filter_chain_match: FilterChainMatch::default(),
                transport_socket: None,
                filters: vec![gateway_hcm(ctx, port, &rds, accept10)],
            });
            out.route_configs.push(route_config(ctx, rds, &plain_http));
        }
        for s in servers.iter().filter(|s| !s.protocol.is_http()) {
            let server_names = s.server_names();
            if s.terminates_http() {
                let m = FilterChainMatch {
                    server_names,
                    ..Default::default()
                };
                if chains.iter().any(|c| c.filter_chain_match == m) {
                    // istiod keeps the first server for a duplicate SNI match.
                    continue;
                }
                let rds = s.https_rds();
                chains.push(FilterChain {
                    name: String::new(),
                    filter_chain_match: m,
                    transport_socket: Some(server_tls(s, &["h2", "http/1.1"])),
                    filters: vec![gateway_hcm(ctx, port, &rds, accept10)],
                });
                out.route_configs.push(route_config(ctx, rds, &[s]));
            } else {
                chains.extend(tcp_chains(ctx, s));
            }
        }
        if chains.is_empty() {
            // istiod drops listeners without filter chains.
            continue;
        }
        let needs_tls_inspector = chains
            .iter()
            .any(|c| !c.filter_chain_match.server_names.is_empty() || c.transport_socket.is_some());
        out.listeners.push(Listener {
            name: names::listener_name("0.0.0.0", port),
            address: Address::new("0.0.0.0", port),
            traffic_direction: TrafficDirection::Outbound,
            use_original_dst: false,
            bind_to_port: true,
            listener_filters: if needs_tls_inspector {
                filters::listener_filters(&[TLS_INSPECTOR])
            } else {
                vec![]
            },
            filter_chains: chains,
            default_filter_chain: None,
        });
    }
    out
}

fn bound_servers<'a>(ctx: &Ctx<'a>) -> Vec<BoundServer<'a>> {
    let mut out = Vec::new();
    let mut gws: Vec<&Object<GatewaySpec>> = ctx
        .world
        .gateways
        .iter()
        .filter(|g| labels_match(&g.spec.selector, &ctx.proxy.labels))
        .collect();
    gws.sort_by(|a, b| a.meta.config_order_key().cmp(&b.meta.config_order_key()));
    for g in gws {
        for s in &g.spec.servers {
            let listener_port = ctx
                .world
                .services_selecting(ctx.proxy)
                .find_map(|svc| {
                    svc.ports
                        .iter()
                        .find(|p| p.port == s.port.number)
                        .and_then(|p| ctx.proxy.resolve_target_port(&p.target_port, p.port))
                })
                .or(s.port.target_port.and_then(|t| u16::try_from(t).ok()))
                .unwrap_or(s.port.number);
            out.push(BoundServer {
                gateway: g,
                server: s,
                gw_key: format!("{}/{}", g.meta.ns(), g.meta.name),
                listener_port,
                protocol: Protocol::parse(&s.port.protocol),
            });
        }
    }
    out
}

fn server_tls(s: &BoundServer<'_>, alpn: &[&str]) -> DownstreamTransportSocket {
    let tls = s.server.tls.clone().unwrap_or_default();
    let (cert, validation, require) = match tls.mode {
        ServerTlsMode::IstioMutual => ("default".to_string(), Some("ROOTCA".to_string()), true),
        mode => {
            let cert = match (
                &tls.credential_name,
                &tls.server_certificate,
                &tls.private_key,
            ) {
                (Some(cn), _, _) => format!("kubernetes://{cn}"),
                (None, Some(c), Some(k)) => format!("file-cert:{c}~{k}"),
                _ => String::new(),
            };
            let mutual = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
            let validation = mutual.then(|| match (&tls.credential_name, &tls.ca_certificates) {
                (Some(cn), _) => format!("kubernetes://{cn}-cacert"),
                (None, Some(ca)) => format!("file-root:{ca}"),
                _ => String::new(),
            });
            (cert, validation, mode == ServerTlsMode::Mutual)
        }
    };
    DownstreamTransportSocket {
        name: TLS_SOCKET.into(),
        typed_config: DownstreamTlsContext {
            type_url: DOWNSTREAM_TLS_TYPE,
            common_tls_context: CommonTlsContext {
                alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
                tls_certificate_sds_secret_configs: if cert.is_empty() {
                    vec![]
                } else {
                    vec![SdsSecretConfig { name: cert }]
                },
                validation_context: validation.map(|v| ValidationContext {
                    trusted_ca_sds: Some(v),
                    match_subject_alt_names: tls.subject_alt_names.clone(),
                    insecure_skip_verify: false,
                }),
            },
            require_client_certificate: require,
        },
    }
}

/// Route configuration for HTTP (or terminated HTTPS) servers.
fn route_config(ctx: &Ctx<'_>, name: String, servers: &[&BoundServer<'_>]) -> RouteConfiguration {
    let mut vhosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    for s in servers {
        let scope = RouteScope {
            ctx,
            port: s.server.port.number,
            gateway: s.gw_key.clone(),
        };
        let redirect =
            s.protocol.is_http() && s.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        for v in routes::bound_virtual_services(ctx, &s.gw_key) {
            let routes = if redirect {
                vec![https_redirect_route()]
            } else {
                routes::translate_vs(&scope, v)
            };
            if routes.is_empty() {
                continue;
            }
            for vh in &v.spec.hosts {
                for (ns, sh) in s.hosts() {
                    if ns != "*" && ns != v.meta.ns() {
                        continue;
                    }
                    if !host::intersects(sh.as_str(), vh) {
                        continue;
                    }
                    let h = host::more_specific(sh.as_str(), vh).to_string();
                    let vname = names::domain_name(&h, s.server.port.number);
                    let entry = vhosts.entry(vname.clone()).or_insert_with(|| VirtualHost {
                        name: vname,
                        domains: gateway_domains(&h, s.server.port.number),
                        routes: vec![],
                        include_request_attempt_count: true,
                    });
                    entry.routes.extend(routes.iter().cloned());
                }
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = vhosts.into_values().collect();
    if virtual_hosts.is_empty() {
        let port = servers.first().map(|s| s.server.port.number).unwrap_or(80);
        virtual_hosts.push(VirtualHost {
            name: format!("blackhole:{port}"),
            domains: vec!["*".into()],
            routes: vec![Route::catch_all(
                "default",
                RouteAction::DirectResponse(DirectResponse {
                    status: 404,
                    body: None,
                }),
            )],
            include_request_attempt_count: true,
        });
    }
    RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: false,
        ignore_port_in_host_matching: false,
    }
}

fn https_redirect_route() -> Route {
    Route::catch_all(
        "",
        RouteAction::Redirect(Redirect {
            https_redirect: Some(true),
            response_code: 301,
            ..Default::default()
        }),
    )
}

/// A gateway's HTTP connection manager (RDS, client address from the
/// downstream connection).
fn gateway_hcm(ctx: &Ctx<'_>, port: u16, rds: &str, accept10: bool) -> NetworkFilter {
    filters::hcm(
        format!("outbound_0.0.0.0_{port}"),
        Some(rds.to_string()),
        None,
        ctx.version,
        filters::HcmRole::Gateway,
        accept10,
        &ctx.world.mesh,
    )
}

/// gateway.go `buildGatewayVirtualHostDomains`.
pub fn gateway_domains(host: &str, port: u16) -> Vec<String> {
    if host == "*" {
        return vec!["*".into()];
    }
    if host.starts_with('*') {
        vec![host.to_string(), names::domain_name(host, port)]
    } else {
        vec![host.to_string(), format!("{host}:*")]
    }
}

/// PASSTHROUGH (`tls:` routes by SNI), TLS-terminated TCP and TCP servers.
fn tcp_chains(ctx: &Ctx<'_>, s: &BoundServer<'_>) -> Vec<FilterChain> {
    let scope = RouteScope {
        ctx,
        port: s.server.port.number,
        gateway: s.gw_key.clone(),
    };
    let mut chains = Vec::new();
    let server_hosts = s.hosts();
    for v in routes::bound_virtual_services(ctx, &s.gw_key) {
        let ns = v.meta.ns();
        let weighted = |route: &[meshsim_model::virtual_service::RouteDestination]| -> (Option<String>, Option<WeightedClusters>) {
            let cs: Vec<ClusterWeight> = route.iter().map(|d| ClusterWeight { name: routes::destination_cluster(&scope, ns, &d.destination), weight: d.weight.unwrap_or(if route.len() == 1 { 100 } else { 0 }) }).collect();
            if cs.len() == 1 {
                (Some(cs[0].name.clone()), None)
            } else {
                (None, Some(WeightedClusters { clusters: cs }))
            }
        };
        if s.tls_terminated() || !matches!(s.protocol, Protocol::Https | Protocol::Tls) {
            for r in &v.spec.tcp {
                if !r.matches.is_empty()
                    && !r
                        .matches
                        .iter()
                        .any(|m| m.port.is_none_or(|p| p == s.server.port.number))
                {
                    continue;
                }
                let (c, w) = weighted(&r.route);
                let stat = c.clone().unwrap_or_default();
                chains.push(FilterChain {
                    name: String::new(),
                    filter_chain_match: FilterChainMatch {
                        server_names: if s.tls_terminated() {
                            s.server_names()
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    },
                    transport_socket: s.tls_terminated().then(|| server_tls(s, &[])),
                    filters: filters::tcp_filters(ctx.version, stat, c, w),
                });
                break;
            }
            continue;
        }
        for r in &v.spec.tls {
            for m in &r.matches {
                if m.port.is_some_and(|p| p != s.server.port.number) {
                    continue;
                }
                if !m.gateways.is_empty()
                    && !m
                        .gateways
                        .iter()
                        .any(|g| routes::resolve_gateway(g, ns) == s.gw_key)
                {
                    continue;
                }
                let snis: Vec<String> = m
                    .sni_hosts
                    .iter()
                    .filter_map(|sni| {
                        server_hosts
                            .iter()
                            .filter(|(hns, _)| hns == "*" || hns == ns)
                            .find(|(_, sh)| host::intersects(sh, sni))
                            .map(|(_, sh)| host::more_specific(sh, sni).to_string())
                    })
                    .collect();
                if snis.is_empty() {
                    continue;
                }
                let (c, w) = weighted(&r.route);
                let stat = c.clone().unwrap_or_default();
                chains.push(FilterChain {
                    name: String::new(),
                    filter_chain_match: FilterChainMatch {
                        server_names: snis,
                        ..Default::default()
                    },
                    transport_socket: None,
                    filters: filters::tcp_filters(ctx.version, stat, c, w),
                });
            }
        }
    }
    chains
}
