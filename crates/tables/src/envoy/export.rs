//! A bootstrap a stock Envoy runs: the proxy's dynamic resources made
//! static (RDS inlined into its connection managers, EDS clusters given
//! their endpoints), endpoints and listeners moved to the real addresses
//! the caller maps, SDS secrets replaced by certificate files, and Istio's
//! own extensions handled explicitly — kept for an Istio-built Envoy,
//! otherwise dropped with a note saying what that changes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::listener::listener_filter;
use super::{bootstrap, cluster, listener, route_configuration};
use crate::{ClusterLoadAssignment, DiscoveryType, ProxyTables};

/// `(address, port)`.
pub type HostPort = (String, u16);

/// Certificate files for one SDS secret name.
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    pub certificate_chain: Option<String>,
    pub private_key: Option<String>,
    pub trusted_ca: Option<String>,
}

/// Where the exported proxy lives.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Listener name → the real address it binds. Listeners not named keep
    /// their address and do not bind (they receive connections handed over
    /// by a listener with `use_original_dst`).
    pub binds: BTreeMap<String, HostPort>,
    /// Bound listeners read a PROXY protocol header first (the mesh's
    /// capture carries the original source and destination in one).
    pub proxy_protocol: bool,
    /// Endpoint address on the mesh → real address.
    pub endpoints: BTreeMap<HostPort, HostPort>,
    /// SDS secret name (`default`, `ROOTCA`, `kubernetes://NAME`,
    /// `file-root:system`) → files.
    pub secrets: BTreeMap<String, SecretFiles>,
    /// The admin interface.
    pub admin: HostPort,
    /// Where access logs go instead of the mesh config's file.
    pub access_log_path: Option<String>,
    /// The Envoy at hand is Istio's proxy (it knows `istio.*` filters).
    pub istio_extensions: bool,
}

/// The exported bootstrap and what the export changed.
#[derive(Debug, Clone)]
pub struct Export {
    pub bootstrap: Value,
    /// One line per change that alters behaviour (written as comments).
    pub notes: Vec<String>,
}

impl Export {
    /// The file: notes as YAML comments, then the bootstrap (JSON is YAML).
    pub fn to_yaml(&self) -> String {
        let mut s = String::from(
            "# Envoy bootstrap exported by meshsim: the tables istiod would push,\n# made static. What the export changed:\n",
        );
        for n in &self.notes {
            s.push_str("#  - ");
            s.push_str(n);
            s.push('\n');
        }
        s.push_str(&serde_json::to_string_pretty(&self.bootstrap).unwrap_or_default());
        s.push('\n');
        s
    }
}

/// Istio-only extensions and what dropping them changes.
const ISTIO_ONLY: &[(&str, &str)] = &[
    ("istio.stats", "no istio_requests_total / istio_tcp_* metrics"),
    (
        "istio.metadata_exchange",
        "no peer metadata exchange (x-envoy-peer-metadata headers)",
    ),
    (
        "istio.alpn",
        "mTLS upstreams offer the cluster's ALPN (istio-peer-exchange, istio) instead of istio-http/1.1 or istio-h2",
    ),
];

pub fn export(t: &ProxyTables, opts: &ExportOptions) -> Export {
    let mut notes = Vec::new();
    let mut b = bootstrap(t);
    if let Some(m) = b.as_object_mut() {
        m.remove("dynamic_resources");
    }
    b["admin"] = json!({"address": {"socket_address": {"address": opts.admin.0, "port_value": opts.admin.1}}});
    let mut listeners: Vec<Value> = Vec::new();
    for l in &t.listeners {
        let mut v = listener(l, t);
        match opts.binds.get(&l.name) {
            Some((addr, port)) => {
                v["address"] = json!({"socket_address": {"address": addr, "port_value": port}});
                if let Some(m) = v.as_object_mut() {
                    m.remove("bind_to_port");
                }
                if opts.proxy_protocol {
                    let mut filters =
                        vec![listener_filter("envoy.filters.listener.proxy_protocol")];
                    if let Some(existing) = v["listener_filters"].as_array() {
                        filters.extend(existing.iter().cloned());
                    }
                    v["listener_filters"] = Value::Array(filters);
                }
            }
            None if l.bind_to_port && !l.use_original_dst => {
                v["bind_to_port"] = json!(false);
                notes.push(format!(
                    "listener {} is not bound (no real address given for it)",
                    l.name
                ));
            }
            None => {}
        }
        listeners.push(v);
    }
    let mut clusters: Vec<Value> = t.clusters.iter().map(cluster).collect();
    for (c, v) in t.clusters.iter().zip(clusters.iter_mut()) {
        if c.discovery_type == DiscoveryType::Eds {
            v["type"] = json!("STATIC");
            if let Some(m) = v.as_object_mut() {
                m.remove("eds_cluster_config");
            }
            let cla = t
                .load_assignment(&c.name)
                .cloned()
                .unwrap_or(ClusterLoadAssignment {
                    cluster_name: c.name.clone(),
                    endpoints: vec![],
                });
            v["load_assignment"] = super::load_assignment(&cla);
        }
        if c.discovery_type == DiscoveryType::OriginalDst {
            notes.push(format!(
                "cluster {} connects to the original destination (a mesh address)",
                c.name
            ));
        }
    }
    let mut resources = json!({"listeners": listeners, "clusters": clusters});
    inline_routes(&mut resources, t, &mut notes);
    map_endpoints(&mut resources, opts, &mut notes);
    inline_secrets(&mut resources, opts, &mut notes);
    if let Some(p) = &opts.access_log_path {
        set_access_log_path(&mut resources, p);
    }
    if !opts.istio_extensions {
        drop_istio_extensions(&mut resources, &mut notes);
    }
    // The bootstrap's own listeners and clusters stay as Istio's are.
    if let Some(extra) = b["static_resources"]["clusters"].as_array().cloned() {
        for c in extra {
            let name = c["name"].as_str().unwrap_or_default();
            if name == "prometheus_stats" || name == "agent" {
                if let Some(a) = resources["clusters"].as_array_mut() {
                    a.push(c);
                }
            }
        }
    }
    b["static_resources"] = resources;
    notes.sort();
    notes.dedup();
    Export {
        bootstrap: b,
        notes,
    }
}

