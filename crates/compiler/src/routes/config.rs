//! Route configurations: the sidecar's outbound `PORT` route configs with
//! their virtual hosts and istiod's domains (httproute.go), the
//! `allow_any` / `block_all` virtual host, and the inbound route.

use std::collections::BTreeSet;

use meshsim_model::virtual_service::VirtualServiceSpec;
use meshsim_model::Object;
use meshsim_tables::*;

use crate::ctx::Ctx;
use crate::features::PilotFeatures;
use crate::host;
use crate::names;
use crate::world::Service;

/// Istio's default retry policy (route/retry/retry.go `DefaultPolicy`).
use super::*;

/// The route a service gets without a VirtualService.
pub fn default_route(cluster: String, f: &PilotFeatures) -> Route {
    Route::to_cluster("default", cluster, Some(default_retry_policy(f)))
}

/// VirtualServices bound to `gateway` (`mesh` or `ns/name`), in istiod's
/// order (creation time, then name).
pub fn bound_virtual_services<'a>(
    ctx: &Ctx<'a>,
    gateway: &str,
) -> Vec<&'a Object<VirtualServiceSpec>> {
    let mut v: Vec<&Object<VirtualServiceSpec>> = ctx
        .world
        .virtual_services
        .iter()
        .filter(|o| {
            // VirtualService exportTo (or the mesh default).
            crate::world::exported_to(
                &o.spec.export_to,
                &ctx.world.mesh.default_virtual_service_export_to,
                o.meta.ns(),
                &ctx.proxy.namespace,
            )
        })
        .filter(|o| {
            if o.spec.gateways.is_empty() {
                gateway == "mesh"
            } else {
                o.spec
                    .gateways
                    .iter()
                    .any(|g| resolve_gateway(g, o.meta.ns()) == gateway)
            }
        })
        .collect();
    v.sort_by(|a, b| a.meta.config_order_key().cmp(&b.meta.config_order_key()));
    v
}

/// Domains a sidecar matches for a service (httproute.go
/// `generateVirtualHostDomains`, with the port ignored).
pub fn service_domains(
    svc: &Service,
    proxy_ns: &str,
    cluster_domain: &str,
) -> (Vec<String>, Vec<String>) {
    let mut domains = vec![svc.hostname.clone()];
    let mut alt = Vec::new();
    let kube_suffix = format!(".svc.{cluster_domain}");
    if let Some(prefix) = svc.hostname.strip_suffix(&kube_suffix) {
        if let Some((name, ns)) = prefix.split_once('.') {
            if ns == proxy_ns {
                alt = vec![
                    name.to_string(),
                    format!("{prefix}.svc"),
                    prefix.to_string(),
                ];
            } else {
                alt = vec![prefix.to_string(), format!("{prefix}.svc")];
            }
        }
    }
    domains.extend(alt.iter().cloned());
    if svc.is_headless() {
        let wild: Vec<String> = domains.iter().map(|d| format!("*.{d}")).collect();
        domains.extend(wild);
    }
    for a in &svc.addresses {
        if !a.is_empty() && a != "0.0.0.0" {
            domains.push(a.clone());
        }
    }
    (domains, alt)
}

