//! The HTTP connection manager and router: HTTP/1.0 rejection (`426`),
//! codec errors (`400 DPE`), virtual-host and route selection, weighted
//! clusters, retries and timeouts, local replies with Envoy's flags and
//! details, header handling, and one access-log entry per request.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshsim_tables::route_match::{find_route, RequestView};
use meshsim_tables::vhost_match::find_virtual_host;
use meshsim_tables::weighted::pick_weighted;
use meshsim_tables::{
    ClusterSpecifier, HttpConnectionManager, RetryPolicy, Route, RouteAction, RouteTarget,
};

use crate::accesslog::{Flag, LogEntry};
use crate::io::{BoxIo, Rewind};
use crate::listener::ConnInfo;
use crate::upstream::{self, ClusterStats, UpstreamError};
use crate::Inner;

mod body;
mod codec;

use body::LoggedBody;

use codec::{local_codec_reply, read_request_line, LineVerdict};

pub type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// The route table a connection used last, with the snapshot it came from:
/// while no push happens, requests reuse it without any lookup by name.
struct CachedRoutes {
    snap: Arc<crate::snapshot::Snapshot>,
    table: Option<Arc<crate::snapshot::RouteTable>>,
}

struct HttpCtx {
    cache: arc_swap::ArcSwapOption<CachedRoutes>,
    inner: Arc<Inner>,
    hcm: HttpConnectionManager,
    info: ConnInfo,
    inbound: bool,
    h2: bool,
    tls: bool,
}

/// Serves HTTP on a connection whose chain has an HTTP connection manager.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    mut io: BoxIo,
    hcm: HttpConnectionManager,
    info: ConnInfo,
    inbound: bool,
) {
    let h2 = match info.negotiated_alpn.as_deref() {
        Some("h2" | "istio-h2") => true,
        Some(_) => false,
        None => info.sniffed_alpn.iter().any(|a| a == "h2c"),
    };
    let tls = info.negotiated_alpn.is_some() || !info.peer_sans.is_empty();
    if !h2 {
        // http1 codec checks before hyper sees the bytes: Envoy's messages.
        let mut buf = Vec::new();
        let verdict = read_request_line(&mut io, &mut buf).await;
        let accept10 = hcm.http_protocol_options.accept_http_10;
        match verdict {
            LineVerdict::Http11 => {}
            LineVerdict::Http10 if accept10 => {}
            LineVerdict::Http10 => {
                return local_codec_reply(&inner, io, &info, 426, "Upgrade Required", "low_version")
                    .await
            }
            LineVerdict::Garbage => {
                return local_codec_reply(
                    &inner,
                    io,
                    &info,
                    400,
                    "Bad Request",
                    "http1.codec_error",
                )
                .await
            }
            LineVerdict::Closed => return,
        }
        io = Box::new(Rewind::new(buf, io));
    }
    let ctx = Arc::new(HttpCtx {
        cache: arc_swap::ArcSwapOption::empty(),
        inner,
        hcm,
        info,
        inbound,
        h2,
        tls,
    });
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
    });
    let io = TokioIo::new(io);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

fn server_name(inbound: bool) -> &'static str {
    if inbound {
        "istio-envoy"
    } else {
        "envoy"
    }
}

struct ReqView<'a> {
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

/// What the router decided for one request.
struct Outcome {
    response: Response<Body>,
    flags: Vec<Flag>,
    details: String,
    upstream_host: Option<String>,
    upstream_local: Option<String>,
    cluster: Option<String>,
    transport_failure: Option<String>,
}

