//! The admin `/config_dump` envelope: the bootstrap istio-agent writes
//! (node, the static `15090`/`15021` listeners and bootstrap clusters, ADS)
//! and the dynamic listeners, clusters, routes and endpoints istiod pushed,
//! each with `version_info` and `last_updated`, as
//! `envoy.admin.v3.*ConfigDump` messages.

use serde_json::{json, Value};

use super::{
    any, cluster, extension, listener, load_assignment, route_configuration, type_url, typed,
};
use crate::{ProxyKind, ProxyTables};

/// What a dump reports besides the tables: the version and time of the
/// push, and the SDS secrets the proxy holds.
#[derive(Debug, Clone)]
pub struct DumpMeta {
    /// istiod's `version_info` (`2026-12-02T02:14:22Z/3`).
    pub version_info: String,
    /// RFC 3339 time of the last update.
    pub last_updated: String,
    pub secrets: Vec<super::admin::DumpSecret>,
}

impl Default for DumpMeta {
    fn default() -> Self {
        Self {
            version_info: "meshsim/1".into(),
            last_updated: "1970-01-01T00:00:00Z".into(),
            secrets: Vec::new(),
        }
    }
}

const LISTENER: &str = "envoy.config.listener.v3.Listener";
const CLUSTER: &str = "envoy.config.cluster.v3.Cluster";

fn admin(message: &str) -> String {
    type_url(&format!("envoy.admin.v3.{message}"))
}

/// `node.id` as istio-agent sets it: `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`.
pub fn node_id(t: &ProxyTables) -> String {
    let kind = match t.proxy.kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Router => "router",
    };
    format!(
        "{kind}~{}~{}~{}.svc.cluster.local",
        t.proxy.ip, t.proxy.id, t.proxy.namespace
    )
}

/// The node: id, cluster (`app.namespace`) and the metadata istioctl reads.
pub(crate) fn node(t: &ProxyTables) -> Value {
    let p = &t.proxy;
    let app = p
        .labels
        .get("app")
        .or_else(|| p.labels.get("app.kubernetes.io/name"))
        .cloned()
        .unwrap_or_else(|| p.pod.clone());
    json!({
        "id": node_id(t),
        "cluster": format!("{app}.{}", p.namespace),
        // The Envoy this Istio release ships (Istio 1.x runs Envoy 1.(x+8)).
        "user_agent_name": "envoy",
        "user_agent_build_version": {
            "version": {"major_number": 1, "minor_number": p.istio_version.envoy_minor(), "patch": 0},
            "metadata": {"revision.status": "Clean", "build.type": "RELEASE", "ssl.version": "BoringSSL"},
        },
        "metadata": {
            "ISTIO_VERSION": p.istio_version,
            "NAME": p.pod,
            "NAMESPACE": p.namespace,
            "CLUSTER_ID": "Kubernetes",
            "LABELS": p.labels,
            "INSTANCE_IPS": p.ip.to_string(),
            "MESH_ID": "cluster.local",
        },
    })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint":
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    })
}

fn pipe_cluster(name: &str, path: &str) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint":
            {"address": {"pipe": {"path": path}}}}]}]},
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":
            typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                json!({"explicit_http_config": {"http2_protocol_options": {}}}))},
    })
}

/// A bootstrap listener answering one path from one cluster (Istio's
/// Prometheus merge on 15090, readiness on 15021).
fn static_listener(name: &str, port: u16, path: &str, cluster: &str, stat: &str) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [extension(
            "envoy.filters.network.http_connection_manager",
            typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", json!({
                "stat_prefix": stat,
                "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"],
                    "routes": [{"match": {"prefix": path}, "route": {"cluster": cluster}}]}]},
                "http_filters": [extension("envoy.filters.http.router",
                    typed("envoy.extensions.filters.http.router.v3.Router", json!({})))],
            })),
        )]}],
    })
}

fn static_listeners() -> Vec<Value> {
    vec![
        static_listener(
            "0.0.0.0_15090",
            15090,
            "/stats/prometheus",
            "prometheus_stats",
            "stats",
        ),
        static_listener("0.0.0.0_15021", 15021, "/healthz/ready", "agent", "agent"),
    ]
}

pub(crate) fn static_clusters() -> Vec<Value> {
    vec![
        static_cluster("prometheus_stats", 15000),
        static_cluster("agent", 15020),
        pipe_cluster("sds-grpc", "./var/run/secrets/workload-spiffe-uds/socket"),
        pipe_cluster("xds-grpc", "./etc/istio/proxy/XDS"),
    ]
}

