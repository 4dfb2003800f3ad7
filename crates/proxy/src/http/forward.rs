//! The forward phase: attempts to the chosen cluster under the route's
//! retry policy (router.cc, retry_state_impl.cc) — each attempt picks a
//! host, checks a connection out of the pool (circuit breakers) and sends
//! the request, within the policy's `per_try_timeout`; the whole exchange
//! runs within the route's `timeout`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use meshsim_tables::{RetryCondition as C, RetryPolicy, Route, RouteTarget};

use super::headers::{mutate, picked_weight, upstream_path, HOP_BY_HOP};
use super::reply::CodecReject;
use super::reqbody::DownstreamBodyError;
use super::request::RequestCtx;
use super::{HttpCtx, LocalReply, Outcome, UpstreamInfo};
use crate::accesslog::Flag;
use crate::upstream::{self, ClusterRt, ClusterStats, Report, UpstreamError};

/// Why one attempt got no response.
enum AttemptError {
    Upstream(UpstreamError),
    /// The retry policy's `per_try_timeout` passed.
    PerTryTimeout,
}

/// What one attempt learned, answered or not.
struct Attempt {
    result: Result<Response<hyper::body::Incoming>, AttemptError>,
    host: Option<String>,
    local: Option<String>,
    /// The connection was ready in the pool (Envoy attaches it as soon as
    /// the headers are routed); `false` when it had to be opened.
    pooled: bool,
}

/// One request's way to its cluster: what every attempt needs.
struct Exchange<'a> {
    rq: &'a RequestCtx,
    route: &'a Route,
    target: &'a RouteTarget,
    cluster: &'a Arc<ClusterRt>,
    name: &'a str,
    /// The path upstream sees (rewrites applied).
    path: String,
    /// The attempt in flight when the route timeout fires: Envoy logs
    /// its host and local address with the UT.
    in_flight: std::sync::Mutex<UpstreamInfo>,
}

impl Exchange<'_> {
    fn upstream_info(&self, host: Option<String>, local: Option<String>) -> UpstreamInfo {
        UpstreamInfo {
            host,
            local,
            cluster: Some(self.name.to_string()),
            transport_failure: None,
        }
    }

    fn note_in_flight(&self, host: Option<String>, local: Option<String>) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.host = host;
            f.local = local;
        }
    }
}

impl HttpCtx {
    pub(super) async fn forward(
        &self,
        rq: &RequestCtx,
        route: &Route,
        target: &RouteTarget,
        cluster: Arc<ClusterRt>,
        name: String,
    ) -> Outcome {
        let x = Exchange {
            rq,
            route,
            target,
            cluster: &cluster,
            name: &name,
            path: upstream_path(route, target, &rq.path),
            in_flight: std::sync::Mutex::new(UpstreamInfo {
                cluster: Some(name.clone()),
                ..Default::default()
            }),
        };
        // router.cc: a request that may be retried is buffered as it
        // goes, up to the retry/shadow buffer limit.
        if target
            .retry_policy
            .as_ref()
            .is_some_and(|r| r.num_retries > 0)
        {
            rq.body.buffer_for_retries(super::DEFAULT_BUFFER_LIMIT);
        }
        let timeout = target.timeout.as_timeout();
        let result = match timeout {
            None => Ok(self.attempts(&x).await),
            Some(t) => tokio::time::timeout(t, self.attempts(&x)).await,
        };
        match result {
            Ok(o) => o,
            Err(_) => {
                ClusterStats::inc(&cluster.stats.upstream_rq_timeout);
                let info = x.in_flight.into_inner().unwrap_or_else(|p| p.into_inner());
                Outcome::local_with(LocalReply::ResponseTimeout, info, vec![])
            }
        }
    }

