//! The route, filter and upstream phases: the connection's route table (by
//! RDS name or inline), virtual-host and route selection, the fault
//! filter (which runs before the router; route.go `translateFault` puts its
//! config on the route), direct responses and redirects, and the weighted
//! cluster pick. Clusters were resolved to handles when the tables were
//! pushed: nothing here looks anything up by name.

use std::sync::Arc;

use meshsim_tables::route_match::find_route;
use meshsim_tables::vhost_match::{find_virtual_host, strip_port};
use meshsim_tables::weighted::pick_weighted;
use meshsim_tables::{ClusterSpecifier, Redirect, Route, RouteAction, RouteTarget, TlsRequirement};

use super::request::RequestCtx;
use super::{CachedRoutes, HttpCtx, LocalReply};
use crate::accesslog::Flag;
use crate::snapshot::{RouteTable, Snapshot};
use crate::upstream::ClusterRt;

/// A route's target with the cluster the pick chose (and its name).
pub(super) type Upstream<'r> = (&'r RouteTarget, Arc<ClusterRt>, String);

impl HttpCtx {
    /// This connection's route table in `snap` (RDS updates apply to the
    /// next request, as in Envoy).
    pub(super) fn route_table(&self, snap: &Arc<Snapshot>) -> Option<Arc<RouteTable>> {
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

    /// The route phase: virtual host by `:authority`, then route.
    pub(super) fn route(
        &self,
        table: Option<Arc<RouteTable>>,
        rq: &RequestCtx,
    ) -> Result<(Arc<RouteTable>, usize, usize), LocalReply> {
        let table = table.ok_or(LocalReply::NoRouteConfig)?;
        let view = rq.view();
        let vi = find_virtual_host(&table.config, &rq.authority).ok_or(LocalReply::NoRoute)?;
        let vhost = &table.config.virtual_hosts[vi];
        if let Some(location) = ssl_redirect(vhost.require_tls, rq) {
            return Err(LocalReply::Redirect {
                status: 301,
                location,
            });
        }
        let ri = find_route(vhost, &view).ok_or(LocalReply::NoRoute)?;
        Ok((table, vi, ri))
    }

    /// The fault filter: maybe a delay (`DI`), then maybe an abort.
    pub(super) async fn fault(&self, route: &Route, rq: &mut RequestCtx) -> Result<(), LocalReply> {
        let Some(f) = route.typed_per_filter_config.as_ref().map(|c| &c.fault) else {
            return Ok(());
        };
        if let Some(d) = f.delay.as_ref() {
            if d.percentage.hit(self.inner.random()) {
                tokio::time::sleep(d.fixed_delay.get()).await;
                rq.injected.push(Flag::DelayInjected);
            }
        }
        match f.abort.as_ref() {
            Some(a) if a.percentage.hit(self.inner.random()) => Err(LocalReply::FaultAbort {
                status: u16::try_from(a.http_status).unwrap_or(500),
            }),
            _ => Ok(()),
        }
    }

    /// The upstream phase: a direct response or redirect ends here;
    /// otherwise the (weighted) cluster the request goes to.
    pub(super) fn upstream<'r>(
        &self,
        route: &'r Route,
        targets: &[Option<Arc<ClusterRt>>],
        rq: &RequestCtx,
    ) -> Result<Upstream<'r>, LocalReply> {
        let target = match &route.action {
            RouteAction::DirectResponse(d) => {
                return Err(LocalReply::DirectResponse {
                    status: d.status,
                    body: d
                        .body
                        .as_ref()
                        .map(|b| b.inline_string.clone())
                        .unwrap_or_default(),
                })
            }
            RouteAction::Redirect(r) => return Err(self.redirect(r, rq)),
            RouteAction::Route(t) => t,
        };
        let (idx, name) = match &target.destination {
            ClusterSpecifier::Cluster(c) => (0, c.as_str()),
            ClusterSpecifier::WeightedClusters(w) => {
                let i = pick_weighted(w, self.inner.random()).ok_or(LocalReply::ClusterNotFound)?;
                (i, w.clusters[i].name.as_str())
            }
        };
        // router.cc sets the upstream cluster info only once the cluster is
        // found, so `%UPSTREAM_CLUSTER%` of an NC reply is `-`.
        let cluster = targets
            .get(idx)
            .cloned()
            .flatten()
            .ok_or(LocalReply::ClusterNotFound)?;
        Ok((target, cluster, name.to_string()))
    }

    /// A route's redirect: Envoy's `Http::Utility::newUri`.
    fn redirect(&self, r: &Redirect, rq: &RequestCtx) -> LocalReply {
        let proto = forwarded_proto(rq);
        let scheme = match (&r.scheme_redirect, r.https_redirect) {
            (Some(s), _) => s.clone(),
            (None, Some(true)) => "https".to_string(),
            (None, _) => proto
                .map(str::to_string)
                .unwrap_or_else(|| if self.tls { "https" } else { "http" }.to_string()),
        };
        let port = r.port_redirect.map(|p| format!(":{p}")).unwrap_or_default();
        let host = r.host_redirect.clone().unwrap_or_else(|| {
            request_host(&rq.authority, &scheme, !port.is_empty(), proto).to_string()
        });
        let path = match &r.path_redirect {
            // The request's query stays unless the new path has one.
            Some(p) if !p.contains('?') => match rq.path.find('?') {
                Some(q) => format!("{p}{}", &rq.path[q..]),
                None => p.clone(),
            },
            Some(p) => p.clone(),
            None => rq.path.clone(),
        };
        let slash = if path.starts_with('/') { "" } else { "/" };
        LocalReply::Redirect {
            status: r.response_code,
            location: format!("{scheme}://{host}{port}{slash}{path}"),
        }
    }
}