/// Sidecar outbound route configuration `PORT` (or `host:PORT` for a
/// sniffed port, which keeps only that service's virtual host).
pub fn sidecar_outbound(
    ctx: &Ctx<'_>,
    services: &[&Service],
    port: u16,
    sniffed: Option<&Service>,
) -> RouteConfiguration {
    let scope = RouteScope {
        ctx,
        port,
        gateway: "mesh".into(),
    };
    let domain = &ctx.world.settings.cluster_domain;
    let on_port: Vec<&Service> = services
        .iter()
        .copied()
        .filter(|s| s.port(port).is_some())
        .collect();
    // Services (any port) matched by a resolved VirtualService host:
    // httproute.go `separateVSHostsAndServices`.
    let all_by_host: std::collections::HashMap<String, &Service> = services
        .iter()
        .map(|s| (s.hostname.to_ascii_lowercase(), *s))
        .collect();
    let matching = |h: &str| -> Vec<&Service> {
        if h.starts_with('*') {
            services
                .iter()
                .copied()
                .filter(|s| host::matches(h, &s.hostname))
                .collect()
        } else {
            all_by_host
                .get(&h.to_ascii_lowercase())
                .copied()
                .into_iter()
                .collect()
        }
    };
    // `buildSidecarVirtualHostsForVirtualService`: a VirtualService serves
    // the HTTP (or sniffed) ports of the services it names, and only when it
    // names none, port 80 (istiod's "gross HACK"); its non-service hosts
    // ride along on those ports.
    let mut vss: Vec<&Object<VirtualServiceSpec>> = ctx.mesh_virtual_services().to_vec();
    vss.retain(|v| {
        let (mut any_http, mut on_this_port) = (false, false);
        for h in &v.spec.hosts {
            for s in matching(&ctx.world.resolve_host(h, v.meta.ns())) {
                for p in &s.ports {
                    if p.protocol.is_http() || p.protocol == crate::protocol::Protocol::Unsupported
                    {
                        any_http = true;
                        on_this_port |= p.port == port;
                    }
                }
            }
        }
        if any_http {
            on_this_port
        } else {
            port == 80
        }
    });
    // sidecar.go `computeWildcardHostVirtualServiceIndex`: a service
    // belongs to the VirtualService naming it exactly, else to the one with
    // the most specific wildcard host covering it (first in order on ties).
    let owner = wildcard_owners(ctx, &vss, services);
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    let mut vhosts: Vec<VirtualHost> = Vec::new();
    let mut seen_domains: BTreeSet<String> = BTreeSet::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let known_fqdn: BTreeSet<String> = on_port.iter().map(|s| s.hostname.clone()).collect();
    let mut push_vh = |name: String,
                       domains: Vec<String>,
                       alt: Vec<String>,
                       routes: Vec<Route>,
                       vhosts: &mut Vec<VirtualHost>| {
        if !seen_names.insert(name.clone()) {
            return;
        }
        let domains: Vec<String> = domains
            .into_iter()
            .filter(|d| !(alt.contains(d) && known_fqdn.contains(d)))
            .filter(|d| seen_domains.insert(d.to_ascii_lowercase()))
            .collect();
        if !domains.is_empty() {
            vhosts.push(VirtualHost {
                name,
                domains,
                routes,
                include_request_attempt_count: true,
                require_tls: TlsRequirement::None,
            });
        }
    };
    for (vi, v) in vss.iter().enumerate() {
        let routes = translate_vs(&scope, v);
        if routes.is_empty() {
            continue;
        }
        for h in &v.spec.hosts {
            let h = ctx.world.resolve_host(h, v.meta.ns());
            let all = matching(&h);
            let wildcard = h.starts_with('*');
            let matched: Vec<&Service> = all
                .iter()
                .copied()
                .filter(|s| {
                    s.port(port).is_some()
                        && !claimed.contains(s.hostname.as_str())
                        && (!wildcard || owner.get(s.hostname.as_str()) == Some(&vi))
                })
                .collect();
            if matched.is_empty() {
                if all.is_empty() {
                    push_vh(
                        names::domain_name(&h, port),
                        vec![h.clone()],
                        vec![],
                        routes.clone(),
                        &mut vhosts,
                    );
                }
                continue;
            }
            for s in matched {
                claimed.insert(&s.hostname);
                let (domains, alt) = service_domains(s, &ctx.proxy.namespace, domain);
                push_vh(
                    names::domain_name(&s.hostname, port),
                    domains,
                    alt,
                    routes.clone(),
                    &mut vhosts,
                );
            }
        }
    }
    for s in &on_port {
        if claimed.contains(s.hostname.as_str()) {
            continue;
        }
        let (domains, alt) = service_domains(s, &ctx.proxy.namespace, domain);
        push_vh(
            names::domain_name(&s.hostname, port),
            domains,
            alt,
            vec![default_route(
                names::outbound_cluster(port, "", &s.hostname),
                &ctx.world.features,
            )],
            &mut vhosts,
        );
    }
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let name = match sniffed {
        Some(s) => {
            vhosts.retain(|vh| vh.domains.contains(&s.hostname));
            for vh in &mut vhosts {
                vh.domains = vec!["*".into()];
            }
            names::domain_name(&s.hostname, port)
        }
        None => {
            vhosts.push(catch_all_vhost(ctx));
            port.to_string()
        }
    };
    RouteConfiguration {
        name,
        virtual_hosts: vhosts,
        validate_clusters: false,
        ignore_port_in_host_matching: true,
    }
}

