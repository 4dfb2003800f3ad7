//! What Envoy's admin reports beyond the pushed config: `/clusters?format=json`
//! (every cluster with the hosts it has — what `istioctl proxy-config
//! endpoints` reads) and the SDS secrets of `/config_dump`.

use std::net::IpAddr;

use base64::Engine;
use serde_json::{json, Value};

use super::{cluster, dump::static_clusters, load_assignment};
use crate::{DiscoveryType, ProxyTables};

/// One SDS secret as the config dump shows it.
#[derive(Debug, Clone)]
pub enum DumpSecret {
    /// A certificate chain (the private key is redacted, as Envoy does).
    Certificate { name: String, chain_pem: String },
    /// A CA bundle (`ROOTCA`, `...-cacert`, `file-root:...`).
    Ca { name: String, pem: String },
}

impl DumpSecret {
    pub fn name(&self) -> &str {
        match self {
            DumpSecret::Certificate { name, .. } | DumpSecret::Ca { name, .. } => name,
        }
    }

    /// The `envoy.extensions.transport_sockets.tls.v3.Secret`.
    pub fn secret(&self) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut v = match self {
            DumpSecret::Certificate { name, chain_pem } => json!({
                "name": name,
                "tls_certificate": {
                    "certificate_chain": {"inline_bytes": b64(chain_pem)},
                    "private_key": {"inline_bytes": b64("[redacted]")},
                },
            }),
            DumpSecret::Ca { name, pem } => json!({
                "name": name,
                "validation_context": {"trusted_ca": {"inline_bytes": b64(pem)}},
            }),
        };
        v["@type"] = json!(super::type_url(
            "envoy.extensions.transport_sockets.tls.v3.Secret"
        ));
        v
    }

    /// Whether a secret name stands for CA certificates.
    pub fn is_ca_name(name: &str) -> bool {
        name == "ROOTCA" || name.ends_with("-cacert") || name.starts_with("file-root:")
    }
}

/// PEM text for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// SDS secret names the tables refer to, in the order istio-agent serves
/// them to a sidecar (`default`, `ROOTCA`, then the rest by name).
pub fn secret_names(t: &ProxyTables) -> Vec<String> {
    let mut v: Vec<Value> = t.listeners.iter().map(|l| super::listener(l, t)).collect();
    v.extend(t.clusters.iter().map(cluster));
    let mut names = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(n), true) = (
                    m.get("name").and_then(Value::as_str),
                    m.contains_key("sds_config"),
                ) {
                    out.push(n.to_string());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    v.iter().for_each(|x| walk(x, &mut names));
    names.sort_by_key(|n| {
        (
            match n.as_str() {
                "default" => 0,
                "ROOTCA" => 1,
                _ => 2,
            },
            n.clone(),
        )
    });
    names.dedup();
    names
}

/// A host of `/clusters?format=json`.
fn host_status(address: Value, weight: u64) -> Value {
    json!({
        "address": address,
        // Zero values are left out, as Envoy's JSON does.
        "stats": [
            {"name": "cx_connect_fail"},
            {"name": "cx_total"},
            {"name": "rq_error"},
            {"name": "rq_success"},
            {"name": "rq_timeout"},
            {"name": "rq_total"},
            {"type": "GAUGE", "name": "cx_active"},
            {"type": "GAUGE", "name": "rq_active"},
        ],
        "health_status": {"eds_health_status": "HEALTHY"},
        "weight": weight,
        "locality": {},
    })
}

/// The hosts of one rendered load assignment; DNS names resolved with
/// `resolve` (Envoy shows what its resolver returned; a name meshsim
/// cannot resolve is shown as the name).
fn hosts(cla: &Value, resolve: &dyn Fn(&str) -> Option<IpAddr>) -> Vec<Value> {
    let mut out = Vec::new();
    for llb in cla["endpoints"].as_array().into_iter().flatten() {
        for ep in llb["lb_endpoints"].as_array().into_iter().flatten() {
            let mut a = ep["endpoint"]["address"].clone();
            if let Some(name) = a["socket_address"]["address"].as_str() {
                if name.parse::<IpAddr>().is_err() {
                    if let Some(ip) = resolve(name) {
                        a["socket_address"]["address"] = json!(ip.to_string());
                    }
                }
            }
            let w = ep["load_balancing_weight"].as_u64().unwrap_or(1);
            out.push(host_status(a, w));
        }
    }
    out
}

/// Envoy's `/clusters?format=json`: every cluster (static and pushed) with
/// its current hosts — EDS endpoints, static hosts, resolved DNS names;
/// ORIGINAL_DST clusters have none until traffic creates them.
pub fn clusters_status(t: &ProxyTables, resolve: &dyn Fn(&str) -> Option<IpAddr>) -> Value {
    let mut statuses = Vec::new();
    for c in static_clusters() {
        statuses.push(json!({
            "name": c["name"],
            "host_statuses": hosts(&c["load_assignment"], resolve),
        }));
    }
    for c in &t.clusters {
        let cla = match c.discovery_type {
            DiscoveryType::Eds => t
                .endpoints
                .iter()
                .find(|e| e.cluster_name == c.name)
                .map(load_assignment),
            _ => c.load_assignment.as_ref().map(load_assignment),
        };
        let hs = cla.map(|cla| hosts(&cla, resolve)).unwrap_or_default();
        let mut st = json!({
            "name": c.name,
            "added_via_api": true,
            "host_statuses": hs,
            "observability_name": c.name,
        });
        let rendered = cluster(c);
        if !rendered["circuit_breakers"].is_null() {
            st["circuit_breakers"] = rendered["circuit_breakers"].clone();
        }
        statuses.push(st);
    }
    json!({"cluster_statuses": statuses})
}