/// `x-forwarded-proto` as the connection manager left it.
fn forwarded_proto(rq: &RequestCtx) -> Option<&str> {
    rq.parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
}

/// The virtual host's `require_tls` (config_impl.cc
/// `VirtualHostImpl::getRouteFromEntries`): a request whose
/// `x-forwarded-proto` is not `https` gets `SslRedirectRoute`, a 301 to
/// `https://` + the Host header as sent (port and all) + the path
/// (`Http::Utility::createSslRedirectPath`).
fn ssl_redirect(req: TlsRequirement, rq: &RequestCtx) -> Option<String> {
    let https = forwarded_proto(rq) == Some("https");
    let internal = rq
        .parts
        .headers
        .get("x-envoy-internal")
        .is_some_and(|v| v == "true");
    let redirect = match req {
        TlsRequirement::None => false,
        TlsRequirement::All => !https,
        TlsRequirement::ExternalOnly => !https && !internal,
    };
    redirect.then(|| format!("https://{}{}", rq.authority, rq.path))
}

/// The host a redirect keeps (`Http::Utility::processRequestHost`): its
/// port goes when the redirect names a port, or when the scheme changes
/// and the port was the default of the request's scheme (`:80` for
/// `http`, `:443` for `https`); otherwise the Host header stays as sent.
fn request_host<'a>(
    authority: &'a str,
    new_scheme: &str,
    new_port: bool,
    proto: Option<&str>,
) -> &'a str {
    let host = strip_port(authority);
    if host.len() == authority.len() {
        return authority;
    }
    let port = &authority[host.len()..];
    let proto = proto.unwrap_or_default();
    let remove = new_port
        || (new_scheme != proto
            && ((proto == "https" && port == ":443") || (proto == "http" && port == ":80")));
    if remove {
        host
    } else {
        authority
    }
}

#[cfg(test)]
mod tests {
    use super::request_host;

    // Envoy's test/common/http/utility_test.cc `processRequestHost` cases.
    #[test]
    fn redirect_host_keeps_a_port_unless_it_was_the_default() {
        assert_eq!(
            request_host("a.example:80", "https", false, Some("http")),
            "a.example"
        );
        assert_eq!(
            request_host("a.example:8080", "https", false, Some("http")),
            "a.example:8080"
        );
        assert_eq!(
            request_host("a.example:80", "http", false, Some("http")),
            "a.example:80"
        );
        assert_eq!(
            request_host("a.example:443", "http", false, Some("https")),
            "a.example"
        );
        assert_eq!(
            request_host("a.example:8080", "http", true, Some("http")),
            "a.example"
        );
        assert_eq!(
            request_host("[::1]:80", "https", false, Some("http")),
            "[::1]"
        );
        assert_eq!(
            request_host("a.example", "https", true, Some("http")),
            "a.example"
        );
    }
}
