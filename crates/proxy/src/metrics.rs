//! Istio's standard request metric, `istio_requests_total`, as the
//! `istio.stats` filter reports it (one counter per label set; the
//! `reporter` is `source` on outbound and gateway traffic, `destination`
//! on inbound). Without Istio's metadata exchange the peer's workload
//! labels are `unknown`, as Istio reports them when the exchange fails;
//! what the proxy knows itself (its workload, the destination service,
//! the caller's mTLS identity) is filled in. The label sets are bounded:
//! past [`MAX_SERIES`] new ones are counted in
//! `meshsim_istio_requests_dropped_series`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use meshsim_tables::ProxyInfo;

use crate::accesslog::LogEntry;

/// Distinct label sets kept per proxy.
pub const MAX_SERIES: usize = 10_000;

#[derive(Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<String, u64>>,
    dropped: std::sync::atomic::AtomicU64,
}

/// What the proxy knows of a request when it is logged.
pub struct Seen<'a> {
    pub inbound: bool,
    pub entry: &'a LogEntry,
    /// The caller's SPIFFE identity (mTLS), inbound.
    pub peer: Option<&'a str>,
}

/// The workload of a pod named `NAME-N` (meshsim's replica names).
fn workload(pod: &str) -> &str {
    match pod.rsplit_once('-') {
        Some((w, n)) if n.chars().all(|c| c.is_ascii_digit()) && !w.is_empty() => w,
        _ => pod,
    }
}

/// `ns/N` of a SPIFFE identity.
fn spiffe_ns(id: &str) -> Option<&str> {
    id.split("/ns/").nth(1)?.split('/').next()
}

/// `name.ns.svc...` → (name, ns); another host is its own name.
fn service_parts(host: &str) -> (String, String) {
    let mut it = host.split('.');
    match (it.next(), it.next(), it.next()) {
        (Some(n), Some(ns), Some("svc")) => (n.to_string(), ns.to_string()),
        _ => (host.to_string(), "unknown".to_string()),
    }
}

impl RequestMetrics {
    /// Counts one request.
    pub fn record(&self, me: &ProxyInfo, s: &Seen<'_>) {
        let e = s.entry;
        let unknown = "unknown".to_string();
        let label = |k: &str| me.labels.get(k).cloned().unwrap_or_else(|| unknown.clone());
        let (me_workload, me_ns, me_principal) = (
            workload(&me.pod).to_string(),
            me.namespace.clone(),
            me.identity.clone(),
        );
        let authority = e.req_headers.get(":authority").map(|a| {
            a.rsplit_once(':')
                .map_or(a.as_str(), |(h, _)| h)
                .to_string()
        });
        let dest_host = match &e.upstream_cluster {
            Some(c) if c.starts_with("outbound|") => c.rsplit('|').next().map(str::to_string),
            _ => None,
        }
        .or(authority)
        .unwrap_or_else(|| unknown.clone());
        let (dest_name, dest_ns) = service_parts(&dest_host);
        let flags = if e.flags.is_empty() {
            "-".to_string()
        } else {
            e.flags
                .iter()
                .map(|f| f.code())
                .collect::<Vec<_>>()
                .join(",")
        };
        let protocol = if e.protocol.as_deref() == Some("HTTP/2")
            && e.req_headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("application/grpc"))
        {
            "grpc"
        } else {
            "http"
        };
        let mut l: Vec<(&str, String)> = Vec::new();
        if s.inbound {
            let peer = s.peer.map(str::to_string);
            l.extend([
                ("reporter", "destination".to_string()),
                ("source_workload", unknown.clone()),
                (
                    "source_workload_namespace",
                    peer.as_deref()
                        .and_then(spiffe_ns)
                        .unwrap_or("unknown")
                        .to_string(),
                ),
                (
                    "source_principal",
                    peer.clone().unwrap_or_else(|| unknown.clone()),
                ),
                ("source_app", unknown.clone()),
                ("source_version", unknown.clone()),
                ("destination_workload", me_workload),
                ("destination_workload_namespace", me_ns),
                ("destination_principal", me_principal),
                ("destination_app", label("app")),
                ("destination_version", label("version")),
            ]);
            l.push((
                "connection_security_policy",
                if peer.is_some() { "mutual_tls" } else { "none" }.to_string(),
            ));
        } else {
            l.extend([
                ("reporter", "source".to_string()),
                ("source_workload", me_workload),
                ("source_workload_namespace", me_ns),
                ("source_principal", me_principal),
                ("source_app", label("app")),
                ("source_version", label("version")),
                ("destination_workload", unknown.clone()),
                ("destination_workload_namespace", unknown.clone()),
                ("destination_principal", unknown.clone()),
                ("destination_app", unknown.clone()),
                ("destination_version", unknown.clone()),
                ("connection_security_policy", unknown.clone()),
            ]);
        }
        l.extend([
            ("destination_service", dest_host),
            ("destination_service_name", dest_name),
            ("destination_service_namespace", dest_ns),
            ("destination_cluster", "Kubernetes".to_string()),
            ("source_cluster", "Kubernetes".to_string()),
            ("request_protocol", protocol.to_string()),
            ("response_code", e.response_code.to_string()),
            ("grpc_response_status", String::new()),
            ("response_flags", flags),
        ]);
        l.sort_by(|a, b| a.0.cmp(b.0));
        let mut key = String::new();
        for (i, (k, v)) in l.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(key, "{sep}{k}=\"{v}\"");
        }
        if let Ok(mut m) = self.series.lock() {
            let n = m.len();
            match m.get_mut(&key) {
                Some(c) => *c += 1,
                None if n < MAX_SERIES => {
                    m.insert(key, 1);
                }
                None => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// The Prometheus text of the metric.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# TYPE istio_requests_total counter");
        if let Ok(m) = self.series.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "istio_requests_total{{{k}}} {v}");
            }
        }
        let dropped = self.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(out, "# TYPE meshsim_istio_requests_dropped_series counter");
            let _ = writeln!(out, "meshsim_istio_requests_dropped_series {dropped}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_pods_identities_and_hosts() {
        assert_eq!(workload("reviews-v2-0"), "reviews-v2");
        assert_eq!(workload("web"), "web");
        assert_eq!(
            spiffe_ns("spiffe://cluster.local/ns/shop/sa/till"),
            Some("shop")
        );
        assert_eq!(
            service_parts("ratings.books.svc.cluster.local"),
            ("ratings".to_string(), "books".to_string())
        );
    }
}
