//! Envoy's filter-chain selection (filter_chain_manager_impl.cc): criteria
//! are applied level by level — destination port, destination IP, server
//! name, transport protocol, application protocols — and at each level only
//! the most specific bucket that matches is kept. There is no falling back
//! to a less specific bucket once a more specific one matched; if a later
//! level then finds nothing, the listener's default chain (if any) is used,
//! otherwise the connection is closed (`NR filter_chain_not_found`).

use std::net::IpAddr;

use crate::listener::{FilterChain, Listener};
use crate::types::TransportProtocol;

/// What the listener knows about a connection when it picks a chain.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo<'a> {
    pub destination_port: u16,
    pub destination_ip: Option<IpAddr>,
    /// SNI from the ClientHello, if TLS and sent.
    pub server_name: Option<&'a str>,
    /// `Tls` or `RawBuffer`.
    pub transport_protocol: TransportProtocol,
    /// ALPN offered by a TLS client, or `http/1.1`/`h2c` sniffed from plaintext.
    pub application_protocols: &'a [String],
}

/// Index of the chosen chain in `listener.filter_chains`, or `None` when the
/// default chain (or nothing) applies.
pub fn select_filter_chain(listener: &Listener, conn: &ConnectionInfo<'_>) -> Option<usize> {
    let all: Vec<usize> = (0..listener.filter_chains.len()).collect();
    let chains = &listener.filter_chains;
    let by_port = narrow(&all, chains, |c| {
        match c.filter_chain_match.destination_port {
            Some(p) if p == conn.destination_port => Some(1),
            Some(_) => None,
            None => Some(0),
        }
    });
    let by_ip = narrow(&by_port, chains, |c| {
        let ranges = &c.filter_chain_match.prefix_ranges;
        if ranges.is_empty() {
            return Some(0);
        }
        let ip = conn.destination_ip?;
        ranges
            .iter()
            .filter(|r| cidr_contains(&r.address_prefix, r.prefix_len, ip))
            .map(|r| 1 + u32::from(r.prefix_len))
            .max()
    });
    let by_sni = narrow(&by_ip, chains, |c| {
        server_name_rank(&c.filter_chain_match.server_names, conn.server_name)
    });
    let by_transport = narrow(&by_sni, chains, |c| {
        let t = c.filter_chain_match.transport_protocol;
        if t.is_any() {
            Some(0)
        } else if t == conn.transport_protocol {
            Some(1)
        } else {
            None
        }
    });
    let by_alpn = narrow(&by_transport, chains, |c| {
        let a = &c.filter_chain_match.application_protocols;
        if a.is_empty() {
            Some(0)
        } else if a.iter().any(|p| conn.application_protocols.contains(p)) {
            Some(1)
        } else {
            None
        }
    });
    by_alpn.first().copied()
}

/// Like [`select_filter_chain`], but falls back to the default chain.
pub fn select_chain<'l>(
    listener: &'l Listener,
    conn: &ConnectionInfo<'_>,
) -> Option<&'l FilterChain> {
    match select_filter_chain(listener, conn) {
        Some(i) => listener.filter_chains.get(i),
        None => listener.default_filter_chain.as_ref(),
    }
}

/// Keeps the candidates with the highest rank; `None` ranks exclude.
fn narrow(
    cands: &[usize],
    chains: &[FilterChain],
    rank: impl Fn(&FilterChain) -> Option<u32>,
) -> Vec<usize> {
    let ranked: Vec<(usize, u32)> = cands
        .iter()
        .filter_map(|&i| rank(&chains[i]).map(|r| (i, r)))
        .collect();
    let Some(best) = ranked.iter().map(|(_, r)| *r).max() else {
        return Vec::new();
    };
    ranked
        .into_iter()
        .filter(|(_, r)| *r == best)
        .map(|(i, _)| i)
        .collect()
}

/// Exact name > longest matching `*.suffix` > chains without names.
fn server_name_rank(names: &[String], sni: Option<&str>) -> Option<u32> {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?.to_ascii_lowercase();
    names
        .iter()
        .filter_map(|n| {
            let n = n.to_ascii_lowercase();
            if n == sni {
                Some(u32::MAX)
            } else if let Some(suffix) = n.strip_prefix('*') {
                (sni.len() > suffix.len() && sni.ends_with(suffix))
                    .then_some(suffix.len() as u32 + 1)
            } else {
                None
            }
        })
        .max()
}

