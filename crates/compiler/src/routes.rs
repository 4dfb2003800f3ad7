//! HTTP routes: VirtualService translation (route/route.go), sidecar
//! outbound route configurations (httproute.go) and the inbound route.

use meshsim_model::common::labels_match;
use meshsim_model::virtual_service::{self as vs, HttpRoute, VirtualServiceSpec};
use meshsim_model::Object;
use meshsim_tables::*;

use crate::ctx::Ctx;
use crate::features::PilotFeatures;
use crate::names;

/// Istio's default retry policy (route/retry/retry.go `DefaultPolicy`).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// `DefaultPolicy`: 503 is among the retried statuses until 1.24's
/// `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY` (istio/istio#52111).
pub fn default_retry_policy(f: &PilotFeatures) -> RetryPolicy {
    RetryPolicy {
        retry_on: RetryOn::parse(DEFAULT_RETRY_ON),
        num_retries: 2,
        per_try_timeout: None,
        retriable_status_codes: if f.exclude_unsafe_503_from_default_retry {
            vec![]
        } else {
            vec![503]
        },
        retry_host_predicate: vec![NamedFilter {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
        }],
        host_selection_retry_max_attempts: 5,
    }
}

/// Where routes are being built: which listener port and which gateway
/// (`mesh` for sidecars, `ns/name` for a Gateway).
pub struct RouteScope<'s, 'a> {
    pub ctx: &'s Ctx<'a>,
    /// Listener port for sidecars, server port for gateways; 0 = any.
    pub port: u16,
    pub gateway: String,
}

/// Translates one VirtualService's `http` section for a scope.
pub fn translate_vs(scope: &RouteScope<'_, '_>, obj: &Object<VirtualServiceSpec>) -> Vec<Route> {
    let ns = obj.meta.ns();
    let mut out = Vec::new();
    for http in &obj.spec.http {
        let matches = applicable_matches(scope, obj, http);
        let Some(matches) = matches else {
            continue;
        };
        let action = route_action(scope, ns, http);
        let mut headers = http
            .headers
            .as_ref()
            .map(header_mutations)
            .unwrap_or_default();
        // processDestination: a lone destination's `headers` join the
        // route's, after them.
        if let [d] = http.route.as_slice() {
            if let Some(h) = &d.headers {
                headers.append(header_mutations(h));
            }
        }
        let fault = http.fault.as_ref().and_then(translate_fault);
        let metadata = Some(RouteMetadata {
            filter_metadata: IstioFilterMetadata {
                istio: IstioConfigRef {
                    config: names::vs_config_path(ns, &obj.meta.name),
                },
            },
        });
        let mut catch_all = false;
        if matches.is_empty() {
            out.push(Route {
                name: http.name.clone().unwrap_or_default(),
                match_: RouteMatch::default(),
                action: action.clone(),
                headers: headers.clone(),
                metadata: metadata.clone(),
                typed_per_filter_config: fault.clone(),
            });
            catch_all = true;
        }
        for m in matches {
            let rm = translate_match(m);
            catch_all |= is_catch_all(&rm);
            let name = match (&http.name, &m.name) {
                (Some(r), Some(mn)) => format!("{r}.{mn}"),
                (Some(r), None) => r.clone(),
                (None, Some(mn)) => mn.clone(),
                (None, None) => String::new(),
            };
            out.push(Route {
                name,
                match_: rm,
                action: action.clone(),
                headers: headers.clone(),
                metadata: metadata.clone(),
                typed_per_filter_config: fault.clone(),
            });
        }
        if catch_all {
            // istiod stops at a catch-all route: later ones can never match.
            break;
        }
    }
    out
}

/// `None`: the route does not apply here. `Some([])`: applies, no match
/// conditions. Otherwise the match conditions that apply.
fn applicable_matches<'v>(
    scope: &RouteScope<'_, '_>,
    obj: &Object<VirtualServiceSpec>,
    http: &'v HttpRoute,
) -> Option<Vec<&'v vs::HttpMatchRequest>> {
    if http.matches.is_empty() {
        return Some(vec![]);
    }
    let ns = obj.meta.ns();
    let proxy = scope.ctx.proxy;
    let applies: Vec<&vs::HttpMatchRequest> = http
        .matches
        .iter()
        .filter(|m| scope.port == 0 || m.port.is_none_or(|p| p == scope.port))
        .filter(|m| labels_match(&m.source_labels, &proxy.labels))
        .filter(|m| {
            m.source_namespace
                .as_ref()
                .is_none_or(|sn| *sn == proxy.namespace)
        })
        .filter(|m| {
            m.gateways.is_empty()
                || m.gateways
                    .iter()
                    .any(|g| resolve_gateway(g, ns) == scope.gateway)
        })
        .collect();
    if applies.is_empty() {
        None
    } else {
        Some(applies)
    }
}

/// `mesh` stays; `name` → `vsns/name`; `ns/name` stays.
pub fn resolve_gateway(g: &str, vs_ns: &str) -> String {
    if g == "mesh" || g.contains('/') {
        g.to_string()
    } else {
        format!("{vs_ns}/{g}")
    }
}

