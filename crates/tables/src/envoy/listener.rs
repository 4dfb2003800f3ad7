//! Listeners, filter chains, network filters (HTTP connection manager, TCP
//! proxy, RBAC, Istio's own), downstream TLS and access logs, as Envoy v3
//! JSON.

use serde_json::{json, Value};

use super::{ads, extension, prune, route, sds_secret, typed};
use crate::accesslog::{ISTIO_DEFAULT_FORMAT, ISTIO_JSON_FIELDS};
use crate::listener::*;
use crate::types::LogEncoding;
use crate::{AccessLogConfig, ProxyTables};

pub fn listener(l: &Listener, t: &ProxyTables) -> Value {
    let mut v = json!({
        "name": l.name,
        "address": address(&l.address),
        "filter_chains": l.filter_chains.iter().map(|c| filter_chain(c, t)).collect::<Vec<_>>(),
        "traffic_direction": match l.traffic_direction {
            TrafficDirection::Inbound => "INBOUND",
            TrafficDirection::Outbound => "OUTBOUND",
        },
    });
    if let Some(d) = &l.default_filter_chain {
        v["default_filter_chain"] = filter_chain(d, t);
    }
    if !l.listener_filters.is_empty() {
        v["listener_filters"] = l
            .listener_filters
            .iter()
            .map(|f| listener_filter(&f.name))
            .collect();
        // istiod: sidecars detect protocols without a timeout (0s),
        // continuing when the inspectors learn nothing; gateways set
        // nothing (Envoy's 15 s, then close).
        if l.listener_filters_timeout == ListenerFiltersTimeout::Disabled {
            v["listener_filters_timeout"] = json!("0s");
            v["continue_on_listener_filters_timeout"] = json!(true);
        }
    }
    if l.use_original_dst {
        v["use_original_dst"] = json!(true);
    }
    if !l.bind_to_port {
        v["bind_to_port"] = json!(false);
    }
    // accesslog.go: every listener logs what no filter logs (NR).
    if let Some(al) = access_log(&t.access_log, Some("NR")) {
        v["access_log"] = json!([al]);
    }
    v
}

pub(crate) fn address(a: &Address) -> Value {
    json!({"socket_address": {"address": a.socket_address.address, "port_value": a.socket_address.port_value}})
}

/// The listener filters istiod adds, with their types.
pub(crate) fn listener_filter(name: &str) -> Value {
    let message = match name {
        "envoy.filters.listener.tls_inspector" => {
            "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
        }
        "envoy.filters.listener.http_inspector" => {
            "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
        }
        "envoy.filters.listener.original_dst" => {
            "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
        }
        "envoy.filters.listener.proxy_protocol" => {
            "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"
        }
        _ => "google.protobuf.Empty",
    };
    extension(name, typed(message, json!({})))
}

fn filter_chain(c: &FilterChain, t: &ProxyTables) -> Value {
    let mut v = json!({
        "filters": c.filters.iter().map(|f| network_filter(f, t)).collect::<Vec<_>>(),
    });
    let m = filter_chain_match(&c.filter_chain_match);
    if m.as_object().is_some_and(|o| !o.is_empty()) {
        v["filter_chain_match"] = m;
    }
    if let Some(ts) = &c.transport_socket {
        v["transport_socket"] = downstream_tls(&ts.typed_config);
    }
    if !c.name.is_empty() {
        v["name"] = json!(c.name);
    }
    v
}

fn filter_chain_match(m: &FilterChainMatch) -> Value {
    let mut v = json!({});
    if let Some(p) = m.destination_port {
        v["destination_port"] = json!(p);
    }
    if !m.prefix_ranges.is_empty() {
        v["prefix_ranges"] = m
            .prefix_ranges
            .iter()
            .map(|r| json!({"address_prefix": r.address_prefix, "prefix_len": r.prefix_len}))
            .collect();
    }
    if !m.server_names.is_empty() {
        v["server_names"] = json!(m.server_names);
    }
    if !m.transport_protocol.is_any() {
        v["transport_protocol"] = json!(m.transport_protocol.as_str());
    }
    if !m.application_protocols.is_empty() {
        v["application_protocols"] = json!(m.application_protocols);
    }
    v
}

