//! Clusters and their endpoints as Envoy v3 JSON, with Istio's cluster
//! metadata (`filter_metadata.istio`: services, port, subset, the
//! DestinationRule), upstream TLS by SDS, circuit breakers and HTTP
//! protocol options as istiod writes them (cluster_builder.go).

use serde_json::{json, Value};

use super::listener::{address, common_tls_context};
use super::{ads, extension, typed};
use crate::cluster::*;

/// Only the fields istiod set (protobuf JSON leaves the others out).
fn outlier_detection(o: &OutlierDetection) -> Value {
    let mut v = json!({"enforcing_success_rate": o.enforcing_success_rate});
    let mut put = |k: &str, x: Option<u32>| {
        if let Some(x) = x {
            v[k] = json!(x);
        }
    };
    put("consecutive_5xx", o.consecutive_5xx);
    put("enforcing_consecutive_5xx", o.enforcing_consecutive_5xx);
    put("consecutive_gateway_failure", o.consecutive_gateway_failure);
    put(
        "enforcing_consecutive_gateway_failure",
        o.enforcing_consecutive_gateway_failure,
    );
    put("max_ejection_percent", o.max_ejection_percent);
    put(
        "consecutive_local_origin_failure",
        o.consecutive_local_origin_failure,
    );
    put(
        "enforcing_consecutive_local_origin_failure",
        o.enforcing_consecutive_local_origin_failure,
    );
    if let Some(i) = o.interval {
        v["interval"] = json!(i);
    }
    if let Some(b) = o.base_ejection_time {
        v["base_ejection_time"] = json!(b);
    }
    if o.split_external_local_origin_errors {
        v["split_external_local_origin_errors"] = json!(true);
        v["enforcing_local_origin_success_rate"] = json!(0);
    }
    v
}

pub fn cluster(c: &Cluster) -> Value {
    let mut v = json!({
        "name": c.name,
        "type": discovery_type(c.discovery_type),
        "connect_timeout": c.connect_timeout,
        "circuit_breakers": {"thresholds": c.circuit_breakers.thresholds.iter().map(|t| json!({
            "max_connections": t.max_connections,
            "max_pending_requests": t.max_pending_requests,
            "max_requests": t.max_requests,
            "max_retries": t.max_retries,
            "track_remaining": true,
        })).collect::<Vec<_>>()},
        "common_lb_config": {},
    });
    match c.lb_policy {
        LbPolicy::RoundRobin => {}
        LbPolicy::LeastRequest => v["lb_policy"] = json!("LEAST_REQUEST"),
        LbPolicy::Random => v["lb_policy"] = json!("RANDOM"),
        LbPolicy::ClusterProvided => v["lb_policy"] = json!("CLUSTER_PROVIDED"),
    }
    match c.discovery_type {
        DiscoveryType::Eds => {
            v["eds_cluster_config"] = json!({"eds_config": ads(), "service_name": c.name});
        }
        DiscoveryType::StrictDns | DiscoveryType::LogicalDns => {
            v["dns_lookup_family"] = json!("V4_ONLY");
            v["respect_dns_ttl"] = json!(true);
        }
        DiscoveryType::Static | DiscoveryType::OriginalDst => {}
    }
    if let Some(cla) = &c.load_assignment {
        v["load_assignment"] = load_assignment(cla);
    }
    if let Some(o) = &c.outlier_detection {
        v["outlier_detection"] = outlier_detection(o);
    }
    if let Some(p) = c.healthy_panic_threshold {
        v["common_lb_config"] = json!({"healthy_panic_threshold": {"value": p}});
    }
    if let Some(b) = &c.upstream_bind_source {
        v["upstream_bind_config"] = json!({"source_address": {"address": b, "port_value": 0}});
    }
    if let Some(ts) = &c.transport_socket {
        v["transport_socket"] = upstream_tls(ts);
    }
    if !c.transport_socket_matches.is_empty() {
        v["transport_socket_matches"] = c
            .transport_socket_matches
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "match": m.match_,
                    "transport_socket": match &m.transport_socket {
                        Some(ts) => upstream_tls(ts),
                        None => raw_buffer(),
                    },
                })
            })
            .collect();
    }
    if let Some(opts) = http_protocol_options(c) {
        v["typed_extension_protocol_options"] =
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts});
    }
    if let Some(m) = metadata(&c.metadata) {
        v["metadata"] = m;
    }
    v
}

