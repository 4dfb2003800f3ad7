//! Virtual-host selection by `Host` / `:authority`, as Envoy's route
//! configuration does it (config_impl.cc `findVirtualHost`): exact domains
//! first, then suffix wildcards (`*.foo`, longest first), then prefix
//! wildcards (`foo*`, longest first), then `*`. Matching is case-insensitive;
//! with `ignore_port_in_host_matching` a `:port` suffix is dropped first.

use crate::route::RouteConfiguration;

/// Index of the virtual host that serves `host`, if any.
pub fn find_virtual_host(rc: &RouteConfiguration, host: &str) -> Option<usize> {
    let mut host = host.to_ascii_lowercase();
    if rc.ignore_port_in_host_matching {
        host = strip_port(&host).to_string();
    }
    let mut best_suffix: Option<(usize, usize)> = None;
    let mut best_prefix: Option<(usize, usize)> = None;
    let mut default = None;
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        for d in &vh.domains {
            let d = d.to_ascii_lowercase();
            if d == "*" {
                default.get_or_insert(i);
            } else if let Some(suffix) = d.strip_prefix('*') {
                if host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && best_suffix.is_none_or(|(len, _)| suffix.len() > len)
                {
                    best_suffix = Some((suffix.len(), i));
                }
            } else if let Some(prefix) = d.strip_suffix('*') {
                if host.len() > prefix.len()
                    && host.starts_with(prefix)
                    && best_prefix.is_none_or(|(len, _)| prefix.len() > len)
                {
                    best_prefix = Some((prefix.len(), i));
                }
            } else if d == host {
                return Some(i);
            }
        }
    }
    best_suffix.or(best_prefix).map(|(_, i)| i).or(default)
}

/// `host:port` → `host`; IPv6 literals in brackets keep their brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::*;

    fn rc(vhosts: &[(&str, &[&str])], ignore_port: bool) -> RouteConfiguration {
        RouteConfiguration {
            name: "80".into(),
            virtual_hosts: vhosts
                .iter()
                .map(|(n, d)| VirtualHost {
                    name: n.to_string(),
                    domains: d.iter().map(|s| s.to_string()).collect(),
                    routes: vec![],
                    include_request_attempt_count: false,
                    require_tls: TlsRequirement::None,
                })
                .collect(),
            validate_clusters: false,
            ignore_port_in_host_matching: ignore_port,
        }
    }

    #[test]
    fn exact_wins_over_wildcards_and_default() {
        let r = rc(
            &[
                ("all", &["*"]),
                ("wild", &["*.nginx.default"]),
                ("exact", &["nginx.default"]),
            ],
            true,
        );
        let name = |h| find_virtual_host(&r, h).map(|i| r.virtual_hosts[i].name.clone());
        assert_eq!(name("nginx.default").as_deref(), Some("exact"));
        assert_eq!(name("NGINX.default:80").as_deref(), Some("exact"));
        assert_eq!(name("web-0.nginx.default").as_deref(), Some("wild"));
        assert_eq!(name("10.1.1.171").as_deref(), Some("all"));
    }

    #[test]
    fn port_matters_without_ignore() {
        let r = rc(&[("gw", &["myapp.com", "myapp.com:*"])], false);
        assert!(find_virtual_host(&r, "myapp.com").is_some());
        // "myapp.com:*" is a prefix wildcard "myapp.com:" + anything.
        assert!(find_virtual_host(&r, "myapp.com:8080").is_some());
        assert!(find_virtual_host(&r, "other.com").is_none());
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("a:80"), "a");
        assert_eq!(strip_port("a"), "a");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
