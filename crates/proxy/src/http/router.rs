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
use meshsim_tables::{ClusterSpecifier, Redirect, Route, RouteAction, RouteTarget};

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
        let found = find_virtual_host(&table.config, &rq.authority)
            .and_then(|vi| find_route(&table.config.virtual_hosts[vi], &view).map(|ri| (vi, ri)));
        let (vi, ri) = found.ok_or(LocalReply::NoRoute)?;
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

    fn redirect(&self, r: &Redirect, rq: &RequestCtx) -> LocalReply {
        let scheme = if r.https_redirect == Some(true) {
            "https".to_string()
        } else {
            r.scheme_redirect
                .clone()
                .unwrap_or_else(|| if self.tls { "https" } else { "http" }.to_string())
        };
        let host = r
            .host_redirect
            .clone()
            .unwrap_or_else(|| strip_port(&rq.authority).to_string());
        let port = r.port_redirect.map(|p| format!(":{p}")).unwrap_or_default();
        let path = r.path_redirect.clone().unwrap_or_else(|| rq.path.clone());
        LocalReply::Redirect {
            status: r.response_code,
            location: format!("{scheme}://{host}{port}{path}"),
        }
    }
}
