//! Route configurations, virtual hosts and routes as Envoy v3 JSON
//! (istiod's route/route.go shapes: retry policies with their host
//! predicate, redirects with enum response codes, per-filter fault config).

use serde_json::{json, Value};

use super::typed;
use crate::route::*;

pub fn route_configuration(rc: &RouteConfiguration) -> Value {
    let mut v = json!({
        "name": rc.name,
        "virtual_hosts": rc.virtual_hosts.iter().map(virtual_host).collect::<Vec<_>>(),
        "validate_clusters": rc.validate_clusters,
    });
    if rc.ignore_port_in_host_matching {
        v["ignore_port_in_host_matching"] = json!(true);
    }
    v
}

fn virtual_host(vh: &VirtualHost) -> Value {
    let mut v = json!({
        "name": vh.name,
        "domains": vh.domains,
        "routes": vh.routes.iter().map(route).collect::<Vec<_>>(),
    });
    if vh.include_request_attempt_count {
        v["include_request_attempt_count"] = json!(true);
    }
    match vh.require_tls {
        TlsRequirement::None => {}
        TlsRequirement::ExternalOnly => v["require_tls"] = json!("EXTERNAL_ONLY"),
        TlsRequirement::All => v["require_tls"] = json!("ALL"),
    }
    v
}

/// A route's or a weighted cluster's header operations.
fn put_headers(v: &mut Value, h: &HeaderMutations) {
    if !h.request_headers_to_add.is_empty() {
        v["request_headers_to_add"] = header_options(&h.request_headers_to_add);
    }
    if !h.request_headers_to_remove.is_empty() {
        v["request_headers_to_remove"] = json!(h.request_headers_to_remove);
    }
    if !h.response_headers_to_add.is_empty() {
        v["response_headers_to_add"] = header_options(&h.response_headers_to_add);
    }
    if !h.response_headers_to_remove.is_empty() {
        v["response_headers_to_remove"] = json!(h.response_headers_to_remove);
    }
}

fn route(r: &Route) -> Value {
    let mut v = json!({"match": route_match(&r.match_)});
    if !r.name.is_empty() {
        v["name"] = json!(r.name);
    }
    match &r.action {
        RouteAction::Route(t) => v["route"] = route_target(t),
        RouteAction::Redirect(rd) => v["redirect"] = redirect(rd),
        RouteAction::DirectResponse(d) => {
            let mut dr = json!({"status": d.status});
            if let Some(b) = &d.body {
                dr["body"] = json!({"inline_string": b.inline_string});
            }
            v["direct_response"] = dr;
        }
    }
    put_headers(&mut v, &r.headers);
    if let Some(m) = &r.metadata {
        v["metadata"] =
            json!({"filter_metadata": {"istio": {"config": m.filter_metadata.istio.config}}});
    }
    if let Some(p) = &r.typed_per_filter_config {
        v["typed_per_filter_config"] = json!({"envoy.filters.http.fault": fault(&p.fault)});
    }
    v
}

fn header_options(opts: &[HeaderValueOption]) -> Value {
    opts.iter()
        .map(|o| {
            json!({
                "header": {"key": o.header.key, "value": o.header.value},
                "append_action": o.append_action,
            })
        })
        .collect()
}

fn string_matcher(m: &StringMatcher) -> Value {
    match m {
        StringMatcher::Exact(s) => json!({"exact": s}),
        StringMatcher::Prefix(s) => json!({"prefix": s}),
        StringMatcher::SafeRegex(r) => json!({"safe_regex": {"regex": r.regex}}),
    }
}

fn route_match(m: &RouteMatch) -> Value {
    let mut v = match &m.path {
        PathMatch::Prefix(p) => json!({"prefix": p}),
        PathMatch::Path(p) => json!({"path": p}),
        PathMatch::SafeRegex(r) => json!({"safe_regex": {"regex": r.regex}}),
    };
    if let Some(cs) = m.case_sensitive {
        v["case_sensitive"] = json!(cs);
    }
    if !m.headers.is_empty() {
        v["headers"] = m
            .headers
            .iter()
            .map(|h| {
                let mut x = json!({"name": h.name});
                match &h.matcher {
                    HeaderMatchSpecifier::StringMatch(s) => x["string_match"] = string_matcher(s),
                    HeaderMatchSpecifier::PresentMatch(p) => x["present_match"] = json!(p),
                }
                if h.invert_match {
                    x["invert_match"] = json!(true);
                }
                x
            })
            .collect();
    }
    if !m.query_parameters.is_empty() {
        v["query_parameters"] = m
            .query_parameters
            .iter()
            .map(|q| json!({"name": q.name, "string_match": string_matcher(&q.string_match)}))
            .collect();
    }
    v
}

