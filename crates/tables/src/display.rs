//! What `meshsim proxy-config` prints: istioctl's tables, or Envoy
//! `config_dump`-style JSON.

use std::fmt::Write;

use crate::*;

/// Which part of the configuration to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Narrows the output to one name and/or port.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub name: Option<String>,
    pub port: Option<u16>,
}

pub fn render(
    t: &ProxyTables,
    kind: Kind,
    format: Format,
    f: &Filter,
) -> Result<String, serde_json::Error> {
    let listeners: Vec<&Listener> = t
        .listeners
        .iter()
        .filter(|l| {
            f.name.as_ref().is_none_or(|n| *n == l.name)
                && f.port
                    .is_none_or(|p| p == l.address.socket_address.port_value)
        })
        .collect();
    let routes: Vec<&RouteConfiguration> = t
        .route_configs
        .iter()
        .filter(|r| f.name.as_ref().is_none_or(|n| *n == r.name))
        .collect();
    let clusters: Vec<&Cluster> = t
        .clusters
        .iter()
        .filter(|c| {
            f.name.as_ref().is_none_or(|n| *n == c.name)
                && f.port.is_none_or(|p| p == c.metadata.port)
        })
        .collect();
    let endpoints: Vec<(&str, &LbEndpoint)> = endpoint_rows(t)
        .into_iter()
        .filter(|(c, _)| f.name.as_ref().is_none_or(|n| n == c))
        .collect();
    Ok(match format {
        Format::Json => {
            // Protobuf JSON as istioctl prints it (camelCase field names).
            use crate::envoy;
            let v: serde_json::Value = match kind {
                Kind::Listeners => listeners.iter().map(|l| envoy::listener(l, t)).collect(),
                Kind::Routes => routes
                    .iter()
                    .map(|r| envoy::route_configuration(r))
                    .collect(),
                Kind::Clusters => clusters.iter().map(|c| envoy::cluster(c)).collect(),
                Kind::Endpoints => t
                    .endpoints
                    .iter()
                    .chain(t.clusters.iter().filter_map(|c| c.load_assignment.as_ref()))
                    .filter(|c| f.name.as_ref().is_none_or(|n| *n == c.cluster_name))
                    .map(envoy::load_assignment)
                    .collect(),
                Kind::All => envoy::config_dump(t, &envoy::DumpMeta::default()),
            };
            let mut s = serde_json::to_string_pretty(&envoy::camel(&v))?;
            s.push('\n');
            s
        }
        Format::Table => match kind {
            Kind::Listeners => listener_table(&listeners),
            Kind::Routes => route_table(&routes),
            Kind::Clusters => cluster_table(&clusters),
            Kind::Endpoints => endpoint_table(&endpoints),
            Kind::All => {
                let mut s = String::new();
                for (title, body) in [
                    ("Listeners", listener_table(&listeners)),
                    ("Routes", route_table(&routes)),
                    ("Clusters", cluster_table(&clusters)),
                    ("Endpoints", endpoint_table(&endpoints)),
                    ("EnvoyFilter patches", patch_table(&t.envoy_filter_patches)),
                ] {
                    let _ = writeln!(s, "--- {title} ---\n{body}");
                }
                s
            }
        },
    })
}

/// Left-aligned columns separated by at least two spaces, like istioctl.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut s = String::new();
    let line = |cells: Vec<&str>, s: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        s.push('\n');
    };
    line(header.to_vec(), &mut s);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut s);
    }
    s
}

