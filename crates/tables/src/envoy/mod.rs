//! The tables as Envoy's own configuration: v3 protobuf JSON, every filter,
//! transport socket and listener filter with its `typed_config` and
//! `@type`, xDS and SDS references with their config sources, Istio's
//! `filter_metadata` — what istiod pushes and Envoy's admin
//! `/config_dump` shows. Built with Envoy's field names (snake_case, what
//! the admin prints); [`camel`] gives the protobuf-JSON names istioctl
//! prints.
//!
//! Nothing here invents a field: meshsim's own bookkeeping in the tables
//! (TLS mode, display data) is not rendered.

pub mod admin;
mod cluster;
mod dump;
pub mod export;
mod listener;
mod route;

use serde_json::{json, Map, Value};

pub use cluster::{cluster, load_assignment};
pub use dump::{bootstrap, config_dump, DumpMeta};
pub use listener::listener;
pub use route::route_configuration;

/// `type.googleapis.com/` + a message name.
pub fn type_url(message: &str) -> String {
    format!("type.googleapis.com/{message}")
}

/// `{"@type": ...}` plus fields.
pub(crate) fn typed(message: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), Value::String(type_url(message)));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// A message packed in an `Any` (what config dumps hold).
pub(crate) fn any(message: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), Value::String(type_url(message)));
    if let Value::Object(f) = v {
        m.extend(f);
    }
    Value::Object(m)
}

/// A named extension with its typed config (`{"name", "typed_config"}`).
pub(crate) fn extension(name: &str, typed_config: Value) -> Value {
    json!({"name": name, "typed_config": typed_config})
}

/// The ADS config source istiod uses for RDS, EDS and gateway SDS.
pub(crate) fn ads() -> Value {
    json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"})
}

/// The config source istio-agent serves workload secrets on
/// (pkg/model/authentication.go `ConstructSdsSecretConfig`).
pub(crate) fn sds_grpc() -> Value {
    json!({
        "api_config_source": {
            "api_type": "GRPC",
            "set_node_on_first_message_only": true,
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
        },
        "initial_fetch_timeout": "0s",
        "resource_api_version": "V3"
    })
}

/// An SDS secret reference as istiod writes it: `default`, `ROOTCA` and
/// `file-*` names come from istio-agent; credentials (`kubernetes://...`)
/// over ADS.
pub(crate) fn sds_secret(name: &str) -> Value {
    let source = if name.starts_with("kubernetes://") {
        ads()
    } else {
        sds_grpc()
    };
    json!({"name": name, "sds_config": source})
}

/// Fields whose values are maps keyed by names (their keys are not field
/// names) or `Struct`s (whose keys are data).
const VERBATIM: &[&str] = &["filter_metadata", "typed_filter_metadata"];
const NAME_KEYED: &[&str] = &[
    "typed_per_filter_config",
    "typed_extension_protocol_options",
];

/// Protobuf JSON field names (`camelCase`), as istioctl prints: field
/// names change; map keys, `Struct` contents and `@type` stay.
pub fn camel(v: &Value) -> Value {
    camel_in(v, "")
}

fn camel_in(v: &Value, parent: &str) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| camel_in(x, parent)).collect()),
        Value::Object(m) => {
            let is_typed_struct = m
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(".TypedStruct"));
            let mut out = Map::new();
            for (k, x) in m {
                // `metadata` is a `Struct` on the node and on build
                // versions; `core.Metadata` (filter_metadata) elsewhere.
                let struct_metadata = k == "metadata"
                    && x.as_object().is_some_and(|o| {
                        !o.contains_key("filter_metadata")
                            && !o.contains_key("typed_filter_metadata")
                    });
                let value = if VERBATIM.contains(&k.as_str())
                    || struct_metadata
                    || (is_typed_struct && k == "value")
                    || (parent == "transport_socket_matches" && k == "match")
                {
                    x.clone()
                } else if NAME_KEYED.contains(&k.as_str()) {
                    match x {
                        Value::Object(inner) => Value::Object(
                            inner
                                .iter()
                                .map(|(name, y)| (name.clone(), camel_in(y, "")))
                                .collect(),
                        ),
                        other => other.clone(),
                    }
                } else {
                    camel_in(x, k)
                };
                out.insert(camel_key(k), value);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn camel_key(k: &str) -> String {
    if k.starts_with('@') || !k.contains('_') {
        return k.to_string();
    }
    let mut s = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            s.extend(c.to_uppercase());
            upper = false;
        } else {
            s.push(c);
        }
    }
    s
}

/// Removes `null`s and empty objects/arrays a builder left for absent
/// optional fields (proto3 JSON omits them), keeping empty messages that
/// mean something (`{}` for `ads`, `common_lb_config`...).
pub(crate) fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k, prune(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keeps_map_keys_structs_and_types() {
        let v = json!({
            "connect_timeout": "10s",
            "metadata": {"filter_metadata": {"istio": {"default_original_port": 9080}}},
            "transport_socket_matches": [{"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                "transport_socket": {"typed_config": {"@type": "x", "common_tls_context": {}}}}],
            "typed_per_filter_config": {"envoy.filters.http.fault": {"@type": "f", "fixed_delay": "1s"}}
        });
        let c = camel(&v);
        assert_eq!(c["connectTimeout"], "10s");
        assert_eq!(
            c["metadata"]["filterMetadata"]["istio"]["default_original_port"],
            9080
        );
        assert_eq!(c["transportSocketMatches"][0]["match"]["tlsMode"], "istio");
        assert!(
            c["transportSocketMatches"][0]["transportSocket"]["typedConfig"]["commonTlsContext"]
                .is_object()
        );
        assert_eq!(
            c["typedPerFilterConfig"]["envoy.filters.http.fault"]["fixedDelay"],
            "1s"
        );
    }
}