fn route_target(t: &RouteTarget) -> Value {
    let mut v = match &t.destination {
        ClusterSpecifier::Cluster(c) => json!({"cluster": c}),
        ClusterSpecifier::WeightedClusters(w) => json!({"weighted_clusters": {
            "clusters": w.clusters.iter().map(|c| {
                let mut v = json!({"name": c.name, "weight": c.weight});
                put_headers(&mut v, &c.headers);
                v
            }).collect::<Vec<_>>()
        }}),
    };
    v["timeout"] = json!(t.timeout);
    if let Some(r) = &t.retry_policy {
        v["retry_policy"] = retry_policy(r);
    }
    if let Some(p) = &t.prefix_rewrite {
        v["prefix_rewrite"] = json!(p);
    }
    if let Some(h) = &t.host_rewrite_literal {
        v["host_rewrite_literal"] = json!(h);
    }
    if let Some(rr) = &t.regex_rewrite {
        v["regex_rewrite"] =
            json!({"pattern": {"regex": rr.pattern.regex}, "substitution": rr.substitution});
    }
    if !t.request_mirror_policies.is_empty() {
        v["request_mirror_policies"] = t
            .request_mirror_policies
            .iter()
            .map(|m| {
                let mut p = json!({
                    "cluster": m.cluster,
                    "runtime_fraction": {"default_value": {
                        "numerator": m.runtime_fraction.numerator,
                        "denominator": m.runtime_fraction.denominator,
                    }},
                    "trace_sampled": false,
                });
                if m.disable_shadow_host_suffix_append {
                    p["disable_shadow_host_suffix_append"] = json!(true);
                }
                p
            })
            .collect();
    }
    // route.go setTimeout: the deprecated max_grpc_timeout mirrors the
    // timeout (istiod avoids max_stream_duration, which would switch Envoy
    // to its "new timeouts" and drop the route timeout).
    v["max_grpc_timeout"] = json!(t.timeout);
    v
}

fn retry_policy(r: &RetryPolicy) -> Value {
    let mut v = json!({
        "retry_on": r.retry_on,
        "num_retries": r.num_retries,
    });
    if r.host_selection_retry_max_attempts != 0 {
        // int64: a string in protobuf JSON.
        v["host_selection_retry_max_attempts"] =
            json!(r.host_selection_retry_max_attempts.to_string());
    }
    if let Some(p) = r.per_try_timeout {
        v["per_try_timeout"] = json!(p);
    }
    if !r.retriable_status_codes.is_empty() {
        v["retriable_status_codes"] = json!(r.retriable_status_codes);
    }
    if !r.retry_host_predicate.is_empty() {
        v["retry_host_predicate"] = r
            .retry_host_predicate
            .iter()
            .map(|p| {
                json!({"name": p.name, "typed_config": typed(
                    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", json!({}))})
            })
            .collect();
    }
    v
}

fn redirect(r: &Redirect) -> Value {
    let mut v = json!({});
    if let Some(p) = &r.path_redirect {
        v["path_redirect"] = json!(p);
    }
    if let Some(h) = &r.host_redirect {
        v["host_redirect"] = json!(h);
    }
    if let Some(p) = r.port_redirect {
        v["port_redirect"] = json!(p);
    }
    if let Some(s) = &r.scheme_redirect {
        v["scheme_redirect"] = json!(s);
    }
    if r.https_redirect == Some(true) {
        v["https_redirect"] = json!(true);
    }
    let code = match r.response_code {
        302 => Some("FOUND"),
        303 => Some("SEE_OTHER"),
        307 => Some("TEMPORARY_REDIRECT"),
        308 => Some("PERMANENT_REDIRECT"),
        // MOVED_PERMANENTLY (301) is the default: proto3 JSON omits it.
        _ => None,
    };
    if let Some(c) = code {
        v["response_code"] = json!(c);
    }
    v
}

fn fault(f: &HttpFault) -> Value {
    let pct =
        |p: &FractionalPercent| json!({"numerator": p.numerator, "denominator": p.denominator});
    let mut v = typed(
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        json!({}),
    );
    if let Some(d) = &f.delay {
        v["delay"] = json!({"fixed_delay": d.fixed_delay, "percentage": pct(&d.percentage)});
    }
    if let Some(a) = &f.abort {
        v["abort"] = json!({"http_status": a.http_status, "percentage": pct(&a.percentage)});
    }
    v
}