pub(crate) fn network_filter(f: &NetworkFilter, t: &ProxyTables) -> Value {
    let config = match &f.typed_config {
        NetworkFilterConfig::HttpConnectionManager(h) => hcm(h, t),
        NetworkFilterConfig::TcpProxy(p) => tcp_proxy(p, t),
        NetworkFilterConfig::Rbac(r) => r.config.clone(),
        NetworkFilterConfig::Opaque(v) => opaque(&f.name, v),
    };
    extension(&f.name, config)
}

/// A filter kept as given (EnvoyFilter values, Istio's own filters): its
/// config, or the type istiod gives it when none was given.
fn opaque(name: &str, v: &Value) -> Value {
    if !v.is_null() {
        return v.clone();
    }
    match name {
        "istio.stats" => typed("stats.PluginConfig", json!({})),
        _ => typed("google.protobuf.Empty", json!({})),
    }
}

fn hcm(h: &HttpConnectionManager, t: &ProxyTables) -> Value {
    let mut v = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": h.stat_prefix,
            "http_filters": h.http_filters.iter().map(http_filter).collect::<Vec<_>>(),
            "use_remote_address": h.use_remote_address,
            "normalize_path": h.normalize_path,
            "path_with_escaped_slashes_action": h.path_with_escaped_slashes_action,
            // listener_builder.go: codec AUTO, websocket upgrades, no
            // stream idle timeout.
            "codec_type": "AUTO",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "stream_idle_timeout": "0s",
        }),
    );
    if h.merge_slashes {
        v["merge_slashes"] = json!(true);
    }
    if h.xff_num_trusted_hops > 0 {
        v["xff_num_trusted_hops"] = json!(h.xff_num_trusted_hops);
    }
    match (&h.rds, &h.route_config) {
        (Some(r), _) => {
            v["rds"] = json!({"config_source": ads(), "route_config_name": r.route_config_name});
        }
        (None, Some(rc)) => v["route_config"] = route::route_configuration(rc),
        (None, None) => {}
    }
    if h.http_protocol_options.accept_http_10 {
        v["http_protocol_options"] = json!({"accept_http_10": true});
    }
    if let Some(name) = &h.server_name {
        v["server_name"] = json!(name);
    }
    if let Some(f) = h.forward_client_cert_details {
        v["forward_client_cert_details"] = serde_json::to_value(f).unwrap_or(Value::Null);
    }
    if let Some(s) = h.set_current_client_cert_details {
        v["set_current_client_cert_details"] =
            json!({"subject": s.subject, "dns": s.dns, "uri": s.uri});
    }
    if let Some(al) = access_log(&t.access_log, None) {
        v["access_log"] = json!([al]);
    }
    prune(v)
}

/// An HTTP filter with its typed config (istiod's types for its filters).
fn http_filter(f: &HttpFilter) -> Value {
    if !f.typed_config.is_null() {
        return extension(&f.name, f.typed_config.clone());
    }
    let config = match f.name.as_str() {
        "envoy.filters.http.router" => {
            typed("envoy.extensions.filters.http.router.v3.Router", json!({}))
        }
        "envoy.filters.http.fault" => typed(
            "envoy.extensions.filters.http.fault.v3.HTTPFault",
            json!({}),
        ),
        "envoy.filters.http.cors" => typed("envoy.extensions.filters.http.cors.v3.Cors", json!({})),
        "istio.alpn" => typed(
            "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
            json!({"alpn_override": [
                {"upstream_protocol": "HTTP10", "alpn_override": ["istio-http/1.0", "istio", "http/1.0"]},
                {"upstream_protocol": "HTTP11", "alpn_override": ["istio-http/1.1", "istio", "http/1.1"]},
                {"upstream_protocol": "HTTP2", "alpn_override": ["istio-h2", "istio", "h2"]}
            ]}),
        ),
        "istio.metadata_exchange" => typed("io.istio.http.peer_metadata.Config", json!({})),
        "istio.stats" => typed("stats.PluginConfig", json!({})),
        _ => typed("google.protobuf.Empty", json!({})),
    };
    extension(&f.name, config)
}

