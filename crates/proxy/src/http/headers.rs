//! Header handling on the way up and down: hop-by-hop headers dropped,
//! route header operations (one function for requests and responses),
//! `x-envoy-attempt-count`, `x-forwarded-client-cert`, and the upstream
//! request itself (the connection manager's own changes, XFF and
//! `x-forwarded-proto`, are made at decode: [`super::forwarded`]).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use meshsim_tables::{AppendAction, HeaderValueOption, Route, RouteTarget};

use super::request::RequestCtx;
use super::{full, Body, HttpCtx};

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
    /// The request one attempt sends upstream.
    pub(super) fn upstream_request(
        &self,
        rq: &RequestCtx,
        route: &Route,
        target: &RouteTarget,
        path: &str,
        attempt: u32,
    ) -> Request<Body> {
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
            mutate(
                h,
                &route.headers.request_headers_to_remove,
                &route.headers.request_headers_to_add,
            );
        }
        let body: Bytes = rq.body.clone();
        b.body(full(body))
            .unwrap_or_else(|_| Request::new(full(Bytes::new())))
    }
}
