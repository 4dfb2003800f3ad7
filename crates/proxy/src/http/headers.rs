//! Header handling on the way up and down: hop-by-hop headers dropped,
//! route header operations (one function for requests and responses),
//! `x-envoy-attempt-count`, `x-forwarded-client-cert`, and the upstream
//! request itself (the connection manager's own changes, XFF and
//! `x-forwarded-proto`, are made at decode: [`super::forwarded`]).

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use meshsim_tables::{
    AppendAction, ClusterSpecifier, ClusterWeight, HeaderValueOption, Route, RouteTarget,
};

use super::request::RequestCtx;
use super::HttpCtx;

/// Connection-level headers a proxy never forwards.
pub(super) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// A route's header operations on `h`: removals, then additions with
/// their append action.
pub(super) fn mutate(h: &mut HeaderMap, remove: &[String], add: &[HeaderValueOption]) {
    for name in remove {
        h.remove(name.as_str());
    }
    for o in add {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(o.header.key.as_bytes()),
            HeaderValue::from_str(&o.header.value),
        ) else {
            continue;
        };
        match o.append_action {
            AppendAction::AppendIfExistsOrAdd => {
                h.append(k, v);
            }
            AppendAction::OverwriteIfExistsOrAdd => {
                h.insert(k, v);
            }
            AppendAction::AddIfAbsent => {
                if !h.contains_key(&k) {
                    h.insert(k, v);
                }
            }
            AppendAction::OverwriteIfExists => {
                if h.contains_key(&k) {
                    h.insert(k, v);
                }
            }
        }
    }
}

/// The path upstream sees: `prefix_rewrite`, then `regex_rewrite`.
pub(super) fn upstream_path(route: &Route, target: &RouteTarget, path: &str) -> String {
    let rewritten = match (&target.prefix_rewrite, &route.match_.path) {
        (Some(rw), meshsim_tables::PathMatch::Prefix(p)) if path.starts_with(p.as_str()) => {
            format!("{rw}{}", &path[p.len()..])
        }
        (Some(rw), _) => rw.clone(),
        _ => path.to_string(),
    };
    let Some(rr) = &target.regex_rewrite else {
        return rewritten;
    };
    let (p, q) = match rewritten.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q)),
        None => (rewritten.clone(), None),
    };
    let p = rr.pattern.replace_all(&p, &rr.substitution);
    match q {
        Some(q) => format!("{p}?{q}"),
        None => p,
    }
}

impl HttpCtx {
    /// The request one attempt sends upstream: the downstream request as
    /// [`HttpCtx::finalize_request`] left it, its host (rewritten or not),
    /// the attempt count and the XFCC header.
    pub(super) fn upstream_request(
        &self,
        rq: &RequestCtx,
        target: &RouteTarget,
        path: &str,
        attempt: u32,
        body: super::UpstreamBody,
    ) -> Request<super::UpBody> {
        let mut b = Request::builder().method(rq.parts.method.clone()).uri(path);
        if let Some(h) = b.headers_mut() {
            let upgrade = rq.is_upgrade();
            for (k, v) in &rq.parts.headers {
                let hop = HOP_BY_HOP.contains(&k.as_str())
                    && !(upgrade && matches!(k.as_str(), "connection" | "upgrade"));
                if !hop && k != http::header::HOST {
                    h.append(k.clone(), v.clone());
                }
            }
            let host = target
                .host_rewrite_literal
                .as_deref()
                .unwrap_or(&rq.authority);
            if let Ok(v) = HeaderValue::from_str(host) {
                h.insert(http::header::HOST, v);
            }
            h.insert("x-envoy-attempt-count", HeaderValue::from(attempt));
            crate::xfcc::mutate(h, &self.hcm, &self.info);
        }
        b.body(http_body_util::BodyExt::boxed(body))
            .unwrap_or_else(|_| Request::new(super::empty_upstream_body()))
    }

    /// router.cc `finalizeRequestHeaders`, once per request: the route's
    /// and the picked weighted cluster's header operations, and
    /// `x-envoy-original-host` / `-path` for what a rewrite replaces, are
    /// made on the downstream request itself — every attempt and shadow
    /// copies it, and the access log reads it afterwards (a rewritten
    /// `%REQ(:AUTHORITY)%`, `-` for a removed user-agent).
    pub(super) fn finalize_request(
        &self,
        rq: &mut RequestCtx,
        route: &Route,
        target: &RouteTarget,
        weight: Option<&ClusterWeight>,
    ) {
        let h = &mut rq.parts.headers;
        if target.host_rewrite_literal.is_some() && !h.contains_key("x-envoy-original-host") {
            if let Ok(v) = HeaderValue::from_str(&rq.authority) {
                h.insert("x-envoy-original-host", v);
            }
        }
        if (target.prefix_rewrite.is_some() || target.regex_rewrite.is_some())
            && !h.contains_key("x-envoy-original-path")
        {
            if let Ok(v) = HeaderValue::from_str(&rq.path) {
                h.insert("x-envoy-original-path", v);
            }
        }
        let ops = std::iter::once(&route.headers).chain(weight.map(|w| &w.headers));
        let mut changed = target.host_rewrite_literal.is_some();
        for m in ops.filter(|m| !m.is_empty()) {
            mutate(h, &m.request_headers_to_remove, &m.request_headers_to_add);
            changed = true;
        }
        if !changed {
            return;
        }
        let entry = &mut rq.entry;
        if let Some(a) = &target.host_rewrite_literal {
            if entry.req_headers.contains_key(":authority") {
                entry.req_headers.insert(":authority".into(), a.clone());
            }
        }
        for name in rq.snapshot.logger.request_headers() {
            if name.starts_with(':') {
                continue;
            }
            match h.get(name.as_str()).and_then(|v| v.to_str().ok()) {
                Some(v) => {
                    entry.req_headers.insert(name.clone(), v.to_string());
                }
                None => {
                    entry.req_headers.remove(name.as_str());
                }
            }
        }
    }
}

/// The weighted cluster a request went to, by the cluster name the pick
/// chose (for its own header operations).
pub(super) fn picked_weight<'t>(target: &'t RouteTarget, name: &str) -> Option<&'t ClusterWeight> {
    match &target.destination {
        ClusterSpecifier::WeightedClusters(w) => w.clusters.iter().find(|c| c.name == name),
        ClusterSpecifier::Cluster(_) => None,
    }
}
