//! `istioctl proxy-config listeners` (configdump/listener.go).

use serde_json::Value;

use super::{gosort, tabwrite, Dump};

const HCM: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

/// `--address`, `--port`, `--type`, `--verbose`.
#[derive(Debug, Clone)]
pub struct ListenerFilter {
    pub address: String,
    pub port: u32,
    pub kind: String,
    pub verbose: bool,
}

impl Default for ListenerFilter {
    fn default() -> Self {
        Self {
            address: String::new(),
            port: 0,
            kind: String::new(),
            verbose: true,
        }
    }
}

impl ListenerFilter {
    pub fn verify(&self, l: &Value) -> bool {
        if !self.address.is_empty() {
            let mut addrs = additional_addresses(l);
            addrs.push(address(l));
            if !addrs.iter().any(|a| a.eq_ignore_ascii_case(&self.address)) {
                return false;
            }
        }
        if self.port != 0 && port(l) != self.port {
            return false;
        }
        self.kind.is_empty() || listener_type(l).eq_ignore_ascii_case(&self.kind)
    }
}

fn chains(l: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = l["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !l["default_filter_chain"].is_null() {
        v.push(&l["default_filter_chain"]);
    }
    v
}

fn filters(fc: &Value) -> impl Iterator<Item = &Value> {
    fc["filters"].as_array().into_iter().flatten()
}

/// Whether any string in `v` mentions `needle` (istioctl looks for
/// `BlackHoleCluster` in the filter's serialised config).
fn mentions(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        Value::Object(o) => o.values().any(|x| mentions(x, needle)),
        _ => false,
    }
}

/// `retrieveListenerType`: HTTP, TCP, HTTP+TCP or UNKNOWN.
pub fn listener_type(l: &Value) -> &'static str {
    let (mut http, mut tcp) = (0, 0);
    for fc in chains(l) {
        for f in filters(fc) {
            match f["name"].as_str() {
                Some(HCM) => http += 1,
                Some(TCP_PROXY) if !mentions(&f["typed_config"], "BlackHoleCluster") => tcp += 1,
                _ => {}
            }
        }
    }
    match (http > 0, tcp > 0) {
        (true, false) => "HTTP",
        (true, true) => "HTTP+TCP",
        (false, true) => "TCP",
        (false, false) => "UNKNOWN",
    }
}

