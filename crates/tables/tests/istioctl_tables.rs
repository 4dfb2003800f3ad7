//! istioctl's tables from hand-written config dumps: the situations
//! istioctl's own writer tests cover (istioctl/pkg/writer/envoy/configdump
//! testdata: a gateway route with no routes, prefix and path-prefix
//! matches, port-filtered endpoints, `all` with headers), with other names,
//! ports and hosts.

use meshsim_tables::istioctl::*;
use serde_json::{json, Value};

fn any(t: &str, mut v: Value) -> Value {
    v["@type"] = json!(format!("type.googleapis.com/{t}"));
    v
}

fn dump(configs: Vec<Value>) -> Value {
    json!({"configs": configs})
}

fn routes_dump() -> Value {
    let rc = |name: &str, vhosts: Value| json!({"route_config": any("envoy.config.route.v3.RouteConfiguration", json!({"name": name, "virtual_hosts": vhosts}))});
    dump(vec![any(
        "envoy.admin.v3.RoutesConfigDump",
        json!({
            "static_route_configs": [rc("", json!([{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}]}]))],
            "dynamic_route_configs": [
                rc("https.443.web.shop-gw.edge", json!([{"name": "blackhole:443", "domains": ["*"]}])),
                rc("8080", json!([
                    {"name": "catalog.store.svc.cluster.local:8080",
                     "domains": ["catalog.store.svc.cluster.local", "catalog.store.svc.cluster.local:8080", "catalog", "catalog:8080", "catalog.store.svc", "catalog.store.svc:8080", "catalog.store", "catalog.store:8080", "10.96.7.7", "10.96.7.7:8080"],
                     "routes": [
                        {"match": {"path_separated_prefix": "/v2"}, "route": {"cluster": "outbound|8080|v2|catalog.store.svc.cluster.local"},
                         "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/store/virtual-service/catalog"}}}},
                        {"match": {"safe_regex": {"regex": "/items/[0-9]+"}, "headers": [{"name": "x-user"}]}, "route": {"cluster": "outbound|8080||catalog.store.svc.cluster.local"}}
                     ]},
                    {"name": "allow_any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}
                ])),
                rc("3000", json!([{"name": "ui.store.svc.cluster.local:3000", "domains": ["ui.store.svc.cluster.local"], "routes": [{"match": {"path": "/index.html"}, "route": {"cluster": "x"}}]}])),
            ],
        }),
    )])
}