impl Outcome {
    fn local(status: u16, body: &str, flags: Vec<Flag>, details: &str) -> Outcome {
        let mut r = Response::new(full(body.to_string()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if !body.is_empty() {
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
        }
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        Outcome {
            response: r,
            flags,
            details: details.into(),
            upstream_host: None,
            upstream_local: None,
            cluster: None,
            transport_failure: None,
        }
    }
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

impl HttpCtx {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let start = SystemTime::now();
        self.inner
            .server
            .downstream_rq_total
            .fetch_add(1, Ordering::Relaxed);
        let (mut parts, body) = req.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            })
            .unwrap_or_default();
        if !parts.headers.contains_key("x-request-id") {
            let id = self.request_id();
            if let Ok(v) = HeaderValue::from_str(&id) {
                parts.headers.insert("x-request-id", v);
            }
        }
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let method = parts.method.as_str().to_string();
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
            path: Some(path.clone()),
            protocol: Some(protocol.into()),
            bytes_received: body.len() as u64,
            downstream_local: Some(self.info.dst),
            downstream_remote: Some(self.info.src),
            requested_server_name: self.info.sni.clone(),
            ..Default::default()
        };
        // Only what the log format prints is copied.
        let logger = self.inner.logger.load_full();
        for name in logger.request_headers() {
            if let Some(v) = parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            {
                entry.req_headers.insert(name.clone(), v.to_string());
            }
        }
        entry
            .req_headers
            .insert(":authority".into(), authority.clone());
        let snap = self.inner.snapshot.load_full();
        let view = ReqView {
            path: &path,
            method: &method,
            headers: &parts.headers,
            authority: &authority,
        };
        let table = self.route_table(&snap);
        let outcome = match &table {
            None => Outcome::local(
                404,
                "",
                vec![Flag::NoRouteFound],
                "route_configuration_not_found",
            ),
            Some(t) => {
                let found = find_virtual_host(&t.config, &authority).and_then(|vi| {
                    find_route(&t.config.virtual_hosts[vi], &view).map(|ri| (vi, ri))
                });
                match found {
                    None => Outcome::local(404, "", vec![Flag::NoRouteFound], "route_not_found"),
                    Some((vi, ri)) => {
                        let route = &t.config.virtual_hosts[vi].routes[ri];
                        entry.route_name = (!route.name.is_empty()).then(|| route.name.clone());
                        match self.inject_fault(route).await {
                            Err(aborted) => aborted,
                            Ok(injected) => {
                                let mut o = self
                                    .route(
                                        route,
                                        &t.targets[vi][ri],
                                        &parts,
                                        &authority,
                                        &path,
                                        body,
                                    )
                                    .await;
                                o.flags.extend(injected);
                                o
                            }
                        }
                    }
                }
            }
        };
        let Outcome {
            mut response,
            flags,
            details,
            upstream_host,
            upstream_local,
            cluster,
            transport_failure,
        } = outcome;
        response.headers_mut().insert(
            http::header::SERVER,
            HeaderValue::from_static(server_name(self.inbound)),
        );
        entry.response_code = response.status().as_u16();
        entry.flags = flags;
        entry.details = Some(details);
        entry.upstream_host = upstream_host;
        entry.upstream_local = upstream_local;
        entry.upstream_cluster = cluster;
        entry.transport_failure_reason = transport_failure;
        for name in logger.response_headers() {
            if let Some(v) = response
                .headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            {
                entry.resp_headers.insert(name.clone(), v.to_string());
            }
        }
        let (rparts, rbody) = response.into_parts();
        let logged = LoggedBody {
            inner: rbody,
            entry: Some(entry),
            logger: self.inner.logger.load_full(),
            started,
            sent: 0,
        };
        Response::from_parts(rparts, logged.boxed())
    }

    /// This connection's route table in the current snapshot (RDS updates
    /// apply to the next request, as in Envoy).
    fn route_table(
        &self,
        snap: &Arc<crate::snapshot::Snapshot>,
    ) -> Option<Arc<crate::snapshot::RouteTable>> {
        if let Some(c) = &*self.cache.load() {
            if Arc::ptr_eq(&c.snap, snap) {
                return c.table.clone();
            }
        }
        let table = match (&self.hcm.rds, &self.hcm.route_config) {
            (Some(r), _) => snap.route_table(&r.route_config_name),
            (None, Some(rc)) => Some(snap.resolve_inline(rc)),
            (None, None) => None,
        };
        self.cache.store(Some(Arc::new(CachedRoutes {
            snap: snap.clone(),
            table: table.clone(),
        })));
        table
    }

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

    /// The fault filter, which runs before the router (route.go
    /// `translateFault` puts its config on the route): maybe a delay, then
    /// maybe an abort (`Err`: the local reply). `Ok`: the flags to log.
    async fn inject_fault(&self, route: &Route) -> Result<Vec<Flag>, Outcome> {
        let mut injected = Vec::new();
        let Some(f) = route.typed_per_filter_config.as_ref().map(|c| &c.fault) else {
            return Ok(injected);
        };
        if let Some(d) = f.delay.as_ref() {
            if d.percentage.hit(self.inner.random()) {
                tokio::time::sleep(d.fixed_delay.get()).await;
                injected.push(Flag::DelayInjected);
            }
        }
        if let Some(a) = f.abort.as_ref() {
            if a.percentage.hit(self.inner.random()) {
                injected.push(Flag::FaultInjected);
                return Err(Outcome::local(
                    u16::try_from(a.http_status).unwrap_or(500),
                    "fault filter abort",
                    injected,
                    "fault_filter_abort",
                ));
            }
        }
        Ok(injected)
    }

    async fn route(
        &self,
        route: &Route,
        targets: &[Option<Arc<upstream::ClusterRt>>],
        parts: &http::request::Parts,
        authority: &str,
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let target: &RouteTarget = match &route.action {
            RouteAction::DirectResponse(d) => {
                let b = d
                    .body
                    .as_ref()
                    .map(|b| b.inline_string.as_str())
                    .unwrap_or("");
                return Outcome::local(d.status, b, vec![], "direct_response");
            }
            RouteAction::Redirect(r) => {
                let scheme = if r.https_redirect == Some(true) {
                    "https".to_string()
                } else {
                    r.scheme_redirect.clone().unwrap_or_else(|| {
                        if self.tls {
                            "https".into()
                        } else {
                            "http".into()
                        }
                    })
                };
                let host = r.host_redirect.clone().unwrap_or_else(|| {
                    meshsim_tables::vhost_match::strip_port(authority).to_string()
                });
                let port = r.port_redirect.map(|p| format!(":{p}")).unwrap_or_default();
                let p = r.path_redirect.clone().unwrap_or_else(|| path.to_string());
                let mut o = Outcome::local(r.response_code, "", vec![], "direct_response");
                if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{port}{p}")) {
                    o.response.headers_mut().insert(http::header::LOCATION, v);
                }
                return o;
            }
            RouteAction::Route(t) => t,
        };
        // Clusters were resolved at push time; a weighted pick indexes them.
        let (idx, cluster_name) = match &target.destination {
            ClusterSpecifier::Cluster(c) => (0, c.as_str()),
            ClusterSpecifier::WeightedClusters(w) => match pick_weighted(w, self.inner.random()) {
                Some(i) => (i, w.clusters[i].name.as_str()),
                None => {
                    return Outcome::local(503, "", vec![Flag::NoClusterFound], "cluster_not_found")
                }
            },
        };
        let cluster_name = cluster_name.to_string();
        // router.cc sets the upstream cluster info only once the cluster is
        // found, so `%UPSTREAM_CLUSTER%` of an NC reply is `-`.
        let Some(cluster) = targets.get(idx).cloned().flatten() else {
            return Outcome::local(503, "", vec![Flag::NoClusterFound], "cluster_not_found");
        };
        let timeout = target.timeout.as_timeout();
        let fut = self.forward(
            cluster,
            &cluster_name,
            route,
            target,
            parts,
            authority,
            path,
            body,
        );
        match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(o) => o,
                Err(_) => {
                    let mut o = Outcome::local(
                        504,
                        "upstream request timeout",
                        vec![Flag::UpstreamRequestTimeout],
                        "response_timeout",
                    );
                    o.cluster = Some(cluster_name);
                    o
                }
            },
            _ => fut.await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        cluster: Arc<upstream::ClusterRt>,
        cluster_name: &str,
        route: &Route,
        target: &RouteTarget,
        parts: &http::request::Parts,
        authority: &str,
        path: &str,
        body: Bytes,
    ) -> Outcome {
        let env = self.inner.env.as_ref();
        let retry = target.retry_policy.clone();
        let attempts = 1 + retry.as_ref().map(|r| r.num_retries).unwrap_or(0);
        let started = Instant::now();
        let mut last_err: Option<UpstreamError> = None;
        let mut last_host = None;
        let mut retried = false;
        let upstream_path = match (&target.prefix_rewrite, &route.match_.path) {
            (Some(rw), meshsim_tables::PathMatch::Prefix(p)) if path.starts_with(p.as_str()) => {
                format!("{rw}{}", &path[p.len()..])
            }
            (Some(rw), _) => rw.clone(),
            _ => path.to_string(),
        };
        let upstream_path = match &target.regex_rewrite {
            Some(rr) => {
                let (p, q) = upstream_path
                    .split_once('?')
                    .map(|(p, q)| (p.to_string(), Some(q.to_string())))
                    .unwrap_or((upstream_path.clone(), None));
                let rewritten = rr.pattern.replace_all(&p, &rr.substitution);
                match q {
                    Some(q) => format!("{rewritten}?{q}"),
                    None => rewritten,
                }
            }
            None => upstream_path,
        };
        for attempt in 1..=attempts {
            if attempt > 1 {
                retried = true;
                ClusterStats::inc(&cluster.stats.upstream_rq_retry);
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt - 1))).await;
            }
            let req = self.upstream_request(
                parts,
                authority,
                &upstream_path,
                target,
                route,
                attempt,
                body.clone(),
            );
            ClusterStats::inc(&cluster.stats.upstream_rq_total);
            let result = if upstream::is_original_dst(&cluster.config) {
                let dst = self.info.dst;
                last_host = Some(dst.to_string());
                let tls = match cluster.original_dst_tls(env) {
                    Ok(t) => t,
                    Err(e) => {
                        return Outcome::local(
                            503,
                            &e,
                            vec![Flag::UpstreamConnectionFailure],
                            "upstream_reset_before_response_started{remote_connection_failure}",
                        )
                    }
                };
                match upstream::one_off(env, dst, tls.as_ref()).await {
                    Ok((mut s, local)) => match s.send_request(req).await {
                        Ok(r) => Ok((r, local)),
                        Err(e) => Err(upstream::classify(&e)),
                    },
                    Err(e) => Err(e),
                }
            } else {
                let Some(ep) = cluster.pick() else {
                    let mut o = Outcome::local(
                        503,
                        "no healthy upstream",
                        vec![Flag::NoHealthyUpstream],
                        "no_healthy_upstream",
                    );
                    o.cluster = Some(cluster_name.to_string());
                    return o;
                };
                let e = &cluster.endpoints[ep];
                last_host = Some(format!("{}:{}", e.host, e.port));
                match upstream::acquire(&cluster, env, ep, cluster.config.http2_protocol_options)
                    .await
                {
                    Ok(mut lease) => {
                        let e = &cluster.endpoints[lease.endpoint];
                        last_host = Some(format!("{}:{}", e.host, e.port));
                        let local = lease.local.clone();
                        lease.send(req).await.map(|r| (r, local))
                    }
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok((resp, local)) => {
                    let status = resp.status().as_u16();
                    let retriable = retry.as_ref().is_some_and(|r| retriable_status(r, status));
                    if retriable && attempt < attempts {
                        continue;
                    }
                    count_status(&cluster.stats, status);
                    let mut flags = vec![];
                    if retriable && attempts > 1 {
                        flags.push(Flag::UpstreamRetryLimitExceeded);
                    }
                    let (mut rp, rb) = resp.into_parts();
                    for h in HOP_BY_HOP {
                        rp.headers.remove(h);
                    }
                    let ms = started.elapsed().as_millis().to_string();
                    if let Ok(v) = HeaderValue::from_str(&ms) {
                        rp.headers.insert("x-envoy-upstream-service-time", v);
                    }
                    for h in &route.headers.response_headers_to_remove {
                        rp.headers.remove(h.as_str());
                    }
                    for h in &route.headers.response_headers_to_add {
                        if let (Ok(k), Ok(v)) = (
                            HeaderName::from_bytes(h.header.key.as_bytes()),
                            HeaderValue::from_str(&h.header.value),
                        ) {
                            if h.append_action == meshsim_tables::AppendAction::AppendIfExistsOrAdd
                            {
                                rp.headers.append(k, v);
                            } else {
                                rp.headers.insert(k, v);
                            }
                        }
                    }
                    return Outcome {
                        response: Response::from_parts(rp, rb.boxed()),
                        flags,
                        details: "via_upstream".into(),
                        upstream_host: last_host,
                        upstream_local: Some(local),
                        cluster: Some(cluster_name.to_string()),
                        transport_failure: None,
                    };
                }
                Err(e) => {
                    let retriable = retry.as_ref().is_some_and(|r| retriable_error(r, &e));
                    last_err = Some(e);
                    if !(retriable && attempt < attempts) {
                        break;
                    }
                }
            }
        }
        let e = last_err.unwrap_or(UpstreamError::ConnectionTermination);
        let prefix = if retried {
            "retried and the latest reset reason: "
        } else {
            "reset reason: "
        };
        let body = format!(
            "upstream connect error or disconnect/reset before headers. {prefix}{}",
            e.reset_reason()
        );
        let mut flags = vec![e.flag()];
        if retried && retry.as_ref().is_some_and(|r| retriable_error(r, &e)) {
            flags.push(Flag::UpstreamRetryLimitExceeded);
        }
        count_status(&cluster.stats, 503);
        let mut o = Outcome::local(503, &body, flags, &e.details());
        if matches!(e, UpstreamError::Overflow) {
            o.response
                .headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        o.upstream_host = if matches!(e, UpstreamError::Overflow) {
            None
        } else {
            last_host
        };
        o.cluster = Some(cluster_name.to_string());
        o.transport_failure = e.transport_failure_reason();
        o
    }

    #[allow(clippy::too_many_arguments)]
    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        authority: &str,
        path: &str,
        target: &RouteTarget,
        route: &Route,
        attempt: u32,
        body: Bytes,
    ) -> Request<Body> {
        let mut b = Request::builder().method(parts.method.clone()).uri(path);
        let headers = b.headers_mut();
        if let Some(h) = headers {
            for (k, v) in &parts.headers {
                if !HOP_BY_HOP.contains(&k.as_str()) && k != http::header::HOST {
                    h.append(k.clone(), v.clone());
                }
            }
            let host = target.host_rewrite_literal.as_deref().unwrap_or(authority);
            if let Ok(v) = HeaderValue::from_str(host) {
                h.insert(http::header::HOST, v);
            }
            if !h.contains_key("x-forwarded-proto") {
                h.insert(
                    "x-forwarded-proto",
                    HeaderValue::from_static(if self.tls && !self.inbound {
                        "https"
                    } else {
                        "http"
                    }),
                );
            }
            h.insert("x-envoy-attempt-count", HeaderValue::from(attempt));
            crate::xfcc::mutate(h, &self.hcm, &self.info);
            for name in &route.headers.request_headers_to_remove {
                h.remove(name.as_str());
            }
            for o in &route.headers.request_headers_to_add {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(o.header.key.as_bytes()),
                    HeaderValue::from_str(&o.header.value),
                ) {
                    if o.append_action == meshsim_tables::AppendAction::AppendIfExistsOrAdd {
                        h.append(k, v);
                    } else {
                        h.insert(k, v);
                    }
                }
            }
        }
        b.body(full(body))
            .unwrap_or_else(|_| Request::new(full(Bytes::new())))
    }
}

