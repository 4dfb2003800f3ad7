//! What the connection manager does to a request's headers before routing
//! (conn_manager_utility.cc `mutateRequestHeaders`): connection-level
//! headers dropped, `x-forwarded-for` appended when the HCM uses the
//! remote address (gateways), `x-forwarded-proto` set, the request judged
//! internal or external — an external request loses Envoy's internal
//! headers, and at the edge gets `x-envoy-external-address` and a fresh
//! `x-request-id`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use meshsim_tables::version::IstioVersion;
use meshsim_tables::HttpConnectionManager;

/// `cleanInternalHeaders`: removed from every request not internal.
const INTERNAL_ONLY: [&str; 14] = [
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Also removed from edge requests.
const EDGE_ONLY: [&str; 3] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

/// The connection the request came on.
pub struct Conn {
    /// The downstream peer.
    pub remote: IpAddr,
    /// The proxy's own address (Envoy's `localAddress()`, appended to XFF
    /// instead of a loopback peer).
    pub local: IpAddr,
    pub tls: bool,
}

/// `Network::Utility::isInternalAddress` before Envoy 1.33: RFC 1918,
/// loopback, IPv6 unique local. Since 1.33 (Istio 1.25) nothing is
/// internal unless `internal_address_config` says so, and istiod sets it
/// only from meshNetworks with ENABLE_HCM_INTERNAL_NETWORKS.
fn is_internal(a: IpAddr, version: IstioVersion) -> bool {
    if version.at_least(1, 25) {
        return false;
    }
    match a {
        IpAddr::V4(v) => v.is_private() || v.is_loopback(),
        IpAddr::V6(v) => v.is_loopback() || (v.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The addresses in `x-forwarded-for`, first to last.
fn xff_entries(h: &HeaderMap) -> Vec<String> {
    h.get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `getLastAddressFromXFF`: the address `skip` entries from the end, and
/// whether XFF held just one.
fn last_from_xff(h: &HeaderMap, skip: usize) -> (Option<IpAddr>, bool) {
    let e = xff_entries(h);
    let single = e.len() == 1;
    let addr = e
        .len()
        .checked_sub(skip + 1)
        .and_then(|i| e[i].parse().ok());
    (addr, single)
}

fn append_xff(h: &mut HeaderMap, a: IpAddr) {
    let v = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev},{a}"),
        _ => a.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert("x-forwarded-for", v);
    }
}

/// Applies the connection manager's header rules; whether the request is
/// an edge request (then its `x-request-id` is replaced).
pub fn mutate(
    h: &mut HeaderMap,
    hcm: &HttpConnectionManager,
    conn: &Conn,
    version: IstioVersion,
) -> bool {
    // The HTTP/1 codec drops an h2c upgrade (codec_impl.cc); websocket is
    // the only upgrade istiod allows, and it is forwarded.
    let upgrade = h
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if upgrade.as_deref() == Some("h2c") {
        h.remove("http2-settings");
    }
    if upgrade.as_deref() != Some("websocket") {
        h.remove(http::header::CONNECTION);
        h.remove(http::header::UPGRADE);
    }
    for name in [
        "x-envoy-internal",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
    ] {
        h.remove(name);
    }
    let scheme = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    let hops = hcm.xff_num_trusted_hops as usize;
    let (final_remote, allow_trusted) = if hcm.use_remote_address {
        let allow = !h.contains_key("x-forwarded-for");
        let from_xff = if hops > 0 {
            last_from_xff(h, hops - 1).0
        } else {
            None
        };
        let remote = from_xff.unwrap_or(conn.remote);
        append_xff(
            h,
            if conn.remote.is_loopback() {
                conn.local
            } else {
                conn.remote
            },
        );
        if hops == 0 || !h.contains_key("x-forwarded-proto") {
            h.insert("x-forwarded-proto", scheme.clone());
        }
        (Some(remote), allow)
    } else {
        let (a, single) = last_from_xff(h, hops);
        (a, single)
    };
    if !h.contains_key("x-forwarded-proto") {
        h.insert("x-forwarded-proto", scheme);
    }
    let internal = allow_trusted && final_remote.is_some_and(|a| is_internal(a, version));
    let edge = !internal && hcm.use_remote_address;
    if internal {
        h.insert("x-envoy-internal", HeaderValue::from_static("true"));
    } else {
        for name in INTERNAL_ONLY {
            h.remove(name);
        }
        if edge {
            for name in EDGE_ONLY {
                h.remove(name);
            }
        }
    }
    if edge {
        if let Some(Ok(v)) = final_remote.map(|a| HeaderValue::from_str(&a.to_string())) {
            h.insert("x-envoy-external-address", v);
        }
    }
    edge
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hcm(use_remote_address: bool, hops: u32) -> HttpConnectionManager {
        HttpConnectionManager {
            type_url: meshsim_tables::HCM_TYPE,
            stat_prefix: String::new(),
            rds: None,
            route_config: None,
            http_filters: vec![],
            http_protocol_options: Default::default(),
            use_remote_address,
            xff_num_trusted_hops: hops,
            normalize_path: true,
            merge_slashes: false,
            path_with_escaped_slashes_action: Default::default(),
            server_name: None,
            forward_client_cert_details: None,
            set_current_client_cert_details: None,
        }
    }

    fn conn(remote: &str) -> Conn {
        Conn {
            remote: remote.parse().expect("ip"),
            local: "10.244.0.9".parse().expect("ip"),
            tls: false,
        }
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
        h.get(k).and_then(|v| v.to_str().ok())
    }

    /// Observed from Envoy 1.36 at an Istio gateway: XFF appended (the
    /// proxy's own address for a loopback peer), the peer as external
    /// address, Envoy's internal headers and the h2c upgrade dropped.
    #[test]
    fn gateway_edge_request() {
        let v = IstioVersion::DEFAULT;
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("http2-settings", HeaderValue::from_static("AAMA"));
        assert!(mutate(&mut h, &hcm(true, 0), &conn("127.0.0.1"), v));
        assert_eq!(get(&h, "x-forwarded-for"), Some("203.0.113.9,10.244.0.9"));
        assert_eq!(get(&h, "x-envoy-external-address"), Some("127.0.0.1"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        for gone in ["x-envoy-retry-on", "upgrade", "http2-settings"] {
            assert_eq!(get(&h, gone), None, "{gone}");
        }
        let mut h = HeaderMap::new();
        assert!(mutate(&mut h, &hcm(true, 0), &conn("198.51.100.7"), v));
        assert_eq!(get(&h, "x-forwarded-for"), Some("198.51.100.7"));
    }

    /// With trusted hops the client address comes from XFF.
    #[test]
    fn trusted_hops_pick_the_client_from_xff() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 10.0.0.5"),
        );
        mutate(
            &mut h,
            &hcm(true, 1),
            &conn("10.0.0.6"),
            IstioVersion::DEFAULT,
        );
        assert_eq!(get(&h, "x-envoy-external-address"), Some("10.0.0.5"));
        assert_eq!(
            get(&h, "x-forwarded-for"),
            Some("198.51.100.1, 10.0.0.5,10.0.0.6")
        );
    }

    /// Before Envoy 1.33 a private peer made an internal request.
    #[test]
    fn internal_requests_before_istio_1_25() {
        let old = IstioVersion::parse("1.24").expect("version");
        let mut h = HeaderMap::new();
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        assert!(!mutate(&mut h, &hcm(true, 0), &conn("10.1.2.3"), old));
        assert_eq!(get(&h, "x-envoy-internal"), Some("true"));
        assert_eq!(get(&h, "x-envoy-retry-on"), Some("5xx"));
        assert_eq!(get(&h, "x-envoy-external-address"), None);
    }

    /// A sidecar (no remote address): XFF untouched, proto set if absent.
    #[test]
    fn sidecar_requests() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(!mutate(
            &mut h,
            &hcm(false, 0),
            &conn("10.1.2.3"),
            IstioVersion::DEFAULT
        ));
        assert_eq!(get(&h, "x-forwarded-for"), None);
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&h, "x-envoy-external-address"), None);
    }
}
