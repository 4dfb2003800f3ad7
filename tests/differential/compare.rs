//! What must be identical between Envoy and meshsim, once what is
//! legitimately different (times, ids, ephemeral ports, real versus mesh
//! addresses) is normalised: the response (status line, the headers a
//! proxy writes, body, connection close) and every field of the access-log
//! line in Istio's default format.

use std::collections::BTreeMap;

use super::client::Reply;

/// One field that differs.
#[derive(Debug, Clone)]
pub struct Diff {
    pub field: String,
    pub meshsim: String,
    pub envoy: String,
}

const LOG_FIELDS: [&str; 22] = [
    "start_time",
    "request",
    "response_code",
    "response_flags",
    "response_code_details",
    "connection_termination_details",
    "upstream_transport_failure_reason",
    "bytes_received",
    "bytes_sent",
    "duration",
    "upstream_service_time",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "authority",
    "upstream_host",
    "upstream_cluster",
    "upstream_local_address",
    "downstream_local_address",
    "downstream_remote_address",
    "requested_server_name",
    "route_name",
];

/// Splits a line of Istio's default format into its fields.
pub fn log_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (tok, after) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            (&r[..end], &r[(end + 1).min(r.len())..])
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            (&r[..end], &r[(end + 1).min(r.len())..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push(tok.to_string());
        rest = after.trim_start();
    }
    out
}

/// How to read addresses: real sockets back to the mesh addresses they
/// stand for.
#[derive(Default)]
pub struct Addresses {
    pub real_to_mesh: BTreeMap<String, String>,
    /// The proxy's own address as each writes it where a loopback peer
    /// would go in `x-forwarded-for`: Envoy uses the host's first
    /// non-loopback address, meshsim the gateway pod's.
    pub envoy_self: Option<String>,
    pub mesh_self: Option<String>,
}

impl Addresses {
    /// A length as it would be with the proxy's own address written as
    /// `SELF` wherever `body` has it.
    pub fn selfless_len(&self, n: &str, body: &str, envoy: bool) -> String {
        let me = if envoy {
            &self.envoy_self
        } else {
            &self.mesh_self
        };
        match (me, n.parse::<usize>()) {
            (Some(ip), Ok(n)) => {
                let count = body.matches(ip.as_str()).count();
                (n + 4 * count).saturating_sub(ip.len() * count).to_string()
            }
            _ => n.to_string(),
        }
    }

    /// `v` with the proxy's own address written as `SELF`.
    pub fn selfless(&self, v: &str, envoy: bool) -> String {
        let me = if envoy {
            &self.envoy_self
        } else {
            &self.mesh_self
        };
        match me {
            Some(ip) => v.replace(ip.as_str(), "SELF"),
            None => v.to_string(),
        }
    }

    fn mesh(&self, a: &str) -> String {
        self.real_to_mesh
            .get(a)
            .cloned()
            .unwrap_or_else(|| a.to_string())
    }
}

fn normalise(field: &str, v: &str, a: &Addresses) -> String {
    let present = |x: &str| {
        if v == "-" {
            "-".to_string()
        } else {
            x.to_string()
        }
    };
    match field {
        "start_time" => "T".into(),
        "duration" => "D".into(),
        "upstream_service_time" => present("N"),
        "request_id" => present("ID"),
        "upstream_local_address" => present("LOCAL"),
        "upstream_host" => a.mesh(v),
        "downstream_local_address" => present("LISTENER"),
        "downstream_remote_address" => match v.rsplit_once(':') {
            Some((ip, _)) => format!("{}:*", a.mesh(ip)),
            None => v.to_string(),
        },
        _ => v.to_string(),
    }
}

/// The access-log lines of one case; `bodies` are the response bodies
/// each client read (for lengths that hold the proxy's own address).
pub fn compare_logs(
    meshsim: &[String],
    envoy: &[String],
    a: &Addresses,
    bodies: (&str, &str),
) -> Vec<Diff> {
    let mut diffs = Vec::new();
    if meshsim.len() != envoy.len() {
        diffs.push(Diff {
            field: "log lines".into(),
            meshsim: format!("{} {:?}", meshsim.len(), meshsim),
            envoy: format!("{} {:?}", envoy.len(), envoy),
        });
        return diffs;
    }
    for (m, e) in meshsim.iter().zip(envoy) {
        let (mf, ef) = (log_fields(m), log_fields(e));
        for (i, name) in LOG_FIELDS.iter().enumerate() {
            let mv = normalise(name, mf.get(i).map(String::as_str).unwrap_or("<none>"), a);
            let ev = normalise(name, ef.get(i).map(String::as_str).unwrap_or("<none>"), a);
            let (mv, ev) = match *name {
                "x_forwarded_for" => (a.selfless(&mv, false), a.selfless(&ev, true)),
                "bytes_sent" => (
                    a.selfless_len(&mv, bodies.0, false),
                    a.selfless_len(&ev, bodies.1, true),
                ),
                _ => (mv, ev),
            };
            if mv != ev {
                diffs.push(Diff {
                    field: format!("log {name}"),
                    meshsim: mv,
                    envoy: ev,
                });
            }
        }
    }
    diffs
}

/// Headers a proxy writes itself (others pass through from upstream).
const PROXY_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "server",
    "connection",
    "location",
    "x-envoy-overloaded",
    "transfer-encoding",
    "upgrade",
];

pub fn compare_replies(m: &Reply, e: &Reply, a: &Addresses) -> Vec<Diff> {
    let mut d = Vec::new();
    let mut diff = |field: &str, mv: String, ev: String| {
        if mv != ev {
            d.push(Diff {
                field: field.into(),
                meshsim: mv,
                envoy: ev,
            });
        }
    };
    diff("status line", m.status_line.clone(), e.status_line.clone());
    diff("error", format!("{:?}", m.error), format!("{:?}", e.error));
    diff(
        "body",
        a.selfless(&m.body, false),
        a.selfless(&e.body, true),
    );
    diff(
        "connection closed",
        m.closed.to_string(),
        e.closed.to_string(),
    );
    for h in PROXY_HEADERS {
        let (mut mv, mut ev) = (
            m.header(h).unwrap_or("-").to_string(),
            e.header(h).unwrap_or("-").to_string(),
        );
        if *h == "content-length" {
            mv = a.selfless_len(&mv, &m.body, false);
            ev = a.selfless_len(&ev, &e.body, true);
        }
        diff(&format!("header {h}"), mv, ev);
    }
    for h in ["date", "x-envoy-upstream-service-time", "x-upstream"] {
        diff(
            &format!("header {h} present"),
            m.header(h).is_some().to_string(),
            e.header(h).is_some().to_string(),
        );
    }
    d
}