/// Visits every JSON object, depth first.
fn walk(v: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            f(m);
            for x in m.values_mut() {
                walk(x, f);
            }
        }
        Value::Array(a) => {
            for x in a {
                walk(x, f);
            }
        }
        _ => {}
    }
}

/// RDS → the route configuration inline in its connection manager.
fn inline_routes(v: &mut Value, t: &ProxyTables, notes: &mut Vec<String>) {
    walk(v, &mut |m| {
        let Some(name) = m
            .get("rds")
            .and_then(|r| r.get("route_config_name"))
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return;
        };
        m.remove("rds");
        let rc = match t.route_config(&name) {
            Some(rc) => route_configuration(rc),
            None => {
                notes.push(format!(
                    "route configuration {name} does not exist: an empty one stands in"
                ));
                json!({"name": name, "virtual_hosts": []})
            }
        };
        m.insert("route_config".into(), rc);
    });
}

/// Endpoint addresses on the mesh → the real addresses given.
fn map_endpoints(v: &mut Value, opts: &ExportOptions, notes: &mut Vec<String>) {
    let Some(clusters) = v["clusters"].as_array_mut() else {
        return;
    };
    for c in clusters {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let dns = matches!(c["type"].as_str(), Some("STRICT_DNS" | "LOGICAL_DNS"));
        let mut all_mapped = true;
        walk(&mut c["load_assignment"], &mut |m| {
            let Some(sa) = m.get_mut("socket_address") else {
                return;
            };
            let key = (
                sa["address"].as_str().unwrap_or_default().to_string(),
                u16::try_from(sa["port_value"].as_u64().unwrap_or(0)).unwrap_or(0),
            );
            match opts.endpoints.get(&key) {
                Some((a, p)) => {
                    sa["address"] = json!(a);
                    sa["port_value"] = json!(p);
                }
                None => all_mapped = false,
            }
        });
        if dns && all_mapped && c["load_assignment"].is_object() {
            // Mapped to real addresses: no DNS to resolve any more.
            c["type"] = json!("STATIC");
            if let Some(m) = c.as_object_mut() {
                m.remove("dns_lookup_family");
                m.remove("respect_dns_ttl");
            }
        } else if dns {
            notes.push(format!("cluster {name} resolves its hosts with DNS"));
        }
    }
}

/// SDS secret references → certificate files.
fn inline_secrets(v: &mut Value, opts: &ExportOptions, notes: &mut Vec<String>) {
    walk(v, &mut |m| {
        if let Some(cfgs) = m.remove("tls_certificate_sds_secret_configs") {
            let certs: Vec<Value> = cfgs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .filter_map(|name| {
                    let f = opts.secrets.get(name);
                    match f.and_then(|f| {
                        Some((f.certificate_chain.as_ref()?, f.private_key.as_ref()?))
                    }) {
                        Some((chain, key)) => Some(json!({
                            "certificate_chain": {"filename": chain},
                            "private_key": {"filename": key},
                        })),
                        None => {
                            notes
                                .push(format!("secret {name}: no certificate file given; dropped"));
                            None
                        }
                    }
                })
                .collect();
            m.insert("tls_certificates".into(), Value::Array(certs));
        }
        if let Some(combined) = m.remove("combined_validation_context") {
            let mut ctx = combined["default_validation_context"].clone();
            let ca = combined["validation_context_sds_secret_config"]["name"]
                .as_str()
                .unwrap_or_default();
            match opts.secrets.get(ca).and_then(|f| f.trusted_ca.as_ref()) {
                Some(file) => ctx["trusted_ca"] = json!({"filename": file}),
                None => notes.push(format!(
                    "secret {ca}: no CA file given; peers are not verified"
                )),
            }
            m.insert("validation_context".into(), ctx);
        }
    });
}

fn set_access_log_path(v: &mut Value, path: &str) {
    walk(v, &mut |m| {
        let is_file_log = m
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("FileAccessLog"));
        if is_file_log {
            m.insert("path".into(), json!(path));
        }
    });
}

/// Removes `istio.*` filters from filter lists, noting each once.
fn drop_istio_extensions(v: &mut Value, notes: &mut Vec<String>) {
    walk(v, &mut |m| {
        for key in ["filters", "http_filters"] {
            if let Some(Value::Array(list)) = m.get_mut(key) {
                list.retain(|f| {
                    let name = f["name"].as_str().unwrap_or_default();
                    match ISTIO_ONLY.iter().find(|(n, _)| *n == name) {
                        Some((n, what)) => {
                            notes.push(format!("{n} dropped (not in stock Envoy): {what}"));
                            false
                        }
                        None => true,
                    }
                });
            }
        }
    });
}