fn discovery_type(t: DiscoveryType) -> &'static str {
    match t {
        DiscoveryType::Static => "STATIC",
        DiscoveryType::StrictDns => "STRICT_DNS",
        DiscoveryType::LogicalDns => "LOGICAL_DNS",
        DiscoveryType::Eds => "EDS",
        DiscoveryType::OriginalDst => "ORIGINAL_DST",
    }
}

fn raw_buffer() -> Value {
    extension(
        "envoy.transport_sockets.raw_buffer",
        typed(
            "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            json!({}),
        ),
    )
}

fn upstream_tls(ts: &UpstreamTransportSocket) -> Value {
    let ctx = &ts.typed_config;
    let mut v = typed(
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        json!({"common_tls_context": common_tls_context(&ctx.common_tls_context)}),
    );
    if !ctx.sni.is_empty() {
        v["sni"] = json!(ctx.sni);
    }
    extension("envoy.transport_sockets.tls", v)
}

/// HTTP/2 upstreams and connection limits (the v3 home of
/// `http2_protocol_options` and `max_requests_per_connection`).
fn http_protocol_options(c: &Cluster) -> Option<Value> {
    if !c.http2_protocol_options
        && c.max_requests_per_connection.is_none()
        && c.idle_timeout.is_none()
        && !c.auto_sni
    {
        return None;
    }
    let mut v = typed(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        json!({}),
    );
    v["explicit_http_config"] = if c.http2_protocol_options {
        json!({"http2_protocol_options": {}})
    } else {
        json!({"http_protocol_options": {}})
    };
    let mut common = json!({});
    if let Some(n) = c.max_requests_per_connection {
        common["max_requests_per_connection"] = json!(n);
    }
    if let Some(t) = c.idle_timeout {
        common["idle_timeout"] = json!(t);
    }
    if common != json!({}) {
        v["common_http_protocol_options"] = common;
    }
    if c.auto_sni {
        v["upstream_http_protocol_options"] =
            json!({"auto_sni": true, "auto_san_validation": true});
    }
    Some(v)
}

/// `metadata.filter_metadata.istio` as istiod writes it for services.
fn metadata(m: &ClusterMetadata) -> Option<Value> {
    if m.service.is_empty() {
        return None;
    }
    let mut istio = json!({
        "services": [{"host": m.service, "name": m.service_name, "namespace": m.service_namespace}],
        "default_original_port": m.port,
    });
    if !m.subset.is_empty() {
        istio["subset"] = json!(m.subset);
    }
    if let Some((name, ns)) = m.destination_rule.rsplit_once('.') {
        istio["config"] = json!(format!(
            "/apis/networking.istio.io/v1/namespaces/{ns}/destination-rule/{name}"
        ));
    }
    Some(json!({"filter_metadata": {"istio": istio}}))
}

pub fn load_assignment(cla: &ClusterLoadAssignment) -> Value {
    json!({
        "cluster_name": cla.cluster_name,
        "endpoints": cla.endpoints.iter().map(|l| json!({
            "lb_endpoints": l.lb_endpoints.iter().map(lb_endpoint).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn lb_endpoint(e: &LbEndpoint) -> Value {
    let mut v = json!({
        "endpoint": {"address": address(&e.endpoint.address)},
        "health_status": e.health_status,
        "load_balancing_weight": e.load_balancing_weight,
    });
    if let Some(m) = &e.metadata {
        v["metadata"] = json!({"filter_metadata": {
            "envoy.transport_socket_match": {"tlsMode": m.filter_metadata.transport_socket_match.tls_mode},
            "istio": {"workload": m.filter_metadata.istio.workload},
        }});
    }
    v
}
