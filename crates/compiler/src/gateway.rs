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

mod http_routes;
pub use http_routes::gateway_domains;
use http_routes::route_config;

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

    /// The server's hosts as istiod keeps them (gateway.go
    /// `sanitizeServerHostNamespace`): `./h` becomes `<gateway ns>/h`,
    /// `*/h` becomes `h`, and `*/*` makes the whole list `*`.
    fn sanitized_hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for h in &self.server.hosts {
            match h.split_once('/') {
                Some((".", host)) => out.push(format!("{}/{host}", self.gateway.meta.ns())),
                Some(("*", "*")) => return vec!["*".into()],
                Some(("*", host)) => out.push(host.to_string()),
                _ => out.push(h.clone()),
            }
        }
        out
    }

    /// `(namespace filter, host)` pairs; namespace `*` means any.
    fn hosts(&self) -> Vec<(String, String)> {
        self.sanitized_hosts()
            .into_iter()
            .map(|h| match h.split_once('/') {
                Some((ns, host)) => (ns.to_string(), host.to_string()),
                None => ("*".into(), h),
            })
            .collect()
    }

    /// `host.NamesForNamespace`: the hosts a VirtualService in `ns` may
    /// take (unqualified, or qualified with `ns` or `*`).
    fn sanitized_hosts_for(&self, ns: &str) -> Vec<String> {
        self.hosts()
            .into_iter()
            .filter(|(n, _)| n == ns || n == "*")
            .map(|(_, h)| h)
            .collect()
    }

    /// `gateway.IsTLSServer`: TLS settings on a non-HTTP server (an HTTP
    /// server's `tls` only says `httpsRedirect`).
    fn is_tls_server(&self) -> bool {
        self.server.tls.is_some() && !self.protocol.is_http()
    }

    fn https_redirect(&self) -> bool {
        self.server.tls.as_ref().is_some_and(|t| t.https_redirect)
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
    let servers = merge_servers(bound_servers(ctx));
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
            // gateway.go: no timeout set, Envoy's 15 s applies.
            listener_filters_timeout: ListenerFiltersTimeout::EnvoyDefault,
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

/// Which servers survive istiod's merge of the gateways on a port
/// (model/gateway.go `mergeGateways`), in gateway order: a TLS server
/// whose hosts another TLS server on the port already has is skipped
/// (`CheckDuplicates`); once a plaintext server holds a port, a later
/// server is kept only when both are HTTP (`canMergeProtocols`) — so a
/// TCP server first leaves a later HTTP server out, and the reverse
/// (istio/istio#27481); HTTPS servers need distinct route names.
fn merge_servers(servers: Vec<BoundServer<'_>>) -> Vec<BoundServer<'_>> {
    #[derive(Default)]
    struct PortState {
        plaintext: Option<Protocol>,
        tls_hosts: std::collections::BTreeSet<String>,
        https_routes: std::collections::BTreeSet<String>,
    }
    let mut ports: BTreeMap<u16, PortState> = BTreeMap::new();
    let mut kept = Vec::new();
    for s in servers {
        let seen = ports.contains_key(&s.listener_port);
        let st = ports.entry(s.listener_port).or_default();
        if s.server.tls.is_some() {
            let hosts = s.sanitized_hosts();
            if hosts.iter().any(|h| st.tls_hosts.contains(h)) {
                continue;
            }
            st.tls_hosts.extend(hosts);
        }
        let https_route =
            (s.protocol == Protocol::Https && s.terminates_http()).then(|| s.https_rds());
        if seen {
            if let Some(current) = st.plaintext {
                let can_merge =
                    (current.is_http() || current == s.protocol) && s.protocol.is_http();
                if !can_merge {
                    continue;
                }
            } else if !s.is_tls_server() {
                st.plaintext = Some(s.protocol);
            } else if let Some(r) = &https_route {
                if !st.https_routes.insert(r.clone()) {
                    continue;
                }
            }
        } else {
            if !s.is_tls_server() {
                st.plaintext = Some(s.protocol);
            }
            if let Some(r) = &https_route {
                st.https_routes.insert(r.clone());
            }
        }
        kept.push(s);
    }
    kept
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
            let cs: Vec<ClusterWeight> = route.iter().map(|d| ClusterWeight::new(routes::destination_cluster(&scope, ns, &d.destination), d.weight.unwrap_or(if route.len() == 1 { 100 } else { 0 }))).collect();
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
