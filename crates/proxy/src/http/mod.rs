//! The HTTP connection manager: the codec checks (HTTP/1.0 → 426, garbage →
//! 400), then each request through named phases over one per-request
//! context (pingora's `ProxyHttp` phases are the model):
//!
//! 1. **decode** ([`request`]) — `:authority`, path, `x-request-id`, the
//!    log entry's request fields;
//! 2. **route** ([`router`]) — virtual host and route;
//! 3. **filters** ([`router`]) — the fault filter's delay and abort;
//! 4. **upstream** ([`router`]) — direct responses, redirects, the weighted
//!    cluster pick;
//! 5. **forward** ([`forward`]) — host choice, pool, retries, per-try and
//!    route timeouts;
//! 6. **log** — the response goes out through [`body::LoggedBody`], which
//!    writes the access-log line when it is done.
//!
//! Replies Envoy makes itself are [`LocalReply`] values.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshsim_tables::HttpConnectionManager;

use crate::accesslog::Flag;
use crate::io::{BoxIo, Rewind};
use crate::listener::ConnInfo;
use crate::snapshot::{RouteTable, Snapshot};
use crate::Inner;

mod body;
mod codec;
mod forward;
mod forwarded;
mod head;
mod headers;
mod path;
mod reply;
mod reqbody;
mod request;
mod router;
mod shadow;
mod tunnel;

pub use reply::LocalReply;

use body::LoggedBody;
use head::{Head, Limits};
use request::RequestCtx;

pub type Body = BoxBody<Bytes, hyper::Error>;

pub use reqbody::{BoxError, UpstreamBody, DEFAULT_BUFFER_LIMIT};

/// A request body on its way upstream.
pub type UpBody = BoxBody<Bytes, BoxError>;

pub(crate) fn empty_upstream_body() -> UpBody {
    UpstreamBody::empty().boxed()
}

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// The route table a connection used last, with the snapshot it came from:
/// while no push happens, requests reuse it without any lookup by name.
struct CachedRoutes {
    snap: Arc<Snapshot>,
    table: Option<Arc<RouteTable>>,
}

/// One HTTP connection's state, shared by its requests.
struct HttpCtx {
    cache: arc_swap::ArcSwapOption<CachedRoutes>,
    /// The first request's target as the client sent it (hyper's URI
    /// parser drops a fragment and refuses some bytes Envoy takes).
    first_target: std::sync::Mutex<Option<String>>,
    inner: Arc<Inner>,
    hcm: HttpConnectionManager,
    info: ConnInfo,
    h2: bool,
    tls: bool,
}

/// What upstream (if anyone) answered, for the log.
#[derive(Default)]
struct UpstreamInfo {
    host: Option<String>,
    local: Option<String>,
    cluster: Option<String>,
    transport_failure: Option<String>,
}

/// What the pipeline produced for one request.
struct Outcome {
    response: Response<Body>,
    flags: Vec<Flag>,
    details: String,
    upstream: UpstreamInfo,
    /// The upstream accepted a websocket upgrade: its side of the tunnel.
    tunnel: Option<hyper::upgrade::OnUpgrade>,
}

impl Outcome {
    fn local(reply: LocalReply) -> Outcome {
        Outcome::local_with(reply, UpstreamInfo::default(), vec![])
    }

    /// A local reply, with what was learned upstream and flags the
    /// pipeline adds before the reply's own (`URX` before `UF`...).
    fn local_with(reply: LocalReply, upstream: UpstreamInfo, mut flags: Vec<Flag>) -> Outcome {
        flags.extend(reply.flag());
        Outcome {
            response: reply.response(),
            details: reply.details(),
            flags,
            upstream,
            tunnel: None,
        }
    }
}

/// Serves HTTP on a connection whose chain has an HTTP connection manager.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    mut io: BoxIo,
    hcm: HttpConnectionManager,
    info: ConnInfo,
) {
    let mut h2 = match info.negotiated_alpn.as_deref() {
        Some("h2" | "istio-h2") => true,
        Some(_) => false,
        None => info.sniffed_alpn.iter().any(|a| a == "h2c"),
    };
    let tls = info.negotiated_alpn.is_some() || !info.peer_sans.is_empty();
    let mut first_target = None;
    if !h2 {
        // The HTTP/1 codec's checks on the first head, before hyper: Envoy's
        // verdicts and replies (head.rs).
        let mut buf = Vec::new();
        let limits = Limits {
            accept_http_10: hcm.http_protocol_options.accept_http_10,
            ..Limits::default()
        };
        match codec::read_head(&mut io, &mut buf, &limits).await {
            Head::Accepted {
                len,
                rewritten,
                target,
            } => {
                if let Some(mut r) = rewritten {
                    r.extend_from_slice(&buf[len..]);
                    buf = r;
                }
                first_target = Some(target);
            }
            Head::H2Preface => h2 = true,
            Head::Rejected(r) => return codec::codec_reply(&inner, io, &info, &hcm, r).await,
            Head::Incomplete => return,
        }
        io = Box::new(Rewind::new(buf, io));
    }
    let scope = inner.scope.clone();
    let ctx = Arc::new(HttpCtx {
        cache: arc_swap::ArcSwapOption::empty(),
        first_target: std::sync::Mutex::new(first_target),
        inner,
        hcm,
        info,
        h2,
        tls,
    });
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
    });
    let io = TokioIo::new(io);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(scope)
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    }
}