fn tcp_proxy(p: &TcpProxy, t: &ProxyTables) -> Value {
    let mut v = typed(
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        json!({"stat_prefix": p.stat_prefix}),
    );
    if let Some(c) = &p.cluster {
        v["cluster"] = json!(c);
    }
    if let Some(w) = &p.weighted_clusters {
        v["weighted_clusters"] = json!({"clusters": w.clusters.iter()
            .map(|c| json!({"name": c.name, "weight": c.weight})).collect::<Vec<_>>()});
    }
    if let Some(al) = access_log(&t.access_log, None) {
        v["access_log"] = json!([al]);
    }
    v
}

/// Istio's file access log from the mesh config (off when no file is
/// set); `flag`: log only when that response flag is set (listeners).
pub(crate) fn access_log(cfg: &AccessLogConfig, flag: Option<&str>) -> Option<Value> {
    if cfg.path.is_empty() {
        return None;
    }
    let format = match cfg.encoding {
        LogEncoding::Json => {
            let fields: serde_json::Map<String, Value> = if cfg.format.trim().starts_with('{') {
                serde_json::from_str(&cfg.format).unwrap_or_default()
            } else {
                ISTIO_JSON_FIELDS
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect()
            };
            json!({"json_format": fields})
        }
        LogEncoding::Text => {
            let text = if cfg.format.is_empty() {
                ISTIO_DEFAULT_FORMAT.to_string()
            } else if cfg.format.ends_with('\n') {
                cfg.format.clone()
            } else {
                format!("{}\n", cfg.format)
            };
            json!({"text_format_source": {"inline_string": text}})
        }
    };
    let mut al = extension(
        "envoy.access_loggers.file",
        typed(
            "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            json!({"path": cfg.path, "log_format": format}),
        ),
    );
    if let Some(f) = flag {
        al["filter"] = json!({"response_flag_filter": {"flags": [f]}});
    }
    Some(al)
}

fn downstream_tls(ctx: &DownstreamTlsContext) -> Value {
    let mut v = typed(
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        json!({"common_tls_context": common_tls_context(&ctx.common_tls_context)}),
    );
    if ctx.require_client_certificate {
        v["require_client_certificate"] = json!(true);
    }
    extension("envoy.transport_sockets.tls", v)
}

/// Certificates by SDS name and the validation context as istiod writes
/// them (security/model/authentication.go): a combined context when a CA
/// comes over SDS, SAN matchers as exact `StringMatcher`s.
pub(crate) fn common_tls_context(c: &CommonTlsContext) -> Value {
    let mut v = json!({
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
    });
    if !c.alpn_protocols.is_empty() {
        v["alpn_protocols"] = json!(c.alpn_protocols);
    }
    if !c.tls_certificate_sds_secret_configs.is_empty() {
        v["tls_certificate_sds_secret_configs"] = c
            .tls_certificate_sds_secret_configs
            .iter()
            .map(|s| sds_secret(&s.name))
            .collect();
    }
    if let Some(val) = &c.validation_context {
        let mut default = json!({});
        if !val.match_subject_alt_names.is_empty() {
            default["match_subject_alt_names"] = val
                .match_subject_alt_names
                .iter()
                .map(|s| json!({"exact": s}))
                .collect();
        }
        if val.insecure_skip_verify {
            default["trust_chain_verification"] = json!("ACCEPT_UNTRUSTED");
        }
        match &val.trusted_ca_sds {
            Some(ca) => {
                v["combined_validation_context"] = json!({
                    "default_validation_context": default,
                    "validation_context_sds_secret_config": sds_secret(ca),
                });
            }
            None => v["validation_context"] = default,
        }
    }
    v
}