fn is_catch_all(m: &RouteMatch) -> bool {
    matches!(&m.path, PathMatch::Prefix(p) if p == "/")
        && m.headers.is_empty()
        && m.query_parameters.is_empty()
}

fn string_matcher(m: &vs::StringMatch) -> StringMatcher {
    match m {
        vs::StringMatch::Exact(s) => StringMatcher::Exact(s.clone()),
        vs::StringMatch::Prefix(s) => StringMatcher::Prefix(s.clone()),
        vs::StringMatch::Regex(r) => match SafeRegex::new(r) {
            Ok(re) => StringMatcher::SafeRegex(re),
            // Invalid regexes are rejected by Istio's validation; never match.
            Err(_) => StringMatcher::Exact("\u{0}meshsim-invalid-regex".into()),
        },
    }
}

pub fn translate_match(m: &vs::HttpMatchRequest) -> RouteMatch {
    let path = match &m.uri {
        None => PathMatch::Prefix("/".into()),
        Some(vs::StringMatch::Exact(p)) => PathMatch::Path(p.clone()),
        Some(vs::StringMatch::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(vs::StringMatch::Regex(r)) => match SafeRegex::new(r) {
            Ok(re) => PathMatch::SafeRegex(re),
            Err(_) => PathMatch::Path("\u{0}meshsim-invalid-regex".into()),
        },
    };
    let mut headers = Vec::new();
    let mut push = |name: &str, sm: &vs::StringMatch, invert: bool| {
        headers.push(HeaderMatcher {
            name: name.to_ascii_lowercase(),
            matcher: HeaderMatchSpecifier::StringMatch(string_matcher(sm)),
            invert_match: invert,
        });
    };
    for (k, v) in &m.headers {
        push(k, v, false);
    }
    if let Some(a) = &m.authority {
        push(":authority", a, false);
    }
    if let Some(me) = &m.method {
        push(":method", me, false);
    }
    if let Some(s) = &m.scheme {
        push(":scheme", s, false);
    }
    for (k, v) in &m.without_headers {
        push(k, v, true);
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(k, v)| QueryParameterMatcher {
            name: k.clone(),
            string_match: string_matcher(v),
        })
        .collect();
    RouteMatch {
        path,
        case_sensitive: if m.ignore_uri_case { Some(false) } else { None },
        headers,
        query_parameters,
    }
}

fn header_mutations(h: &vs::Headers) -> HeaderMutations {
    let mut out = HeaderMutations::default();
    let ops =
        |o: &vs::HeaderOperations, add: &mut Vec<HeaderValueOption>, remove: &mut Vec<String>| {
            for (k, v) in &o.set {
                add.push(HeaderValueOption {
                    header: HeaderValue {
                        key: k.clone(),
                        value: v.clone(),
                    },
                    append_action: AppendAction::OverwriteIfExistsOrAdd,
                });
            }
            for (k, v) in &o.add {
                add.push(HeaderValueOption {
                    header: HeaderValue {
                        key: k.clone(),
                        value: v.clone(),
                    },
                    append_action: AppendAction::AppendIfExistsOrAdd,
                });
            }
            remove.extend(o.remove.iter().cloned());
        };
    if let Some(r) = &h.request {
        ops(
            r,
            &mut out.request_headers_to_add,
            &mut out.request_headers_to_remove,
        );
    }
    if let Some(r) = &h.response {
        ops(
            r,
            &mut out.response_headers_to_add,
            &mut out.response_headers_to_remove,
        );
    }
    out
}

/// Cluster name for a VirtualService destination.
pub fn destination_cluster(scope: &RouteScope<'_, '_>, vs_ns: &str, d: &vs::Destination) -> String {
    let w = scope.ctx.world;
    let host = w.resolve_host(&d.host, vs_ns);
    let port = d.port.as_ref().and_then(|p| p.number).or_else(|| {
        let svc = w.service(&host)?;
        if svc.ports.len() == 1 {
            Some(svc.ports[0].port)
        } else {
            svc.port(scope.port)
                .map(|p| p.port)
                .or(svc.ports.first().map(|p| p.port))
        }
    });
    names::outbound_cluster(
        port.unwrap_or(scope.port),
        d.subset.as_deref().unwrap_or(""),
        &host,
    )
}

fn route_action(scope: &RouteScope<'_, '_>, ns: &str, http: &HttpRoute) -> RouteAction {
    if let Some(r) = &http.redirect {
        return RouteAction::Redirect(Redirect {
            path_redirect: r.uri.clone(),
            host_redirect: r.authority.clone(),
            port_redirect: r.port,
            scheme_redirect: r.scheme.clone(),
            https_redirect: None,
            response_code: r.redirect_code.unwrap_or(301),
        });
    }
    if let Some(dr) = &http.direct_response {
        let body = dr
            .body
            .as_ref()
            .and_then(|b| b.string.clone().or(b.bytes.clone()))
            .map(|s| DataSource { inline_string: s });
        return RouteAction::DirectResponse(DirectResponse {
            status: dr.status,
            body,
        });
    }
    let destination = if http.route.len() == 1 {
        ClusterSpecifier::Cluster(destination_cluster(scope, ns, &http.route[0].destination))
    } else {
        // route.go: 0-weight destinations are left out; each keeps its
        // own `headers` (processWeightedDestination).
        ClusterSpecifier::WeightedClusters(WeightedClusters {
            clusters: http
                .route
                .iter()
                .filter(|d| d.weight.unwrap_or(0) != 0)
                .map(|d| ClusterWeight {
                    name: destination_cluster(scope, ns, &d.destination),
                    weight: d.weight.unwrap_or(0),
                    headers: d.headers.as_ref().map(header_mutations).unwrap_or_default(),
                })
                .collect(),
        })
    };
    let retry_policy = match &http.retries {
        None => Some(default_retry_policy(&scope.ctx.world.features)),
        Some(r) if r.attempts == 0 => None,
        Some(r) => {
            let mut p = default_retry_policy(&scope.ctx.world.features);
            p.num_retries = r.attempts;
            p.per_try_timeout = r.per_try_timeout.map(|d| Duration::from_millis(d.millis));
            if let Some(on) = &r.retry_on {
                let (codes, policies): (Vec<&str>, Vec<&str>) = on
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .partition(|s| s.parse::<u16>().is_ok());
                let mut policies: Vec<String> = policies.into_iter().map(String::from).collect();
                p.retriable_status_codes = codes.iter().filter_map(|c| c.parse().ok()).collect();
                if !p.retriable_status_codes.is_empty()
                    && !policies.iter().any(|s| s == "retriable-status-codes")
                {
                    policies.push("retriable-status-codes".into());
                }
                p.retry_on = RetryOn::parse(&policies.join(","));
            }
            Some(p)
        }
    };
    let rw = http.rewrite.as_ref();
    RouteAction::Route(RouteTarget {
        destination,
        timeout: http
            .timeout
            .map(|d| Duration::from_millis(d.millis))
            .unwrap_or(Duration::ZERO),
        retry_policy,
        prefix_rewrite: rw.and_then(|r| r.uri.clone()),
        host_rewrite_literal: rw.and_then(|r| r.authority.clone()),
        regex_rewrite: rw.and_then(|r| r.uri_regex_rewrite.as_ref()).and_then(|r| {
            SafeRegex::new(&r.match_).ok().map(|pattern| RegexRewrite {
                pattern,
                substitution: r.rewrite.clone(),
            })
        }),
        request_mirror_policies: mirror_policies(scope, ns, http),
    })
}

/// route.go: `mirror` (at `mirrorPercentage`, else the deprecated
/// `mirrorPercent`, else 100%) then each of `mirrors`; an explicit 0%
/// mirrors nothing (`MirrorPercent`, `MirrorPercentByPolicy`).
fn mirror_policies(
    scope: &RouteScope<'_, '_>,
    ns: &str,
    http: &HttpRoute,
) -> Vec<RequestMirrorPolicy> {
    let disable_suffix = scope.ctx.world.features.disable_shadow_host_suffix;
    let policy = |d: &vs::Destination, pct: f64| {
        (pct > 0.0).then(|| RequestMirrorPolicy {
            cluster: destination_cluster(scope, ns, d),
            runtime_fraction: FractionalPercent::from_percent(pct),
            disable_shadow_host_suffix_append: disable_suffix,
        })
    };
    let mut out = Vec::new();
    if let Some(d) = &http.mirror {
        let pct = match (&http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => p.value,
            (None, Some(p)) => f64::from(p),
            (None, None) => 100.0,
        };
        out.extend(policy(d, pct));
    }
    for m in &http.mirrors {
        if let Some(d) = &m.destination {
            out.extend(policy(d, m.percentage.as_ref().map_or(100.0, |p| p.value)));
        }
    }
    out
}

/// route.go `translateFault`: a percentage absent means every request
/// (the deprecated integer `percent` still counts for delays).
fn translate_fault(f: &vs::HttpFaultInjection) -> Option<PerFilterConfig> {
    let pct = |p: Option<vs::Percent>, legacy: Option<u32>| {
        FractionalPercent::from_percent(
            p.map(|p| p.value)
                .or(legacy.map(f64::from))
                .unwrap_or(100.0),
        )
    };
    let delay = f.delay.as_ref().and_then(|d| {
        d.fixed_delay.map(|fd| FaultDelay {
            fixed_delay: Duration::from_millis(fd.millis),
            percentage: pct(d.percentage, d.percent),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        a.http_status.map(|s| FaultAbort {
            http_status: s,
            percentage: pct(a.percentage, None),
        })
    });
    (delay.is_some() || abort.is_some()).then_some(PerFilterConfig {
        fault: HttpFault {
            type_url: FAULT_TYPE,
            delay,
            abort,
        },
    })
}

mod config;

pub use config::{
    bound_virtual_services, catch_all_vhost, default_route, inbound, service_domains,
    sidecar_outbound,
};
