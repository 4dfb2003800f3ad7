//! `istioctl proxy-config endpoints` (writer/envoy/clusters: from the
//! admin `/clusters?format=json`) and the endpoints section of
//! `proxy-config all` (configdump/endpoint.go: from the dump's EDS).

use serde_json::Value;

use super::{cluster_key_less, gosort, tabwrite, Dump};

/// `--address`, `--port`, `--cluster`, `--status`.
#[derive(Debug, Clone, Default)]
pub struct EndpointFilter {
    pub address: String,
    pub port: u32,
    pub cluster: String,
    pub status: String,
}

impl EndpointFilter {
    fn verify(&self, addresses: &[String], port: u32, cluster: &str, status: &str) -> bool {
        (self.address.is_empty()
            || addresses
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&self.address)))
            && (self.port == 0 || port == self.port)
            && (self.cluster.is_empty() || cluster.eq_ignore_ascii_case(&self.cluster))
            && (self.status.is_empty() || status.eq_ignore_ascii_case(&self.status))
    }
}

/// An address as the clusters writer prints it (`unix://` for pipes).
fn host_address(a: &Value) -> (String, u32) {
    if let Some(ip) = a["socket_address"]["address"].as_str() {
        let port = a["socket_address"]["port_value"].as_u64().unwrap_or(0) as u32;
        return (ip.to_string(), port);
    }
    if let Some(p) = a["pipe"]["path"].as_str() {
        return (format!("unix://{p}"), 0);
    }
    if let Some(l) = a["envoy_internal_address"]["server_listener_name"].as_str() {
        let id = a["envoy_internal_address"]["endpoint_id"]
            .as_str()
            .unwrap_or_default();
        return (format!("envoy://{l}/{id}"), 0);
    }
    ("unknown".into(), 0)
}

/// A `/clusters` entry with a host passing `f` (what `-o json` prints).
pub fn cluster_has_matching_host(c: &Value, f: &EndpointFilter) -> bool {
    let cluster = c["name"].as_str().unwrap_or_default();
    c["host_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| {
            let (address, port) = host_address(&h["address"]);
            let status = h["health_status"]["eds_health_status"]
                .as_str()
                .unwrap_or("UNKNOWN");
            f.verify(std::slice::from_ref(&address), port, cluster, status)
        })
}

/// clusters.go `PrintEndpointsSummary`, over `/clusters?format=json`.
pub fn admin_endpoint_summary(clusters: &Value, f: &EndpointFilter) -> String {
    struct Row {
        address: String,
        port: u32,
        cluster: String,
        status: String,
        outlier: bool,
    }
    let mut rows = Vec::new();
    for c in clusters["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let cluster = c["name"].as_str().unwrap_or_default();
        for h in c["host_statuses"].as_array().into_iter().flatten() {
            let (address, port) = host_address(&h["address"]);
            let status = h["health_status"]["eds_health_status"]
                .as_str()
                .unwrap_or("UNKNOWN")
                .to_string();
            if f.verify(std::slice::from_ref(&address), port, cluster, &status) {
                rows.push(Row {
                    address,
                    port,
                    cluster: cluster.to_string(),
                    status,
                    outlier: h["health_status"]["failed_outlier_check"]
                        .as_bool()
                        .unwrap_or(false),
                });
            }
        }
    }
    gosort::sort_slice(&mut rows, |a, b| {
        if a.address == b.address {
            if a.port == b.port {
                return a.cluster < b.cluster;
            }
            return a.port < b.port;
        }
        a.address < b.address
    });
    let mut s = String::from("ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER\n");
    for r in rows {
        let ep = if r.port != 0 {
            format!("{}:{}", r.address, r.port)
        } else {
            r.address
        };
        let check = if r.outlier { "FAILED" } else { "OK" };
        s.push_str(&format!("{ep}\t{}\t{check}\t{}\n", r.status, r.cluster));
    }
    tabwrite(5, &s)
}

/// An EDS address as the configdump writer prints it (`addr:port`, pipe path).
fn eds_address(a: &Value) -> String {
    if let Some(ip) = a["socket_address"]["address"].as_str() {
        let port = a["socket_address"]["port_value"].as_u64().unwrap_or(0);
        return format!("{ip}:{port}");
    }
    if let Some(p) = a["pipe"]["path"].as_str() {
        return p.to_string();
    }
    if let Some(l) = a["envoy_internal_address"]["server_listener_name"].as_str() {
        let id = a["envoy_internal_address"]["endpoint_id"]
            .as_str()
            .unwrap_or_default();
        return format!("envoy://{l}/{id}");
    }
    "unknown".into()
}

/// `util.LocalityToString`: region, then `/zone` if set, then `/subzone`.
fn locality(l: &Value) -> String {
    let part = |k: &str| l[k].as_str().unwrap_or_default();
    let mut s = part("region").to_string();
    if part("zone").is_empty() {
        return s;
    }
    s = format!("{s}/{}", part("zone"));
    if part("sub_zone").is_empty() {
        return s;
    }
    format!("{s}/{}", part("sub_zone"))
}

/// endpoint.go `PrintEndpointsSummary`, over the dump's EDS (what
/// `proxy-config all` shows).
pub fn eds_summary(d: &Dump<'_>, f: &EndpointFilter, with_type: bool) -> String {
    let mut clas: Vec<&Value> = d.endpoint_configs();
    gosort::sort_slice(&mut clas, |a, b| {
        cluster_key_less(
            a["cluster_name"].as_str().unwrap_or_default(),
            b["cluster_name"].as_str().unwrap_or_default(),
        )
    });
    let mut s = String::from("NAME\tSTATUS\tLOCALITY\tCLUSTER\n");
    for cla in clas {
        let cluster = cla["cluster_name"].as_str().unwrap_or_default();
        for llb in cla["endpoints"].as_array().into_iter().flatten() {
            for ep in llb["lb_endpoints"].as_array().into_iter().flatten() {
                let a = &ep["endpoint"]["address"];
                let port = a["socket_address"]["port_value"].as_u64().unwrap_or(0) as u32;
                let status = ep["health_status"].as_str().unwrap_or("UNKNOWN");
                let mut addrs = vec![eds_address(a)];
                addrs.extend(
                    ep["endpoint"]["additional_addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| eds_address(&x["address"])),
                );
                if !f.verify(&addrs, port, cluster, status) {
                    continue;
                }
                let mut name = addrs.join(",");
                if with_type {
                    name = format!("endpoint/{name}");
                }
                s.push_str(&format!(
                    "{name}\t{status}\t{}\t{cluster}\n",
                    locality(&llb["locality"])
                ));
            }
        }
    }
    tabwrite(5, &s)
}