/// `server:` on responses: the HCM's `server_name`, else Envoy's default.
fn server_name(hcm: &HttpConnectionManager) -> &str {
    hcm.server_name.as_deref().unwrap_or("envoy")
}

impl HttpCtx {
    /// One request through the phases.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let mut rq = self.decode(req);
        let outcome = self.process(&mut rq).await;
        self.respond(rq, outcome)
    }

    /// route → filters → upstream → forward.
    async fn process(&self, rq: &mut RequestCtx) -> Outcome {
        if let Some(reply) = rq.early.take() {
            return Outcome::local(reply);
        }
        // CONNECT matches only routes with a connect matcher (istiod
        // writes none): no route, and the connection is closed.
        if rq.parts.method == http::Method::CONNECT {
            let mut o = Outcome::local(LocalReply::NoRoute);
            o.response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return o;
        }
        let table = self.route_table(&rq.snapshot);
        let (table, vi, ri) = match self.route(table, rq) {
            Ok(found) => found,
            Err(reply) => return Outcome::local(reply),
        };
        let route = &table.config.virtual_hosts[vi].routes[ri];
        rq.entry.route_name = (!route.name.is_empty()).then(|| route.name.clone());
        if let Err(reply) = self.fault(route, rq).await {
            return Outcome::local_with(reply, UpstreamInfo::default(), rq.injected.clone());
        }
        let mut o = match self.upstream(route, &table.targets[vi][ri], rq) {
            Ok((target, cluster, name)) => {
                self.finalize_request(rq, route, target, headers::picked_weight(target, &name));
                self.shadow(rq, route, target, &table.mirrors[vi][ri]);
                self.forward(rq, route, target, cluster, name).await
            }
            Err(reply) => Outcome::local(reply),
        };
        o.flags.splice(0..0, rq.injected.iter().copied());
        o
    }

    /// The log phase: the response headers Envoy adds, the log entry's
    /// response fields, and a body that logs the line when it is done.
    fn respond(&self, rq: RequestCtx, outcome: Outcome) -> Response<Body> {
        let Outcome {
            mut response,
            flags,
            details,
            upstream,
            tunnel,
        } = outcome;
        response.headers_mut().insert(
            http::header::SERVER,
            HeaderValue::from_str(server_name(&self.hcm))
                .unwrap_or(HeaderValue::from_static("envoy")),
        );
        let RequestCtx {
            mut entry,
            snapshot,
            started,
            upgrade,
            body,
            ..
        } = rq;
        let logger = snapshot.logger.clone();
        entry.response_code = response.status().as_u16();
        if details == reply::DOWNSTREAM_DISCONNECT {
            // No response reached the client: Envoy logs code 0.
            entry.response_code = 0;
        }
        entry.flags = flags;
        entry.details = Some(details);
        entry.upstream_host = upstream.host;
        entry.upstream_local = upstream.local;
        entry.upstream_cluster = upstream.cluster;
        entry.transport_failure_reason = upstream.transport_failure;
        for name in logger.response_headers() {
            if let Some(v) = response
                .headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            {
                entry.resp_headers.insert(name.clone(), v.to_string());
            }
        }
        let downstream = upgrade.lock().ok().and_then(|mut u| u.take());
        if let (Some(up), Some(down)) = (tunnel, downstream) {
            // The stream is logged when the tunnel closes, with its bytes.
            tunnel::spawn(&self.inner, down, up, entry, logger, started);
            return response;
        }
        let (rparts, rbody) = response.into_parts();
        let inbound = snapshot.listener(self.info.listener).traffic_direction
            == meshsim_tables::TrafficDirection::Inbound;
        let peer = self
            .info
            .peer_sans
            .iter()
            .find(|s| s.starts_with("spiffe://"))
            .cloned();
        let logged = LoggedBody {
            inner: rbody,
            received: Some(body.received),
            metrics: Some((self.inner.clone(), inbound, peer)),
            entry: Some(entry),
            logger,
            started,
            sent: 0,
        };
        Response::from_parts(rparts, logged.boxed())
    }
}
