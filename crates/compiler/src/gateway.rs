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

/// A virtual host being built, with the VirtualServices its routes came
/// from (istiod merges hosts whose route lists are the same objects).
struct VhostBuild {
    vhost: VirtualHost,
    sources: Vec<String>,
}

/// Route configuration for HTTP (or terminated HTTPS) servers (gateway.go
/// `buildGatewayHTTPRouteConfig`): a virtual host per host the server and
/// a bound VirtualService share; `httpsRedirect` makes a server's hosts
/// `require_tls: ALL` (1.9+, istio/istio#29895), with a virtual host of
/// their own when no VirtualService routes them; no host at all leaves
/// `blackhole:PORT` with no routes (404 `NR`).
fn route_config(ctx: &Ctx<'_>, name: String, servers: &[&BoundServer<'_>]) -> RouteConfiguration {
    let v = ctx.version;
    let legacy_redirect = !v.at_least(1, 9);
    let ignore_port = v.at_least(1, 15);
    let mut vhosts: BTreeMap<String, VhostBuild> = BTreeMap::new();
    let mut cache: BTreeMap<(String, String), Vec<Route>> = BTreeMap::new();
    for s in servers {
        let port = s.server.port.number;
        let scope = RouteScope {
            ctx,
            port,
            gateway: s.gw_key.clone(),
        };
        let redirect = s.https_redirect();
        let require_tls = if redirect && !legacy_redirect {
            TlsRequirement::All
        } else {
            TlsRequirement::None
        };
        for vs in routes::bound_virtual_services(ctx, &s.gw_key) {
            let hosts = intersection(&s.sanitized_hosts_for(vs.meta.ns()), &vs.spec.hosts);
            if hosts.is_empty() {
                continue;
            }
            let key = (
                s.gw_key.clone(),
                format!("{}/{}", vs.meta.name, vs.meta.ns()),
            );
            let routes = cache
                .entry(key.clone())
                .or_insert_with(|| {
                    if legacy_redirect && redirect && s.protocol.is_http() {
                        // Before 1.9 the VirtualService's routes gave way
                        // to one redirect route (istio/istio#24958).
                        vec![https_redirect_route()]
                    } else {
                        routes::translate_vs(&scope, vs)
                    }
                })
                .clone();
            if routes.is_empty() {
                // BuildHTTPRoutesForVirtualService: "no routes matched".
                continue;
            }
            for h in hosts {
                let b = vhost_for(&mut vhosts, &h, port, ignore_port);
                b.vhost.routes.extend(routes.iter().cloned());
                b.sources.push(format!("{}|{}", key.0, key.1));
                if require_tls == TlsRequirement::All {
                    b.vhost.require_tls = require_tls;
                }
            }
        }
        if require_tls == TlsRequirement::All {
            // Every host of the server redirects, routed or not — taken as
            // the server lists them (a `ns/host` entry included, as istiod does).
            for h in s.sanitized_hosts() {
                vhost_for(&mut vhosts, &h, port, ignore_port)
                    .vhost
                    .require_tls = require_tls;
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = if vhosts.is_empty() {
        let port = servers.first().map(|s| s.server.port.number).unwrap_or(80);
        vec![blackhole_vhost(ctx, port)]
    } else {
        let collapsed = if v.at_least(1, 11) {
            collapse_duplicate_routes(vhosts)
        } else {
            vhosts.into_values().map(|b| b.vhost).collect()
        };
        collapsed
            .into_iter()
            .map(|mut vh| {
                vh.routes = sort_vhost_routes(std::mem::take(&mut vh.routes));
                vh
            })
            .collect()
    };
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: false,
        ignore_port_in_host_matching: ignore_port,
    }
}

/// The virtual host of (lower-cased) host `h`, new or already begun:
/// domains `[h]` when ports are ignored in host matching (1.15+), else
/// `buildGatewayVirtualHostDomains`' port forms.
fn vhost_for<'m>(
    vhosts: &'m mut BTreeMap<String, VhostBuild>,
    h: &str,
    port: u16,
    ignore_port: bool,
) -> &'m mut VhostBuild {
    let h = h.to_ascii_lowercase();
    let domains = if ignore_port {
        vec![h.clone()]
    } else {
        gateway_domains(&h, port)
    };
    vhosts.entry(h.clone()).or_insert_with(|| VhostBuild {
        vhost: VirtualHost {
            name: names::domain_name(&h, port),
            domains,
            routes: vec![],
            include_request_attempt_count: true,
            require_tls: TlsRequirement::None,
        },
        sources: vec![],
    })
}

/// `host.Names.Intersection`: for each pair where one host is within the
/// other, the narrower one, once.
fn intersection(server: &[String], vs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sh in server {
        for vh in vs {
            let pick = if host::matches(vh, sh) {
                Some(sh.to_string())
            } else if host::matches(sh, vh) {
                Some(vh.clone())
            } else {
                None
            };
            if let Some(p) = pick {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// `collapseDuplicateRoutes` (1.11+): hosts, in name order, whose routes
/// came from the same VirtualServices (and with the same TLS requirement)
/// share the first one's virtual host.
fn collapse_duplicate_routes(vhosts: BTreeMap<String, VhostBuild>) -> Vec<VirtualHost> {
    let mut out: Vec<VhostBuild> = Vec::new();
    for (_, b) in vhosts {
        match out.iter_mut().find(|o| {
            o.sources == b.sources
                && o.vhost.require_tls == b.vhost.require_tls
                && o.vhost.include_request_attempt_count == b.vhost.include_request_attempt_count
        }) {
            Some(o) => o.vhost.domains.extend(b.vhost.domains),
            None => out.push(b),
        }
    }
    out.into_iter().map(|b| b.vhost).collect()
}

/// `SortVHostRoutes`: catch-all routes (prefix `/` or regex `.*`, no
/// header or query match) go last, the rest keep their order.
fn sort_vhost_routes(routes: Vec<Route>) -> Vec<Route> {
    let catch_all = |r: &Route| {
        let m = &r.match_;
        m.headers.is_empty()
            && m.query_parameters.is_empty()
            && match &m.path {
                PathMatch::Prefix(p) => p == "/",
                PathMatch::SafeRegex(re) => re.regex == ".*",
                PathMatch::Path(_) => false,
            }
    };
    let (last, mut first): (Vec<Route>, Vec<Route>) = routes.into_iter().partition(catch_all);
    first.extend(last);
    first
}

/// The virtual host of a route configuration no host reached: no routes
/// at all from 1.8 (istio/istio#27746), so Envoy answers 404 `NR`
/// `route_not_found`; a 404 direct response before.
fn blackhole_vhost(ctx: &Ctx<'_>, port: u16) -> VirtualHost {
    let legacy = !ctx.version.at_least(1, 8);
    VirtualHost {
        name: format!("blackhole:{port}"),
        domains: vec!["*".into()],
        routes: if legacy {
            vec![Route::catch_all(
                "default",
                RouteAction::DirectResponse(DirectResponse {
                    status: 404,
                    body: None,
                }),
            )]
        } else {
            vec![]
        },
        include_request_attempt_count: legacy,
        require_tls: TlsRequirement::None,
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