/// Whether `ip` is inside `prefix/len`.
pub fn cidr_contains(prefix: &str, len: u8, ip: IpAddr) -> bool {
    let Ok(net) = prefix.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::*;

    fn chain(name: &str, m: FilterChainMatch) -> FilterChain {
        FilterChain {
            name: name.into(),
            filter_chain_match: m,
            transport_socket: None,
            filters: vec![],
        }
    }

    fn listener(chains: Vec<FilterChain>) -> Listener {
        Listener {
            name: "l".into(),
            address: Address::new("0.0.0.0", 15006),
            traffic_direction: TrafficDirection::Inbound,
            use_original_dst: false,
            bind_to_port: true,
            listener_filters: vec![],
            listener_filters_timeout: Default::default(),
            filter_chains: chains,
            default_filter_chain: None,
        }
    }

    fn pick<'a>(
        l: &'a Listener,
        port: u16,
        sni: Option<&str>,
        transport: &str,
        alpn: &[String],
    ) -> Option<&'a str> {
        let c = ConnectionInfo {
            destination_port: port,
            destination_ip: None,
            server_name: sni,
            transport_protocol: TransportProtocol::parse(transport).unwrap_or_default(),
            application_protocols: alpn,
        };
        select_chain(l, &c).map(|c| c.name.as_str())
    }

    /// STRICT inbound: the port bucket wins exclusively, so plaintext to a
    /// STRICT port finds no chain even though a port-less passthrough exists.
    #[test]
    fn strict_port_bucket_does_not_fall_back() {
        let l = listener(vec![
            chain(
                "9080-tls",
                FilterChainMatch {
                    destination_port: Some(9080),
                    transport_protocol: TransportProtocol::Tls,
                    ..Default::default()
                },
            ),
            chain(
                "passthrough-plain",
                FilterChainMatch {
                    transport_protocol: TransportProtocol::RawBuffer,
                    ..Default::default()
                },
            ),
        ]);
        assert_eq!(pick(&l, 9080, None, "tls", &[]), Some("9080-tls"));
        assert_eq!(pick(&l, 9080, None, "raw_buffer", &[]), None);
        assert_eq!(
            pick(&l, 8000, None, "raw_buffer", &[]),
            Some("passthrough-plain")
        );
    }

    #[test]
    fn server_names_exact_then_longest_wildcard_then_none() {
        let l = listener(vec![
            chain("none", FilterChainMatch::default()),
            chain(
                "wild",
                FilterChainMatch {
                    server_names: vec!["*.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "wild2",
                FilterChainMatch {
                    server_names: vec!["*.b.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "exact",
                FilterChainMatch {
                    server_names: vec!["a.example.com".into()],
                    ..Default::default()
                },
            ),
        ]);
        assert_eq!(
            pick(&l, 443, Some("a.example.com"), "tls", &[]),
            Some("exact")
        );
        assert_eq!(
            pick(&l, 443, Some("x.b.example.com"), "tls", &[]),
            Some("wild2")
        );
        assert_eq!(
            pick(&l, 443, Some("c.example.com"), "tls", &[]),
            Some("wild")
        );
        assert_eq!(pick(&l, 443, Some("other.org"), "tls", &[]), Some("none"));
        assert_eq!(pick(&l, 443, None, "tls", &[]), Some("none"));
    }

    #[test]
    fn sni_required_and_absent_closes() {
        let l = listener(vec![chain(
            "wild",
            FilterChainMatch {
                server_names: vec!["*.example.com".into()],
                ..Default::default()
            },
        )]);
        assert_eq!(pick(&l, 443, None, "tls", &[]), None);
    }

    #[test]
    fn alpn_and_transport() {
        let http = vec!["http/1.1".to_string()];
        let l = listener(vec![
            chain(
                "http",
                FilterChainMatch {
                    transport_protocol: TransportProtocol::RawBuffer,
                    application_protocols: vec!["http/1.1".into(), "h2c".into()],
                    ..Default::default()
                },
            ),
            chain("tcp", FilterChainMatch::default()),
        ]);
        assert_eq!(pick(&l, 80, None, "raw_buffer", &http), Some("http"));
        // The raw_buffer bucket is exclusive: plain non-HTTP finds nothing
        // there and does not fall back to the chain without requirements;
        // Istio therefore puts its fallthrough in `default_filter_chain`.
        assert_eq!(pick(&l, 80, None, "raw_buffer", &[]), None);
        assert_eq!(pick(&l, 80, None, "tls", &http), Some("tcp"));
        let mut with_default = l.clone();
        with_default.default_filter_chain = Some(chain("default", FilterChainMatch::default()));
        assert_eq!(
            pick(&with_default, 80, None, "raw_buffer", &[]),
            Some("default")
        );
    }

    #[test]
    fn cidr() {
        let ip: IpAddr = "10.1.1.171".parse().expect("ip");
        assert!(cidr_contains("10.1.1.171", 32, ip));
        assert!(cidr_contains("10.0.0.0", 8, ip));
        assert!(!cidr_contains("10.1.1.170", 32, ip));
        assert!(cidr_contains("0.0.0.0", 0, ip));
    }
}