/// The bootstrap istio-agent generates for this proxy.
pub fn bootstrap(t: &ProxyTables) -> Value {
    let ads_source =
        json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"});
    json!({
        "node": node(t),
        "static_resources": {"listeners": static_listeners(), "clusters": static_clusters()},
        "dynamic_resources": {
            "lds_config": ads_source,
            "cds_config": ads_source,
            "ads_config": {
                "api_type": "GRPC",
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
    })
}

/// Inline route configurations of the listeners' HTTP connection managers:
/// Envoy dumps each as a static route config.
fn inline_routes(listeners: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for l in listeners {
        let chains = l["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&l["default_filter_chain"]));
        for fc in chains {
            for f in fc["filters"].as_array().into_iter().flatten() {
                let rc = &f["typed_config"]["route_config"];
                if !rc.is_null() {
                    out.push(rc.clone());
                }
            }
        }
    }
    out
}

/// Envoy's `/config_dump` (with `include_eds`) for these tables.
pub fn config_dump(t: &ProxyTables, meta: &DumpMeta) -> Value {
    let (v, at) = (&meta.version_info, &meta.last_updated);
    let cla_any = |cla: Value| any("envoy.config.endpoint.v3.ClusterLoadAssignment", cla);
    // Every pushed cluster's hosts: EDS assignments, and the inline ones of
    // STATIC / DNS clusters.
    let mut endpoints: Vec<Value> = t
        .endpoints
        .iter()
        .map(load_assignment)
        .chain(
            t.clusters
                .iter()
                .filter_map(|c| c.load_assignment.as_ref().map(load_assignment)),
        )
        .map(|cla| json!({"endpoint_config": cla_any(cla), "version_info": v, "last_updated": at}))
        .collect();
    endpoints.sort_by(|a, b| {
        a["endpoint_config"]["cluster_name"]
            .as_str()
            .cmp(&b["endpoint_config"]["cluster_name"].as_str())
    });
    let static_endpoints: Vec<Value> = static_clusters()
        .into_iter()
        .map(|c| {
            let mut cla = c["load_assignment"].clone();
            for llb in cla["endpoints"].as_array_mut().into_iter().flatten() {
                for ep in llb["lb_endpoints"].as_array_mut().into_iter().flatten() {
                    ep["health_status"] = json!("HEALTHY");
                }
            }
            json!({"endpoint_config": cla_any(cla), "last_updated": at})
        })
        .collect();
    let dynamic_listeners: Vec<Value> = t.listeners.iter().map(|l| listener(l, t)).collect();
    let mut all_listeners = static_listeners();
    all_listeners.extend(dynamic_listeners.iter().cloned());
    let route_any = |rc: Value| any("envoy.config.route.v3.RouteConfiguration", rc);
    let static_routes: Vec<Value> = inline_routes(&all_listeners)
        .into_iter()
        .map(|rc| json!({"route_config": route_any(rc), "last_updated": at}))
        .collect();
    let secrets: Vec<Value> = meta
        .secrets
        .iter()
        .map(|s| {
            json!({"name": s.name(), "version_info": v, "last_updated": at,
                   "secret": s.secret()})
        })
        .collect();
    // Envoy's order: bootstrap, clusters, endpoints (include_eds),
    // listeners, scoped routes, routes, secrets.
    json!({"configs": [
        {
            "@type": admin("BootstrapConfigDump"),
            "bootstrap": bootstrap(t),
            "last_updated": at,
        },
        {
            "@type": admin("ClustersConfigDump"),
            "version_info": v,
            "static_clusters": static_clusters().into_iter()
                .map(|c| json!({"cluster": any(CLUSTER, c), "last_updated": at})).collect::<Vec<_>>(),
            "dynamic_active_clusters": t.clusters.iter().map(|c| json!({
                "version_info": v, "cluster": any(CLUSTER, cluster(c)), "last_updated": at,
            })).collect::<Vec<_>>(),
        },
        {
            "@type": admin("EndpointsConfigDump"),
            "static_endpoint_configs": static_endpoints,
            "dynamic_endpoint_configs": endpoints,
        },
        {
            "@type": admin("ListenersConfigDump"),
            "version_info": v,
            "static_listeners": static_listeners().into_iter()
                .map(|l| json!({"listener": any(LISTENER, l), "last_updated": at})).collect::<Vec<_>>(),
            "dynamic_listeners": t.listeners.iter().zip(dynamic_listeners).map(|(l, rendered)| json!({
                "name": l.name,
                "active_state": {"version_info": v, "listener": any(LISTENER, rendered), "last_updated": at},
            })).collect::<Vec<_>>(),
        },
        {"@type": admin("ScopedRoutesConfigDump")},
        {
            "@type": admin("RoutesConfigDump"),
            "static_route_configs": static_routes,
            "dynamic_route_configs": t.route_configs.iter().map(|r| json!({
                "version_info": v,
                "route_config": route_any(route_configuration(r)),
                "last_updated": at,
            })).collect::<Vec<_>>(),
        },
        {
            "@type": admin("SecretsConfigDump"),
            "dynamic_active_secrets": secrets,
        },
    ]})
}
