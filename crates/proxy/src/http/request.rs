//! The decode phase: what a request is, for routing and the log — its
//! `:authority`, path and method, an `x-request-id` when it has none, the
//! body (left streaming), and the request fields of its access-log entry (only the headers
//! the log format prints are copied).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request};
use hyper::body::Incoming;
use meshsim_tables::route_match::RequestView;

use super::reqbody::RequestBody;
use super::{forwarded, path, HttpCtx, LocalReply};
use crate::accesslog::{Flag, LogEntry};
use crate::snapshot::Snapshot;

/// One request as it flows through the phases.
pub(super) struct RequestCtx {
    pub parts: http::request::Parts,
    /// Streamed to the upstream, never collected (see [`RequestBody`]).
    pub body: RequestBody,
    pub authority: String,
    /// Path and query.
    pub path: String,
    pub method: String,
    pub entry: LogEntry,
    pub started: tokio::time::Instant,
    /// The tables and logger this request is served with.
    pub snapshot: Arc<Snapshot>,
    /// Flags the filters set before the router (`DI`).
    pub injected: Vec<Flag>,
    /// The connection manager's own answer before any routing (missing
    /// `Host`, a path it cannot normalise, `OPTIONS *`).
    pub early: Option<LocalReply>,
    /// A websocket upgrade request (the HCM's `upgrade_configs`): the
    /// client's side of the tunnel, once the upstream switches protocols.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl RequestCtx {
    /// Whether this request asks for a websocket upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade.lock().is_ok_and(|u| u.is_some())
    }
}

/// `Connection: upgrade` with `Upgrade: websocket` (Envoy's
/// `Utility::isUpgrade` for the upgrade type istiod enables).
fn wants_websocket(h: &http::HeaderMap) -> bool {
    let has = |name, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    has(http::header::CONNECTION, "upgrade") && has(http::header::UPGRADE, "websocket")
}

impl RequestCtx {
    pub fn view(&self) -> ReqView<'_> {
        ReqView {
            path: &self.path,
            method: &self.method,
            headers: &self.parts.headers,
            authority: &self.authority,
        }
    }
}

/// A request as the route matchers see it.
pub(super) struct ReqView<'a> {
    path: &'a str,
    method: &'a str,
    headers: &'a HeaderMap,
    authority: &'a str,
}

impl RequestView for ReqView<'_> {
    fn path(&self) -> &str {
        self.path
    }
    fn method(&self) -> &str {
        self.method
    }
    fn header(&self, name: &str) -> Option<&str> {
        if name == ":authority" {
            return Some(self.authority);
        }
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HttpCtx {
    pub(super) fn decode(&self, mut req: Request<Incoming>) -> RequestCtx {
        let started = tokio::time::Instant::now();
        let start = self.inner.clock.now();
        self.inner
            .server
            .downstream_rq_total
            .fetch_add(1, Ordering::Relaxed);
        let upgrade =
            (!self.h2 && wants_websocket(req.headers())).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // HTTP/1: several Host headers make one authority, comma-joined
        // (Envoy's header map joins repeated headers).
        let hosts: Vec<&str> = parts
            .headers
            .get_all(http::header::HOST)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .collect();
        let has_authority = parts.uri.authority().is_some() || !hosts.is_empty();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| hosts.join(","));
        let body = RequestBody::new(body);
        let method = parts.method.as_str().to_string();
        let sent = self
            .first_target
            .lock()
            .ok()
            .and_then(|mut t| t.take())
            .filter(|t| t.starts_with('/'));
        let raw_path = sent.unwrap_or_else(|| {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        });
        let connect = parts.method == http::Method::CONNECT;
        let (path, early) = self.early_checks(&parts, has_authority, connect, raw_path);
        let snapshot = self.inner.snapshot.load_full();
        if early.is_none() {
            let conn = forwarded::Conn {
                remote: self.info.src.ip(),
                local: self.inner.ip,
                tls: self.tls,
            };
            let version = snapshot.tables.proxy.istio_version;
            let edge = forwarded::mutate(&mut parts.headers, &self.hcm, &conn, version);
            // Edge requests always get a new id (no
            // preserve_external_request_id in istiod's HCM).
            if edge || !parts.headers.contains_key("x-request-id") {
                if let Ok(v) = HeaderValue::from_str(&self.request_id()) {
                    parts.headers.insert("x-request-id", v);
                }
            }
        }
        let protocol = if self.h2 {
            "HTTP/2"
        } else if parts.version == http::Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let mut entry = LogEntry {
            start: Some(start),
            method: Some(method.clone()),
            // CONNECT has no :path.
            path: (!connect).then(|| path.clone()),
            protocol: Some(protocol.into()),
            // Counted as the body streams (the log reads it at the end).
            bytes_received: 0,
            downstream_local: Some(self.info.dst),
            downstream_remote: Some(self.info.src),
            requested_server_name: self.info.sni.clone(),
            ..Default::default()
        };
        for name in snapshot.logger.request_headers() {
            if let Some(v) = parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            {
                entry.req_headers.insert(name.clone(), v.to_string());
            }
        }
        if has_authority {
            entry
                .req_headers
                .insert(":authority".into(), authority.clone());
        }
        RequestCtx {
            parts,
            body,
            authority,
            path,
            method,
            entry,
            started,
            snapshot,
            injected: Vec::new(),
            early,
            upgrade: std::sync::Mutex::new(upgrade),
        }
    }

    /// conn_manager_impl.cc `decodeHeaders`, before routing: `Host` is
    /// required on HTTP/1.1, the path must be absolute, and it is
    /// normalised as the HCM says. The path to use, or the reply.
    fn early_checks(
        &self,
        parts: &http::request::Parts,
        has_authority: bool,
        connect: bool,
        raw: String,
    ) -> (String, Option<LocalReply>) {
        if !self.h2 && parts.version == http::Version::HTTP_11 && !has_authority {
            return (raw, Some(LocalReply::MissingHost));
        }
        if connect {
            return (raw, None);
        }
        if !raw.starts_with('/') {
            return (raw, Some(LocalReply::AbsolutePathRejected));
        }
        let opts = path::Options {
            normalize_path: self.hcm.normalize_path,
            merge_slashes: self.hcm.merge_slashes,
            escaped_slashes: self.hcm.path_with_escaped_slashes_action,
        };
        match path::normalize(&raw, &opts) {
            path::Normalized::Path(p) => (p, None),
            path::Normalized::Rejected => (raw, Some(LocalReply::PathNormalizationFailed)),
            path::Normalized::Redirect(location) => (
                raw,
                Some(LocalReply::Redirect {
                    status: 307,
                    location,
                }),
            ),
        }
    }

    /// A UUIDv4-shaped id from the proxy's seeded generator.
    fn request_id(&self) -> String {
        let a = self.inner.random_id();
        let b = self.inner.random_id();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}