fn chain_match(m: &FilterChainMatch) -> String {
    let mut parts = Vec::new();
    if !m.server_names.is_empty() {
        parts.push(format!("SNI: {}", m.server_names.join(",")));
    }
    if !m.transport_protocol.is_any() {
        parts.push(format!("Trans: {}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("App: {}", m.application_protocols.join(",")));
    }
    if let Some(p) = m.destination_port {
        parts.push(format!("Addr: *:{p}"));
    }
    if !m.prefix_ranges.is_empty() {
        parts.push(format!(
            "Addr: {}",
            m.prefix_ranges
                .iter()
                .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if parts.is_empty() {
        "ALL".into()
    } else {
        parts.join("; ")
    }
}

fn chain_destination(c: &FilterChain) -> String {
    if let Some(h) = c.hcm() {
        if let Some(r) = &h.rds {
            return format!("Route: {}", r.route_config_name);
        }
        if let Some(rc) = &h.route_config {
            return format!("Inline Route: {}", rc.name);
        }
        return "HTTP".into();
    }
    if let Some(t) = c.tcp_proxy() {
        if let Some(cl) = &t.cluster {
            return if cl.contains('|') {
                format!("Cluster: {cl}")
            } else {
                cl.clone()
            };
        }
        if let Some(w) = &t.weighted_clusters {
            return format!(
                "WeightedClusters: {}",
                w.clusters
                    .iter()
                    .map(|c| format!("{}({})", c.name, c.weight))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    }
    "Non-HTTP/Non-TCP".into()
}

fn listener_table(ls: &[&Listener]) -> String {
    let mut rows = Vec::new();
    for l in ls {
        let a = &l.address.socket_address;
        for c in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            rows.push(vec![
                a.address.clone(),
                a.port_value.to_string(),
                chain_match(&c.filter_chain_match),
                chain_destination(c),
            ]);
        }
    }
    table(&["ADDRESSES", "PORT", "MATCH", "DESTINATION"], rows)
}

fn route_match(r: &Route) -> String {
    let mut s = match &r.match_.path {
        PathMatch::Prefix(p) if p == "/" => "/*".to_string(),
        PathMatch::Prefix(p) => format!("{p}*"),
        PathMatch::Path(p) => p.clone(),
        PathMatch::SafeRegex(re) => re.regex.clone(),
    };
    for h in &r.match_.headers {
        let v = match &h.matcher {
            HeaderMatchSpecifier::StringMatch(StringMatcher::Exact(x)) => format!("={x}"),
            HeaderMatchSpecifier::StringMatch(StringMatcher::Prefix(x)) => format!("^={x}"),
            HeaderMatchSpecifier::StringMatch(StringMatcher::SafeRegex(x)) => {
                format!("~={}", x.regex)
            }
            HeaderMatchSpecifier::PresentMatch(_) => String::new(),
        };
        let _ = write!(
            s,
            " ({}{}{v})",
            if h.invert_match { "!" } else { "" },
            h.name
        );
    }
    s
}

fn route_table(rcs: &[&RouteConfiguration]) -> String {
    let mut rows = Vec::new();
    for rc in rcs {
        if rc.virtual_hosts.is_empty() {
            rows.push(vec![
                rc.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for vh in &rc.virtual_hosts {
            if vh.routes.is_empty() {
                rows.push(vec![
                    rc.name.clone(),
                    vh.name.clone(),
                    vh.domains.join(", "),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for r in &vh.routes {
                rows.push(vec![
                    rc.name.clone(),
                    vh.name.clone(),
                    vh.domains.join(", "),
                    route_match(r),
                    r.virtual_service().unwrap_or_else(|| "-".into()),
                ]);
            }
        }
    }
    table(
        &["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
        rows,
    )
}

fn cluster_table(cs: &[&Cluster]) -> String {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows = cs
        .iter()
        .map(|c| {
            let m = &c.metadata;
            let (fqdn, port, dir) = match m.direction {
                ClusterDirection::Special => (c.name.clone(), "-".to_string(), "-".to_string()),
                ClusterDirection::Inbound => (String::new(), m.port.to_string(), "inbound".into()),
                ClusterDirection::Outbound => {
                    (m.service.clone(), m.port.to_string(), "outbound".into())
                }
            };
            let t = serde_json::to_value(c.discovery_type)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            vec![
                fqdn,
                port,
                dash(&m.subset),
                dir,
                t,
                dash(&m.destination_rule),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
        ],
        rows,
    )
}

fn endpoint_rows(t: &ProxyTables) -> Vec<(&str, &LbEndpoint)> {
    t.endpoints
        .iter()
        .chain(t.clusters.iter().filter_map(|c| c.load_assignment.as_ref()))
        .flat_map(|cla| cla.all().map(move |e| (cla.cluster_name.as_str(), e)))
        .collect()
}

fn endpoint_table(rows: &[(&str, &LbEndpoint)]) -> String {
    let rows = rows
        .iter()
        .map(|(c, e)| {
            let a = &e.endpoint.address.socket_address;
            vec![
                format!("{}:{}", a.address, a.port_value),
                e.health_status.to_string(),
                "OK".into(),
                c.to_string(),
            ]
        })
        .collect();
    table(&["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"], rows)
}

pub fn patch_table(p: &[PatchOutcome]) -> String {
    let rows = p
        .iter()
        .map(|o| {
            vec![
                o.envoy_filter.clone(),
                o.patch.to_string(),
                o.apply_to.clone(),
                o.operation.clone(),
                if o.applied {
                    "applied".into()
                } else {
                    "NOT APPLIED".into()
                },
                o.detail.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ENVOYFILTER",
            "PATCH",
            "APPLY TO",
            "OPERATION",
            "RESULT",
            "DETAIL",
        ],
        rows,
    )
}
