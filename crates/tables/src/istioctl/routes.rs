//! `istioctl proxy-config routes` (configdump/route.go).

use serde_json::Value;

use super::listeners::describe_match;
use super::{describe_management, gosort, tabwrite, Dump};

/// `--name`, `--verbose`.
#[derive(Debug, Clone)]
pub struct RouteFilter {
    pub name: String,
    pub verbose: bool,
}

impl Default for RouteFilter {
    fn default() -> Self {
        Self {
            name: String::new(),
            verbose: true,
        }
    }
}

/// The route configurations istioctl lists, in its order: numeric names
/// ascending, and anything else left where Go's sort leaves it (the
/// comparator says "not less" for a non-numeric name).
pub fn sorted_routes<'a>(d: &Dump<'a>) -> Vec<&'a Value> {
    let mut r = d.routes();
    gosort::sort_slice(&mut r, |a, b| {
        match (
            a["name"].as_str().unwrap_or_default().parse::<i64>(),
            b["name"].as_str().unwrap_or_default().parse::<i64>(),
        ) {
            (Ok(x), Ok(y)) => x < y,
            _ => false,
        }
    });
    r
}

/// `describeRouteDomains`: one domain as is; else the shortest forms
/// without ports, at most two, `+ N more...`.
fn describe_domains(domains: &[&str]) -> String {
    match domains {
        [] => return String::new(),
        [one] => return one.to_string(),
        _ => {}
    }
    let without_port: Vec<&str> = domains
        .iter()
        .copied()
        .filter(|d| !d.contains(':') || (d.matches(':').count() > 2 && d.ends_with(']')))
        .collect();
    let kept = unexpand(&without_port);
    if kept.len() > 2 {
        return format!("{} + {} more...", kept[..2].join(", "), kept.len() - 2);
    }
    kept.join(", ")
}

/// `unexpandDomains`: drop `x.svc.cluster.local` / `x.svc` when `x` is there.
fn unexpand<'a>(domains: &[&'a str]) -> Vec<&'a str> {
    let drop = |h: &str| {
        [".svc.cluster.local", ".svc"].iter().any(|suffix| {
            h.strip_suffix(suffix)
                .is_some_and(|short| domains.contains(&short))
        })
    };
    domains.iter().copied().filter(|h| !drop(h)).collect()
}

fn is_passthrough(r: &Value) -> bool {
    r["route"]["cluster"].as_str() == Some("PassthroughCluster")
}

/// `PrintRouteSummary`.
pub fn route_summary(d: &Dump<'_>, f: &RouteFilter, with_type: bool) -> String {
    let mut s = String::from(if f.verbose {
        "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE\n"
    } else {
        "NAME\tVIRTUAL HOSTS\n"
    });
    for rc in sorted_routes(d) {
        let raw = rc["name"].as_str().unwrap_or_default();
        if !f.name.is_empty() && f.name != raw {
            continue;
        }
        let name = if with_type {
            format!("route/{raw}")
        } else {
            raw.to_string()
        };
        let vhosts: Vec<&Value> = rc["virtual_hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        if !f.verbose {
            s.push_str(&format!("{name}\t{}\n", vhosts.len()));
            continue;
        }
        for vh in vhosts {
            let vname = vh["name"].as_str().unwrap_or_default();
            let domains: Vec<&str> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .collect();
            let domains = describe_domains(&domains);
            let routes: Vec<&Value> = vh["routes"].as_array().into_iter().flatten().collect();
            for r in &routes {
                if !is_passthrough(r) {
                    s.push_str(&format!(
                        "{name}\t{vname}\t{domains}\t{}\t{}\n",
                        describe_match(&r["match"]),
                        describe_management(&r["metadata"])
                    ));
                }
            }
            if routes.is_empty() {
                s.push_str(&format!("{name}\t{vname}\t{domains}\t/*\t404\n"));
            }
        }
    }
    tabwrite(5, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_as_istioctl_shortens_them() {
        assert_eq!(
            describe_domains(&[
                "details.default.svc.cluster.local",
                "details.default.svc.cluster.local:9080",
                "details",
                "details:9080",
                "details.default.svc",
                "details.default.svc:9080",
                "details.default",
                "details.default:9080",
                "10.96.1.4",
                "10.96.1.4:9080",
            ]),
            "details, details.default + 1 more..."
        );
        assert_eq!(describe_domains(&["*"]), "*");
        assert_eq!(
            describe_domains(&["a.example", "a.example:80"]),
            "a.example"
        );
    }
}