    /// Attempts until one answers with something not to retry, or the
    /// policy says stop.
    async fn attempts(&self, x: &Exchange<'_>) -> Outcome {
        let policy = x.target.retry_policy.as_ref();
        let name_transport =
            x.rq.snapshot
                .tables
                .proxy
                .istio_version
                .reply_names_transport_failure();
        let tries = 1 + policy.map_or(0, |r| r.num_retries);
        let started = tokio::time::Instant::now();
        for attempt in 1..=tries {
            if attempt > 1 {
                ClusterStats::inc(&x.cluster.stats.upstream_rq_retry);
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt - 1))).await;
            }
            let a = self.attempt(x, attempt).await;
            let info = x.upstream_info(a.host.clone(), a.local.clone());
            // The client's body broke: the codec's error, whatever
            // the upstream made of the truncated request.
            if let Some(e) = x.rq.body.error() {
                return body_failed(e, info, a.pooled, x.rq);
            }
            let more = attempt < tries;
            // A body past the buffer limit cannot be sent again: Envoy
            // drops the retry state (no retry, no URX).
            let replayable = !x.rq.body.overflowed();
            let retry = replayable
                && match &a.result {
                    Ok(resp) => policy.is_some_and(|r| retriable_status(r, resp.status().as_u16())),
                    Err(e) => policy.is_some_and(|r| retriable_failure(r, e)),
                };
            if retry && more {
                continue;
            }
            // URX: the policy wanted another try and none was left.
            let exhausted = retry && tries > 1;
            return match a.result {
                Ok(resp) => self.answered(resp, info, x, started, exhausted),
                Err(e) => failed(e, info, attempt > 1, exhausted, name_transport),
            };
        }
        // Not reached: the last attempt returns above.
        Outcome::local(LocalReply::UpstreamFailure {
            error: UpstreamError::ConnectionTermination,
            retried: tries > 1,
            name_transport,
        })
    }

    /// One attempt: host, connection, request, response headers — within
    /// the per-try timeout.
    async fn attempt(&self, x: &Exchange<'_>, n: u32) -> Attempt {
        let (rq, target, cluster) = (x.rq, x.target, x.cluster);
        let mut a = Attempt {
            result: Err(AttemptError::PerTryTimeout),
            host: None,
            local: None,
            pooled: false,
        };
        let host = match cluster.choose(self.info.dst) {
            Ok(h) => {
                let authority = target
                    .host_rewrite_literal
                    .as_deref()
                    .unwrap_or(&rq.authority);
                h.resolved(self.inner.env.as_ref())
                    .with_auto_sni(cluster, authority)
            }
            Err(e) => {
                a.result = Err(AttemptError::Upstream(e));
                return a;
            }
        };
        a.host = Some(host.label());
        x.note_in_flight(a.host.clone(), None);
        ClusterStats::inc(&cluster.stats.upstream_rq_total);
        let Some(body) = rq.body.attempt() else {
            a.result = Err(AttemptError::Upstream(UpstreamError::ConnectionTermination));
            return a;
        };
        let req = self.upstream_request(rq, target, &x.path, n, body);
        // The per-try deadline covers getting a connection and the response
        // headers; the connection's address is known once it is had.
        let deadline = target
            .retry_policy
            .as_ref()
            .and_then(|r| r.per_try_timeout)
            .and_then(|t| t.as_timeout())
            .map(|t| tokio::time::Instant::now() + t);
        let within = |d: Option<tokio::time::Instant>| async move {
            match d {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let lease = tokio::select! {
            l = upstream::lease(&self.inner, cluster, &host) => l,
            _ = within(deadline) => Err(UpstreamError::ConnectionTermination),
        };
        // What outlier detection hears of this attempt (an overflow is
        // not the host's fault).
        let report = |r: Report| {
            if let Some(i) = host.endpoint {
                cluster.report(i, r);
            }
        };
        let mut lease = match lease {
            Ok(l) => l,
            Err(_) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                ClusterStats::inc(&cluster.stats.upstream_rq_per_try_timeout);
                report(Report::LocalTimeout);
                return a;
            }
            Err(e) => {
                if !matches!(e, UpstreamError::Overflow) {
                    report(Report::LocalFailure);
                }
                a.result = Err(AttemptError::Upstream(e));
                return a;
            }
        };
        a.local = Some(lease.local.clone());
        a.pooled = lease.pooled;
        x.note_in_flight(a.host.clone(), a.local.clone());
        tokio::select! {
            r = lease.send(req) => {
                report(match &r {
                    Ok(resp) => Report::Status(resp.status().as_u16()),
                    Err(_) => Report::LocalFailure,
                });
                a.result = r.map_err(AttemptError::Upstream);
            }
            _ = within(deadline) => {
                ClusterStats::inc(&cluster.stats.upstream_rq_per_try_timeout);
                report(Report::LocalTimeout);
            }
        }
        a
    }

    /// The upstream answered: its response goes downstream, with Envoy's
    /// changes (hop-by-hop headers, service time, route header operations).
    fn answered(
        &self,
        mut resp: Response<hyper::body::Incoming>,
        upstream: UpstreamInfo,
        x: &Exchange<'_>,
        started: tokio::time::Instant,
        exhausted: bool,
    ) -> Outcome {
        let (route, cluster) = (x.route, x.cluster);
        cluster.stats.count_status(resp.status().as_u16());
        // 101 to a websocket upgrade: the connection becomes a tunnel, its
        // Connection / Upgrade headers go downstream.
        let tunnel = (resp.status() == http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| hyper::upgrade::on(&mut resp));
        let (mut rp, rb) = resp.into_parts();
        for h in HOP_BY_HOP {
            if tunnel.is_none() || !matches!(h, "connection" | "upgrade") {
                rp.headers.remove(h);
            }
        }
        // No service time on an upgrade's 101 (Envoy 1.36).
        let ms = started.elapsed().as_millis().to_string();
        if let (None, Ok(v)) = (&tunnel, HeaderValue::from_str(&ms)) {
            rp.headers.insert("x-envoy-upstream-service-time", v);
        }
        mutate(
            &mut rp.headers,
            &route.headers.response_headers_to_remove,
            &route.headers.response_headers_to_add,
        );
        if let Some(w) = picked_weight(x.target, x.name) {
            mutate(
                &mut rp.headers,
                &w.headers.response_headers_to_remove,
                &w.headers.response_headers_to_add,
            );
        }
        Outcome {
            response: Response::from_parts(rp, rb.boxed()),
            flags: if exhausted {
                vec![Flag::UpstreamRetryLimitExceeded]
            } else {
                vec![]
            },
            details: "via_upstream".into(),
            upstream,
            tunnel,
        }
    }
}

