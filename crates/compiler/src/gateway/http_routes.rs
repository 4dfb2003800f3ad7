//! A gateway's HTTP route configurations (gateway.go
//! `buildGatewayHTTPRouteConfig`).

use std::collections::BTreeMap;

use meshsim_tables::*;

use super::BoundServer;
use crate::ctx::Ctx;
use crate::host;
use crate::names;
use crate::routes::{self, RouteScope};

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
pub(super) fn route_config(
    ctx: &Ctx<'_>,
    name: String,
    servers: &[&BoundServer<'_>],
) -> RouteConfiguration {
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