/// Numeric names sort among themselves; a non-numeric one stays where
/// Go's insertion sort leaves it; a vhost without routes is `/*` → 404; passthrough
/// routes and header matches are not shown; domains are shortened.
#[test]
fn routes() {
    let v = routes_dump();
    let out = route_summary(&Dump::new(&v), &RouteFilter::default(), false);
    assert_eq!(
        out,
        "NAME                           VHOST NAME                               DOMAINS                                MATCH                   VIRTUAL SERVICE
https.443.web.shop-gw.edge     blackhole:443                            *                                      /*                      404
3000                           ui.store.svc.cluster.local:3000          ui.store.svc.cluster.local             /index.html             
8080                           catalog.store.svc.cluster.local:8080     catalog, catalog.store + 1 more...     PathPrefix:/v2          catalog.store
8080                           catalog.store.svc.cluster.local:8080     catalog, catalog.store + 1 more...     regex /items/[0-9]+     
                               backend                                  *                                      /healthz/ready*         
"
    );
    let short = route_summary(
        &Dump::new(&v),
        &RouteFilter {
            name: "8080".into(),
            verbose: false,
        },
        true,
    );
    assert_eq!(short, "NAME           VIRTUAL HOSTS\nroute/8080     2\n");
}

fn clusters_admin() -> Value {
    let host = |ip: &str, port: u64, failed: bool| {
        json!({"address": {"socket_address": {"address": ip, "port_value": port}},
               "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": failed}})
    };
    json!({"cluster_statuses": [
        {"name": "outbound|5432||db.data.svc.cluster.local", "host_statuses": [host("10.1.4.2", 5432, false), host("10.1.4.1", 5432, true)]},
        {"name": "outbound|80|canary|web.shop.svc.cluster.local", "host_statuses": [host("10.1.4.1", 80, false)]},
        {"name": "sds-grpc", "host_statuses": [{"address": {"pipe": {"path": "./var/run/agent.sock"}}, "health_status": {"eds_health_status": "HEALTHY"}}]},
        {"name": "PassthroughCluster", "host_statuses": []},
    ]})
}

/// Sorted by address, port, cluster; pipes as `unix://`; outlier
/// ejections as FAILED; the port filter.
#[test]
fn endpoints() {
    let c = clusters_admin();
    assert_eq!(
        admin_endpoint_summary(&c, &EndpointFilter::default()),
        "ENDPOINT                        STATUS      OUTLIER CHECK     CLUSTER
10.1.4.1:80                     HEALTHY     OK                outbound|80|canary|web.shop.svc.cluster.local
10.1.4.1:5432                   HEALTHY     FAILED            outbound|5432||db.data.svc.cluster.local
10.1.4.2:5432                   HEALTHY     OK                outbound|5432||db.data.svc.cluster.local
unix://./var/run/agent.sock     HEALTHY     OK                sds-grpc
"
    );
    let port = EndpointFilter {
        port: 5432,
        status: "healthy".into(),
        ..Default::default()
    };
    assert_eq!(admin_endpoint_summary(&c, &port).lines().count(), 3);
}

fn listeners_dump() -> Value {
    let hcm = |cfg: Value| json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": any("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", cfg)});
    let tcp = |cluster: &str| json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": any("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", json!({"stat_prefix": cluster, "cluster": cluster}))});
    let l = |name: &str, addr: &str, port: u64, chains: Value| json!({"name": name, "active_state": {"listener": any("envoy.config.listener.v3.Listener", json!({"name": name, "address": {"socket_address": {"address": addr, "port_value": port}}, "filter_chains": chains}))}});
    dump(vec![any(
        "envoy.admin.v3.ListenersConfigDump",
        json!({"dynamic_listeners": [
            l("10.96.3.3_6379", "10.96.3.3", 6379, json!([{"filters": [tcp("outbound|6379||cache.data.svc.cluster.local")]}])),
            l("0.0.0.0_8443", "0.0.0.0", 8443, json!([
                {"filter_chain_match": {"server_names": ["pay.example.net"], "transport_protocol": "tls"}, "filters": [tcp("outbound|443||pay.example.net")]},
                {"filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.0", "http/1.1", "h2c"]}, "filters": [hcm(json!({"rds": {"route_config_name": "8443"}}))]},
                {"filter_chain_match": {"prefix_ranges": [{"address_prefix": "10.9.0.0", "prefix_len": 16}], "destination_port": 8443}, "filters": [tcp("BlackHoleCluster")]},
            ])),
            l("0.0.0.0_15021", "0.0.0.0", 15021, json!([{"filters": [hcm(json!({"route_config": {"virtual_hosts": [{"domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "agent"}}]}]}}))]}])),
            l("0.0.0.0_9999", "0.0.0.0", 9999, json!([{"filters": [hcm(json!({"route_config": {"virtual_hosts": [{"domains": ["a.local", "b.local"], "routes": [{"match": {"prefix": "/x"}}, {"match": {"path": "/y"}}]}]}}))]}])),
        ]}),
    )])
}

/// Sorted by port; chains by destination, descending; istioctl's words for
/// matches and destinations (blackhole TCP is Non-HTTP/Non-TCP, a catch-all
/// inline route names its cluster).
#[test]
fn listeners() {
    let v = listeners_dump();
    assert_eq!(
        listener_summary(&Dump::new(&v), &ListenerFilter::default(), false),
        "ADDRESSES PORT  MATCH                            DESTINATION
10.96.3.3 6379  ALL                              Cluster: outbound|6379||cache.data.svc.cluster.local
0.0.0.0   8443  Trans: raw_buffer; App: HTTP     Route: 8443
0.0.0.0   8443  Addr: 10.9.0.0/16:8443           Non-HTTP/Non-TCP
0.0.0.0   8443  SNI: pay.example.net; Trans: tls Cluster: outbound|443||pay.example.net
0.0.0.0   9999  ALL                              Inline Route: a.local/b.local /x*, /y
0.0.0.0   15021 ALL                              Cluster: agent
"
    );
    let http = ListenerFilter {
        kind: "http+tcp".into(),
        verbose: false,
        ..Default::default()
    };
    assert_eq!(
        listener_summary(&Dump::new(&v), &http, false),
        "ADDRESSES PORT TYPE\n0.0.0.0   8443 HTTP+TCP\n"
    );
}

/// `all --with-headers`: every section, cluster names with `cluster/`.
#[test]
fn all_with_headers() {
    let v = dump(vec![
        any(
            "envoy.admin.v3.BootstrapConfigDump",
            json!({"bootstrap": {"node": {"metadata": {"ISTIO_VERSION": "1.27.2"}, "user_agent_build_version": {"version": {"major_number": 1, "minor_number": 35, "patch": 3}}}}}),
        ),
        any(
            "envoy.admin.v3.ClustersConfigDump",
            json!({"dynamic_active_clusters": [
                {"cluster": any("envoy.config.cluster.v3.Cluster", json!({"name": "outbound|9000||files.drive.svc.cluster.local", "type": "EDS",
                    "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/drive/destination-rule/files-tls"}}}}))},
                {"cluster": any("envoy.config.cluster.v3.Cluster", json!({"name": "BlackHoleCluster"}))},
            ]}),
        ),
        any(
            "envoy.admin.v3.EndpointsConfigDump",
            json!({"dynamic_endpoint_configs": [
                {"endpoint_config": any("envoy.config.endpoint.v3.ClusterLoadAssignment", json!({"cluster_name": "outbound|9000||files.drive.svc.cluster.local",
                    "endpoints": [{"locality": {"region": "eu", "zone": "eu-1"}, "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.7.0.4", "port_value": 9000}}}, "health_status": "HEALTHY"}]}]}))},
            ]}),
        ),
    ]);
    let out = all_summary(&v, &Filters::default(), &SecretView::default(), true);
    assert_eq!(
        out,
        "------ BOOTSTRAP INFO ------

Istio Version: 1.27.2
Envoy Version: 1.35.3

------ CLUSTER INFO ------

NAME                                                     SERVICE FQDN                      PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE
cluster/BlackHoleCluster                                 cluster/BlackHoleCluster          -        -          -             STATIC     
cluster/outbound|9000||files.drive.svc.cluster.local     files.drive.svc.cluster.local     9000     -          outbound      EDS        files-tls.drive

------ LISTENER INFO ------

NAME ADDRESSES PORT MATCH DESTINATION

------ ROUTE INFO ------

NAME     VHOST NAME     DOMAINS     MATCH     VIRTUAL SERVICE

------ SECRET INFO ------

No active or warming secrets found.

------ ENDPOINTS INFO ------

NAME                       STATUS      LOCALITY     CLUSTER
endpoint/10.7.0.4:9000     HEALTHY     eu/eu-1      outbound|9000||files.drive.svc.cluster.local
"
    );
}