/// Which VirtualService (index in `vss`) each service belongs to:
/// `MostSpecificHostMatch` over exact hosts, then wildcard hosts.
fn wildcard_owners<'s>(
    ctx: &Ctx<'_>,
    vss: &[&Object<VirtualServiceSpec>],
    services: &[&'s Service],
) -> std::collections::HashMap<&'s str, usize> {
    let hosts: Vec<(usize, String)> = vss
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.spec.hosts.iter().map(move |h| {
                (
                    i,
                    ctx.world.resolve_host(h, v.meta.ns()).to_ascii_lowercase(),
                )
            })
        })
        .collect();
    let mut out = std::collections::HashMap::new();
    for s in services {
        let name = s.hostname.to_ascii_lowercase();
        let exact = hosts
            .iter()
            .find(|(_, h)| !h.starts_with('*') && *h == name);
        let best = exact.or_else(|| {
            hosts
                .iter()
                .filter(|(_, h)| h.starts_with('*') && host::matches(h, &name))
                .fold(None, |best: Option<&(usize, String)>, c| match best {
                    Some(b) if b.1.len() >= c.1.len() => Some(b),
                    _ => Some(c),
                })
        });
        if let Some((i, _)) = best {
            out.insert(s.hostname.as_str(), *i);
        }
    }
    out
}

/// `allow_any` (ALLOW_ANY → PassthroughCluster) or `block_all` (502).
pub fn catch_all_vhost(ctx: &Ctx<'_>) -> VirtualHost {
    use meshsim_model::mesh::OutboundMode;
    if ctx.outbound_mode() == OutboundMode::AllowAny {
        VirtualHost {
            name: "allow_any".into(),
            domains: vec!["*".into()],
            routes: vec![Route::to_cluster(
                "allow_any",
                names::PASSTHROUGH_CLUSTER.into(),
                None,
            )],
            include_request_attempt_count: true,
            require_tls: TlsRequirement::None,
        }
    } else {
        VirtualHost {
            name: "block_all".into(),
            domains: vec!["*".into()],
            routes: vec![Route::catch_all(
                "block_all",
                RouteAction::DirectResponse(DirectResponse {
                    status: 502,
                    body: None,
                }),
            )],
            include_request_attempt_count: true,
            require_tls: TlsRequirement::None,
        }
    }
}

/// Inbound route configuration for one port: everything to `inbound|P||`,
/// retrying a request reset before it reached the application twice from
/// 1.24 (`ENABLE_INBOUND_RETRY_POLICY`, retry.go `ConvertInboundPolicy`).
pub fn inbound(cluster: &str, port: u16, f: &PilotFeatures) -> RouteConfiguration {
    let mut route = default_route(cluster.to_string(), f);
    if let RouteAction::Route(t) = &mut route.action {
        t.retry_policy = f.enable_inbound_retry_policy.then(|| RetryPolicy {
            retry_on: RetryOn::parse("reset-before-request"),
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: vec![],
            retry_host_predicate: vec![],
            host_selection_retry_max_attempts: 0,
        });
    }
    RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".into()],
            routes: vec![route],
            include_request_attempt_count: false,
            require_tls: TlsRequirement::None,
        }],
        validate_clusters: false,
        ignore_port_in_host_matching: false,
    }
}
