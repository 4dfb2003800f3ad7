//! Request mirroring (router.cc `doShadowing`, the route's
//! `request_mirror_policies`): for each policy whose fraction the draw
//! hits, a copy of the request goes to the policy's cluster with its Host
//! suffixed `-shadow` (unless the policy disables it, as istiod does from
//! 1.28); nobody waits for it and its response is thrown away. The
//! mirroring proxy logs nothing for it; the receiving side logs it as any
//! request.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http_body_util::BodyExt;
use meshsim_tables::{Route, RouteTarget};

use super::headers::upstream_path;
use super::request::RequestCtx;
use super::HttpCtx;
use crate::upstream::{self, ClusterRt};

/// How long a shadow request may live when the route sets no timeout
/// (Envoy's async client would otherwise wait as long as the upstream).
const SHADOW_LIMIT: Duration = Duration::from_secs(15);

/// `host` with `-shadow` before its port (`shadowAppendedHost`).
pub(super) fn shadow_host(host: &str) -> String {
    let port_start = if host.starts_with('[') {
        host.rfind("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    match port_start {
        Some(i) => format!("{}-shadow{}", &host[..i], &host[i..]),
        None => format!("{host}-shadow"),
    }
}

impl HttpCtx {
    /// Sends the shadow copies the route asks for; returns at once.
    pub(super) fn shadow(
        &self,
        rq: &RequestCtx,
        route: &Route,
        target: &RouteTarget,
        clusters: &[Option<Arc<ClusterRt>>],
    ) {
        for (policy, cluster) in target.request_mirror_policies.iter().zip(clusters) {
            // A mirror cluster that does not exist is skipped, as Envoy's
            // router does when the cluster lookup fails.
            let Some(cluster) = cluster.clone() else {
                continue;
            };
            if !policy.runtime_fraction.hit(self.inner.random()) {
                continue;
            }
            let path = upstream_path(route, target, &rq.path);
            let mut req = self.upstream_request(rq, target, &path, 1, rq.body.shadow());
            if !policy.disable_shadow_host_suffix_append {
                let host = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(shadow_host);
                if let Some(v) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
            let authority = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let limit = target.timeout.as_timeout().unwrap_or(SHADOW_LIMIT);
            let inner = self.inner.clone();
            let dst = self.info.dst;
            self.inner.scope.spawn(async move {
                let send = async {
                    let host = cluster
                        .choose(dst)
                        .ok()?
                        .resolved(inner.env.as_ref())
                        .with_auto_sni(&cluster, &authority);
                    let mut lease = upstream::lease(&inner, &cluster, &host).await.ok()?;
                    let resp = lease.send(req).await.ok()?;
                    resp.into_body().collect().await.ok()
                };
                let _ = tokio::time::timeout(limit, send).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn shadow_suffix_goes_before_the_port() {
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews.shop:9080"), "reviews.shop-shadow:9080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
    }
}
