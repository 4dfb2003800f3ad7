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
fn service_parts(host: &str) -> (&str, &str) {
    let mut it = host.split('.');
    match (it.next(), it.next(), it.next()) {
        (Some(n), Some(ns), Some("svc")) => (n, ns),
        _ => (host, "unknown"),
    }
}

impl RequestMetrics {
    /// Counts one request. The series key is written in one pass, labels
    /// in name order (as Prometheus clients sort them), without a string
    /// per label.
    pub fn record(&self, me: &ProxyInfo, s: &Seen<'_>) {
        const UNKNOWN: &str = "unknown";
        let e = s.entry;
        let label = |k: &str| me.labels.get(k).map_or(UNKNOWN, String::as_str);
        let authority = e
            .req_headers
            .get(":authority")
            .map(|a| a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h));
        let dest_host = match e.upstream_cluster.as_deref() {
            Some(c) if c.starts_with("outbound|") => c.rsplit('|').next(),
            _ => None,
        }
        .or(authority)
        .unwrap_or(UNKNOWN);
        let (dest_name, dest_ns) = service_parts(dest_host);
        let grpc = e.protocol.as_deref() == Some("HTTP/2")
            && e.req_headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("application/grpc"));
        let (inbound, peer) = (s.inbound, s.peer);
        // This proxy's workload on its side of the request; the other side
        // is unknown without metadata exchange (inbound: the caller's mTLS
        // identity is known).
        let me_workload = workload(&me.pod);
        let mut key = String::with_capacity(640);
        let mut put = |k: &str, v: &str| {
            if !key.is_empty() {
                key.push(',');
            }
            key.push_str(k);
            key.push_str("=\"");
            for c in v.chars() {
                if c == '\\' || c == '"' {
                    key.push('\\');
                }
                key.push(c);
            }
            key.push('"');
        };
        put(
            "connection_security_policy",
            match (inbound, peer) {
                (true, Some(_)) => "mutual_tls",
                (true, None) => "none",
                (false, _) => UNKNOWN,
            },
        );
        put(
            "destination_app",
            if inbound { label("app") } else { UNKNOWN },
        );
        put("destination_cluster", "Kubernetes");
        put(
            "destination_principal",
            if inbound { &me.identity } else { UNKNOWN },
        );
        put("destination_service", dest_host);
        put("destination_service_name", dest_name);
        put("destination_service_namespace", dest_ns);
        put(
            "destination_version",
            if inbound { label("version") } else { UNKNOWN },
        );
        put(
            "destination_workload",
            if inbound { me_workload } else { UNKNOWN },
        );
        put(
            "destination_workload_namespace",
            if inbound { &me.namespace } else { UNKNOWN },
        );
        put("grpc_response_status", "");
        put("reporter", if inbound { "destination" } else { "source" });
        put("request_protocol", if grpc { "grpc" } else { "http" });
        put("response_code", &e.response_code.to_string());
        if e.flags.is_empty() {
            put("response_flags", "-");
        } else {
            let flags: Vec<&str> = e.flags.iter().map(|f| f.code()).collect();
            put("response_flags", &flags.join(","));
        }
        put("source_app", if inbound { UNKNOWN } else { label("app") });
        put("source_cluster", "Kubernetes");
        put(
            "source_principal",
            if inbound {
                peer.unwrap_or(UNKNOWN)
            } else {
                &me.identity
            },
        );
        put(
            "source_version",
            if inbound { UNKNOWN } else { label("version") },
        );
        put(
            "source_workload",
            if inbound { UNKNOWN } else { me_workload },
        );
        put(
            "source_workload_namespace",
            if inbound {
                peer.and_then(spiffe_ns).unwrap_or(UNKNOWN)
            } else {
                &me.namespace
            },
        );
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

    fn till() -> ProxyInfo {
        ProxyInfo {
            id: "till-v4-0.store".into(),
            pod: "till-v4-0".into(),
            namespace: "store".into(),
            kind: meshsim_tables::ProxyKind::Sidecar,
            ip: std::net::IpAddr::from([10, 9, 8, 7]),
            istio_version: meshsim_tables::version::IstioVersion::DEFAULT,
            identity: "spiffe://cluster.local/ns/store/sa/till".into(),
            labels: [("app", "till"), ("version", "v4")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn series_per_side_with_what_each_proxy_knows() {
        let m = RequestMetrics::default();
        let mut out = LogEntry {
            response_code: 503,
            flags: vec![crate::accesslog::Flag::UpstreamOverflow],
            upstream_cluster: Some("outbound|8181||stock.warehouse.svc.cluster.local".into()),
            protocol: Some("HTTP/1.1".into()),
            ..Default::default()
        };
        out.req_headers
            .insert(":authority".into(), "stock.warehouse:8181".into());
        m.record(
            &till(),
            &Seen {
                inbound: false,
                entry: &out,
                peer: None,
            },
        );
        m.record(
            &till(),
            &Seen {
                inbound: false,
                entry: &out,
                peer: None,
            },
        );
        let mut inb = LogEntry {
            response_code: 200,
            upstream_cluster: Some("inbound|7070||".into()),
            protocol: Some("HTTP/2".into()),
            ..Default::default()
        };
        inb.req_headers
            .insert(":authority".into(), "till.store:7070".into());
        let caller = "spiffe://cluster.local/ns/front/sa/edge";
        m.record(
            &till(),
            &Seen {
                inbound: true,
                entry: &inb,
                peer: Some(caller),
            },
        );
        let mut text = String::new();
        m.render(&mut text);
        assert_eq!(
            text,
            "# TYPE istio_requests_total counter\n\
istio_requests_total{connection_security_policy=\"mutual_tls\",destination_app=\"till\",destination_cluster=\"Kubernetes\",destination_principal=\"spiffe://cluster.local/ns/store/sa/till\",destination_service=\"till.store\",destination_service_name=\"till.store\",destination_service_namespace=\"unknown\",destination_version=\"v4\",destination_workload=\"till-v4\",destination_workload_namespace=\"store\",grpc_response_status=\"\",reporter=\"destination\",request_protocol=\"http\",response_code=\"200\",response_flags=\"-\",source_app=\"unknown\",source_cluster=\"Kubernetes\",source_principal=\"spiffe://cluster.local/ns/front/sa/edge\",source_version=\"unknown\",source_workload=\"unknown\",source_workload_namespace=\"front\"} 1\n\
istio_requests_total{connection_security_policy=\"unknown\",destination_app=\"unknown\",destination_cluster=\"Kubernetes\",destination_principal=\"unknown\",destination_service=\"stock.warehouse.svc.cluster.local\",destination_service_name=\"stock\",destination_service_namespace=\"warehouse\",destination_version=\"unknown\",destination_workload=\"unknown\",destination_workload_namespace=\"unknown\",grpc_response_status=\"\",reporter=\"source\",request_protocol=\"http\",response_code=\"503\",response_flags=\"UO\",source_app=\"till\",source_cluster=\"Kubernetes\",source_principal=\"spiffe://cluster.local/ns/store/sa/till\",source_version=\"v4\",source_workload=\"till-v4\",source_workload_namespace=\"store\"} 2\n"
        );
    }

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
            ("ratings", "books")
        );
        assert_eq!(
            service_parts("api.example.org"),
            ("api.example.org", "unknown")
        );
    }
}