fn retriable_status(r: &RetryPolicy, status: u16) -> bool {
    use meshsim_tables::RetryCondition as C;
    let on = |c: C| r.retry_on.contains(&c);
    (on(C::RetriableStatusCodes) && r.retriable_status_codes.contains(&status))
        || (on(C::FiveXx) && status >= 500)
        || (on(C::GatewayError) && matches!(status, 502..=504))
}

fn retriable_error(r: &RetryPolicy, e: &UpstreamError) -> bool {
    use meshsim_tables::RetryCondition as C;
    let on = |c: C| r.retry_on.contains(&c);
    match e {
        UpstreamError::ConnectFailure(_) | UpstreamError::TlsFailure(_) => {
            on(C::ConnectFailure) || on(C::FiveXx) || on(C::GatewayError)
        }
        UpstreamError::ConnectionTermination | UpstreamError::ProtocolError => {
            on(C::Reset) || on(C::FiveXx)
        }
        UpstreamError::Overflow | UpstreamError::NoHealthyUpstream => false,
    }
}

fn count_status(s: &ClusterStats, status: u16) {
    match status {
        200..=299 => ClusterStats::inc(&s.upstream_rq_2xx),
        400..=499 => ClusterStats::inc(&s.upstream_rq_4xx),
        500..=599 => ClusterStats::inc(&s.upstream_rq_5xx),
        _ => {}
    }
}