/// The client's request body failed mid-way: Envoy's codec error
/// (`400 DPE http1.codec_error`, the connection closed) or, for a client
/// that went away, `0 DC downstream_remote_disconnect`.
///
/// Envoy's codec meets the bad chunk in the same read as the head: the
/// router has attached an upstream connection only if one was ready in
/// the pool (its line then names the local address); a connection still
/// being opened is not in the line, and nothing was received (differential
/// case "a broken chunk in the request body", Envoy 1.36 — it logs `-` or
/// the address depending on its pool).
fn body_failed(
    e: DownstreamBodyError,
    mut info: UpstreamInfo,
    pooled: bool,
    rq: &RequestCtx,
) -> Outcome {
    let reply = match e {
        DownstreamBodyError::Codec => {
            if !pooled {
                info.local = None;
            }
            rq.body
                .received
                .store(0, std::sync::atomic::Ordering::Relaxed);
            LocalReply::Codec(CodecReject::Malformed)
        }
        DownstreamBodyError::Disconnect => LocalReply::DownstreamDisconnect,
    };
    Outcome::local_with(reply, info, vec![])
}

/// No usable response: the local reply for the last attempt's failure.
fn failed(
    e: AttemptError,
    mut info: UpstreamInfo,
    retried: bool,
    exhausted: bool,
    name_transport: bool,
) -> Outcome {
    let flags = if exhausted {
        vec![Flag::UpstreamRetryLimitExceeded]
    } else {
        vec![]
    };
    let reply = match e {
        AttemptError::PerTryTimeout => LocalReply::PerTryTimeout,
        AttemptError::Upstream(error) => {
            match &error {
                // The overflowing request never had a host.
                UpstreamError::Overflow => info.host = None,
                // No endpoint: no host, and nothing retried.
                UpstreamError::NoHealthyUpstream => {
                    info.host = None;
                    return Outcome::local_with(LocalReply::NoHealthyUpstream, info, vec![]);
                }
                _ => {}
            }
            info.transport_failure = error.transport_failure_reason();
            LocalReply::UpstreamFailure {
                error,
                retried,
                name_transport,
            }
        }
    };
    Outcome::local_with(reply, info, flags)
}

fn retriable_status(r: &RetryPolicy, status: u16) -> bool {
    let on = |c: C| r.retry_on.contains(&c);
    (on(C::RetriableStatusCodes) && r.retriable_status_codes.contains(&status))
        || (on(C::FiveXx) && status >= 500)
        || (on(C::GatewayError) && matches!(status, 502..=504))
}

/// retry_state_impl.cc `wouldRetryFromReset`: overflow never; `reset`,
/// `5xx` and `gateway-error` retry any reset (a per-try timeout is a local
/// reset); `connect-failure` retries failures to connect, and so does
/// `reset-before-request` (the request never started upstream).
fn retriable_failure(r: &RetryPolicy, e: &AttemptError) -> bool {
    let on = |c: C| r.retry_on.contains(&c);
    let any_reset = on(C::Reset) || on(C::FiveXx) || on(C::GatewayError);
    match e {
        AttemptError::PerTryTimeout => any_reset,
        AttemptError::Upstream(UpstreamError::Overflow | UpstreamError::NoHealthyUpstream) => false,
        AttemptError::Upstream(u) if u.is_connect_failure() => {
            any_reset || on(C::ConnectFailure) || on(C::ResetBeforeRequest)
        }
        AttemptError::Upstream(_) => any_reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str) -> RetryPolicy {
        RetryPolicy {
            retry_on: meshsim_tables::RetryOn::parse(on),
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: vec![],
            retry_host_predicate: vec![],
            host_selection_retry_max_attempts: 0,
        }
    }

    // retry_state_impl.cc wouldRetryFromReset: `reset-before-request`
    // retries a request that never started upstream (a failed connect),
    // not one the upstream reset after it was sent.
    #[test]
    fn reset_before_request_retries_only_unstarted_requests() {
        let p = policy("reset-before-request");
        let refused = AttemptError::Upstream(UpstreamError::ConnectFailure("refused".into()));
        let closed = AttemptError::Upstream(UpstreamError::ConnectionTermination);
        assert!(retriable_failure(&p, &refused));
        assert!(!retriable_failure(&p, &closed));
        assert!(!retriable_failure(&p, &AttemptError::PerTryTimeout));
        assert!(!retriable_status(&p, 503));
    }
}
