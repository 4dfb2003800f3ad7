//! `istioctl proxy-config`'s tables, computed the way istioctl computes
//! them (istioctl/pkg/writer/envoy/configdump, .../clusters,
//! .../compare/sds): from an Envoy config dump (and, for `endpoints`, the
//! admin `/clusters?format=json` output), with its sorts (Go's
//! `sort.Slice`, ties included), its cell texts and its tabwriter
//! settings. So a table here is what istioctl prints for the same dump.

use std::io::Write;

use serde_json::Value;

mod clusters;
mod endpoints;
pub mod gosort;
mod listeners;
mod routes;
mod secrets;

pub use clusters::{cluster_summary, sorted_clusters, ClusterFilter};
pub use endpoints::{
    admin_endpoint_summary, cluster_has_matching_host, eds_summary, EndpointFilter,
};
pub use listeners::{listener_summary, listener_type, ListenerFilter};
pub use routes::{route_summary, sorted_routes, RouteFilter};
pub use secrets::{secret_summary, SecretView};

/// A config dump as istioctl reads it: `configs[]` by `@type`, each
/// resource's dynamic entries then its static ones.
pub struct Dump<'a> {
    v: &'a Value,
}

impl<'a> Dump<'a> {
    pub fn new(v: &'a Value) -> Self {
        Self { v }
    }

    fn section(&self, kind: &str) -> Option<&'a Value> {
        self.v["configs"].as_array()?.iter().find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!(".{kind}")))
        })
    }

    fn items(&self, kind: &str, lists: &[(&str, &[&str])]) -> Vec<&'a Value> {
        let Some(s) = self.section(kind) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (list, path) in lists {
            for item in s[*list].as_array().into_iter().flatten() {
                let mut v = item;
                for p in *path {
                    v = &v[*p];
                }
                if !v.is_null() {
                    out.push(v);
                }
            }
        }
        out
    }

    pub fn bootstrap(&self) -> Option<&'a Value> {
        self.section("BootstrapConfigDump").map(|s| &s["bootstrap"])
    }

    pub fn clusters(&self) -> Vec<&'a Value> {
        self.items(
            "ClustersConfigDump",
            &[
                ("dynamic_active_clusters", &["cluster"]),
                ("static_clusters", &["cluster"]),
            ],
        )
    }

    pub fn listeners(&self) -> Vec<&'a Value> {
        self.items(
            "ListenersConfigDump",
            &[
                ("dynamic_listeners", &["active_state", "listener"]),
                ("static_listeners", &["listener"]),
            ],
        )
    }

    pub fn routes(&self) -> Vec<&'a Value> {
        self.items(
            "RoutesConfigDump",
            &[
                ("dynamic_route_configs", &["route_config"]),
                ("static_route_configs", &["route_config"]),
            ],
        )
    }

    pub fn endpoint_configs(&self) -> Vec<&'a Value> {
        self.items(
            "EndpointsConfigDump",
            &[
                ("dynamic_endpoint_configs", &["endpoint_config"]),
                ("static_endpoint_configs", &["endpoint_config"]),
            ],
        )
    }

    /// `(name, secret, version_info, state)`, warming first, as istioctl lists them.
    pub fn secrets(&self) -> Vec<(&'a str, &'a Value, &'a str, &'static str)> {
        let Some(s) = self.section("SecretsConfigDump") else {
            return vec![];
        };
        let mut out = Vec::new();
        for (list, state) in [
            ("dynamic_warming_secrets", "WARMING"),
            ("dynamic_active_secrets", "ACTIVE"),
        ] {
            for item in s[list].as_array().into_iter().flatten() {
                out.push((
                    item["name"].as_str().unwrap_or_default(),
                    &item["secret"],
                    item["version_info"].as_str().unwrap_or_default(),
                    state,
                ));
            }
        }
        out
    }
}