fn address(l: &Value) -> String {
    let a = &l["address"];
    a["socket_address"]["address"]
        .as_str()
        .or(a["pipe"]["path"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn additional_addresses(l: &Value) -> Vec<String> {
    l["additional_addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            a["address"]["socket_address"]["address"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn port(l: &Value) -> u32 {
    l["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap_or(0) as u32
}

/// istioctl's names for well-known ALPN lists.
const PROTOCOLS: &[(&str, &[&str])] = &[
    (
        "App: HTTP TLS",
        &[
            "http/1.0",
            "http/1.1",
            "h2c",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    ),
    (
        "App: Istio HTTP Plain",
        &["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"],
    ),
    ("App: TCP TLS", &["istio-peer-exchange", "istio"]),
    ("App: HTTP", &["http/1.0", "http/1.1", "h2c"]),
];

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect()
}

/// `getMatches`: a filter chain match in istioctl's words.
fn describe_chain_match(m: &Value) -> String {
    let mut d = Vec::new();
    let sni = strings(&m["server_names"]);
    if !sni.is_empty() {
        d.push(format!("SNI: {}", sni.join(",")));
    }
    if let Some(t) = m["transport_protocol"].as_str().filter(|t| !t.is_empty()) {
        d.push(format!("Trans: {t}"));
    }
    let alpn = strings(&m["application_protocols"]);
    if !alpn.is_empty() {
        match PROTOCOLS.iter().find(|(_, p)| *p == alpn.as_slice()) {
            Some((name, _)) => d.push(name.to_string()),
            None => d.push(format!("App: {}", alpn.join(","))),
        }
    }
    let port = m["destination_port"]
        .as_u64()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let ranges: Vec<String> = m["prefix_ranges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{}",
                r["address_prefix"].as_str().unwrap_or_default(),
                r["prefix_len"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    if !ranges.is_empty() {
        d.push(format!("Addr: {}{port}", ranges.join(",")));
    } else if !port.is_empty() {
        d.push(format!("Addr: *{port}"));
    }
    if d.is_empty() {
        return "ALL".into();
    }
    d.join("; ")
}

/// `getFilterType`: where a chain sends traffic.
fn describe_destination(fc: &Value) -> String {
    for f in filters(fc) {
        let cfg = &f["typed_config"];
        match f["name"].as_str() {
            Some(HCM) => {
                if !cfg["route_config"].is_null() {
                    return describe_route_config(&cfg["route_config"]);
                }
                if let Some(r) = cfg["rds"]["route_config_name"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                {
                    return format!("Route: {r}");
                }
                return "HTTP".into();
            }
            Some(TCP_PROXY) if !mentions(cfg, "BlackHoleCluster") => {
                let c = cfg["cluster"].as_str().unwrap_or_default();
                if c.contains("Cluster") {
                    return c.to_string();
                }
                return format!("Cluster: {c}");
            }
            _ => {}
        }
    }
    "Non-HTTP/Non-TCP".into()
}

/// `describeRouteConfig`: an inline route table, or its catch-all cluster.
fn describe_route_config(rc: &Value) -> String {
    if let Some(c) = match_all_cluster(rc) {
        return c;
    }
    let vhosts: Vec<String> = rc["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|vh| {
            let domains = strings(&vh["domains"]);
            let routes = vh["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| describe_match(&r["match"]))
                .collect::<Vec<_>>()
                .join(", ");
            if domains == ["*"] {
                routes
            } else {
                format!("{} {routes}", domains.join("/"))
            }
        })
        .collect();
    format!("Inline Route: {}", vhosts.join("; "))
}

fn match_all_cluster(rc: &Value) -> Option<String> {
    let vhosts = rc["virtual_hosts"].as_array()?;
    let [vh] = vhosts.as_slice() else { return None };
    if strings(&vh["domains"]) != ["*"] {
        return None;
    }
    let routes = vh["routes"].as_array()?;
    let [r] = routes.as_slice() else { return None };
    if r["match"]["prefix"].as_str() != Some("/") {
        return None;
    }
    let c = r["route"]["cluster"].as_str()?;
    Some(if c.contains("Cluster") {
        c.to_string()
    } else {
        format!("Cluster: {c}")
    })
}

/// `describeMatch`: a route match (headers are not shown).
pub fn describe_match(m: &Value) -> String {
    let mut c = Vec::new();
    if let Some(p) = m["prefix"].as_str().filter(|p| !p.is_empty()) {
        c.push(format!("{p}*"));
    }
    if let Some(p) = m["path_separated_prefix"]
        .as_str()
        .filter(|p| !p.is_empty())
    {
        c.push(format!("PathPrefix:{p}"));
    }
    if let Some(p) = m["path"].as_str().filter(|p| !p.is_empty()) {
        c.push(p.to_string());
    }
    if let Some(r) = m["safe_regex"]["regex"].as_str() {
        c.push(format!("regex {r}"));
    }
    c.join(" ")
}

/// `PrintListenerSummary`.
pub fn listener_summary(d: &Dump<'_>, f: &ListenerFilter, with_type: bool) -> String {
    let mut ls: Vec<&Value> = d.listeners().into_iter().filter(|l| f.verify(l)).collect();
    gosort::sort_slice(&mut ls, |a, b| {
        let (pa, pb) = (port(a), port(b));
        if pa != pb {
            return pa < pb;
        }
        let (aa, ab) = (address(a), address(b));
        if aa != ab {
            return aa < ab;
        }
        listener_type(a) < listener_type(b)
    });
    let mut s = String::new();
    if with_type {
        s.push_str("NAME\t");
    }
    s.push_str("ADDRESSES\tPORT");
    s.push_str(if f.verbose {
        "\tMATCH\tDESTINATION\n"
    } else {
        "\tTYPE\n"
    });
    for l in ls {
        let mut addrs = vec![address(l)];
        addrs.extend(additional_addresses(l));
        let addrs = addrs.join(",");
        let p = port(l);
        let name = format!("listener/{}", l["name"].as_str().unwrap_or_default());
        if f.verbose {
            let mut matches: Vec<(String, String)> = chains(l)
                .into_iter()
                .map(|fc| {
                    (
                        describe_chain_match(&fc["filter_chain_match"]),
                        describe_destination(fc),
                    )
                })
                .collect();
            gosort::sort_slice(&mut matches, |a, b| a.1 > b.1);
            for (m, dest) in matches {
                if with_type {
                    s.push_str(&format!("{name}\t{addrs}\t{p}\t{m}\t{dest}\n"));
                } else {
                    s.push_str(&format!("{addrs}\t{p}\t{m}\t{dest}\n"));
                }
            }
        } else if with_type {
            s.push_str(&format!("{name}\t{addrs}\t{p}\t{}\n", listener_type(l)));
        } else {
            s.push_str(&format!("{addrs}\t{p}\t{}\n", listener_type(l)));
        }
    }
    tabwrite(1, &s)
}