/// Go's `tabwriter.NewWriter(w, 0, 8, padding, ' ', 0)` over `lines` (cells
/// separated by `\t`, each line ending in `\n`).
pub fn tabwrite(padding: usize, text: &str) -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(0)
        .padding(padding);
    let _ = tw.write_all(text.as_bytes());
    tw.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `model.ParseSubsetKey`: `direction|port|subset|hostname` (or the DNS SRV
/// form `outbound_.PORT_.SUBSET_.HOST`).
pub fn parse_subset_key(s: &str) -> (String, String, String, i64) {
    let sep = if s.starts_with("outbound_") || s.starts_with("inbound_") {
        "_."
    } else {
        "|"
    };
    let mut out = (String::new(), String::new(), String::new(), 0);
    let Some((dir, rest)) = s.split_once(sep) else {
        return out;
    };
    out.0 = dir.to_string();
    let Some((port, rest)) = rest.split_once(sep) else {
        return out;
    };
    out.3 = port.parse().unwrap_or(0);
    let Some((subset, rest)) = rest.split_once(sep) else {
        return out;
    };
    out.1 = subset.to_string();
    if !rest.contains(sep) {
        out.2 = rest.to_string();
    }
    out
}

/// cluster.go `safelyParseSubsetKey`: names with fewer than four `|`
/// parts sort by their whole name.
fn safely_parse_subset_key(key: &str) -> (String, String, String, i64) {
    if key.split('|').count() > 3 {
        parse_subset_key(key)
    } else {
        (String::new(), String::new(), key.to_string(), 0)
    }
}

/// The cluster order istioctl uses for clusters and endpoints: name,
/// subset, port, direction.
fn cluster_key_less(a: &str, b: &str) -> bool {
    let (ad, asub, an, ap) = safely_parse_subset_key(a);
    let (bd, bsub, bn, bp) = safely_parse_subset_key(b);
    if an == bn {
        if asub == bsub {
            if ap == bp {
                return ad < bd;
            }
            return ap < bp;
        }
        return asub < bsub;
    }
    an < bn
}

/// route.go `describeManagement`: the `name.namespace` of the Istio config
/// behind a resource, from `metadata.filter_metadata.istio.config`.
pub fn describe_management(metadata: &Value) -> String {
    let Some(config) = metadata["filter_metadata"]["istio"]["config"].as_str() else {
        return String::new();
    };
    if config.starts_with("/apis/networking.istio.io/") {
        let pieces: Vec<&str> = config.split('/').collect();
        if pieces.len() != 8 {
            return String::new();
        }
        return format!("{}.{}", pieces[7], pieces[5]);
    }
    "<unknown>".into()
}

/// What `istioctl proxy-config all` prints: bootstrap, clusters,
/// listeners, routes, secrets and endpoints (from the dump's EDS), each
/// with a `TYPE/` name column.
pub fn all_summary(
    dump: &Value,
    filters: &Filters,
    secrets: &SecretView,
    with_headers: bool,
) -> String {
    let d = Dump::new(dump);
    let mut out = String::new();
    let header = |out: &mut String, title: &str| {
        if with_headers {
            out.push_str(&format!("------ {title} ------\n\n"));
        }
    };
    header(&mut out, "BOOTSTRAP INFO");
    out.push_str(&bootstrap_summary(&d));
    out.push('\n');
    header(&mut out, "CLUSTER INFO");
    out.push_str(&cluster_summary(&d, &filters.cluster, true));
    out.push('\n');
    header(&mut out, "LISTENER INFO");
    out.push_str(&listener_summary(&d, &filters.listener, true));
    out.push('\n');
    header(&mut out, "ROUTE INFO");
    out.push_str(&route_summary(&d, &filters.route, true));
    out.push('\n');
    header(&mut out, "SECRET INFO");
    out.push_str(&secret_summary(&d, secrets, true));
    out.push('\n');
    header(&mut out, "ENDPOINTS INFO");
    out.push_str(&eds_summary(&d, &filters.endpoint, true));
    out
}

/// Every filter flag of `istioctl proxy-config`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub cluster: ClusterFilter,
    pub listener: ListenerFilter,
    pub route: RouteFilter,
    pub endpoint: EndpointFilter,
}

/// configdump.go `PrintBootstrapSummary`: Istio and Envoy versions.
pub fn bootstrap_summary(d: &Dump<'_>) -> String {
    let Some(b) = d.bootstrap() else {
        return String::new();
    };
    let md = &b["node"]["metadata"];
    let mut s = String::new();
    if let Some(v) = md["ISTIO_VERSION"].as_str().filter(|v| !v.is_empty()) {
        s.push_str(&format!("Istio Version:\t{v}\n"));
    }
    if let Some(sha) = md["ISTIO_PROXY_SHA"].as_str().filter(|v| !v.is_empty()) {
        let sha = sha.split_once(':').map(|(_, s)| s).unwrap_or(sha);
        s.push_str(&format!("Istio Proxy Version:\t{sha}\n"));
    }
    let ubv = &b["node"]["user_agent_build_version"];
    let ver = &ubv["version"];
    let n = |k: &str| ver[k].as_u64().unwrap_or(0);
    let mut env = format!("{}.{}.{}", n("major_number"), n("minor_number"), n("patch"));
    let m = &ubv["metadata"];
    for (key, sep) in [
        ("build.label", "-"),
        ("revision.status", "/"),
        ("build.type", "/"),
        ("ssl.version", "/"),
    ] {
        if let Some(v) = m[key].as_str() {
            env.push_str(&format!("{sep}{v}"));
        }
    }
    s.push_str(&format!("Envoy Version:\t{env}\n"));
    tabwrite(1, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keys() {
        assert_eq!(
            parse_subset_key("outbound|9080|v1|reviews.default.svc.cluster.local"),
            (
                "outbound".into(),
                "v1".into(),
                "reviews.default.svc.cluster.local".into(),
                9080
            )
        );
        assert_eq!(
            parse_subset_key("outbound_.80_._.web.shop.svc.cluster.local").3,
            80
        );
        assert_eq!(safely_parse_subset_key("agent").2, "agent");
        assert!(cluster_key_less("BlackHoleCluster", "agent"));
        assert!(cluster_key_less(
            "outbound|80||web.shop.svc.cluster.local",
            "outbound|80|v1|web.shop.svc.cluster.local"
        ));
    }

    #[test]
    fn management_names_the_config() {
        let m = serde_json::json!({"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/shop/destination-rule/web"}}});
        assert_eq!(describe_management(&m), "web.shop");
        assert_eq!(describe_management(&Value::Null), "");
    }
}
