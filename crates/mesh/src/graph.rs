//! Your own service graph on the built-in app: which upstreams a workload
//! calls for which path, with the client's timeout and retries, so a
//! user's call chain can be reproduced. On the pod template:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     meshsim.io/calls: |
//!       /checkout -> http://payments:8080/charge, http://stock.shop:9090/reserve timeout=2s retries=1
//!       / -> http://catalog:8080/items
//!     meshsim.io/app-delay: 150ms     # answer every request this much later
//! ```
//!
//! A request whose path starts with a rule's prefix (the first rule that
//! matches) makes the app call each URL in order, `GET`, from the pod
//! through its sidecar, forwarding the tracing headers and `end-user` as
//! Bookinfo does; each call is tried `1 + retries` times while it fails
//! or answers 5xx, each try within `timeout` (default 10 s). The app then
//! answers 200 with one line per call (`GET URL -> 200 (12 ms)`), or 503
//! when any call ended without a 2xx.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::bookinfo::Outbound;

/// `meshsim.io/calls`.
pub const CALLS_ANNOTATION: &str = "meshsim.io/calls";
/// `meshsim.io/app-delay`.
pub const DELAY_ANNOTATION: &str = "meshsim.io/app-delay";

/// One `PREFIX -> URL, ... [timeout=D] [retries=N]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub calls: Vec<Call>,
    pub timeout: Duration,
    pub retries: u32,
}

/// `http://HOST:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Call {
    fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    meshsim_model::common::Duration::parse(s)
        .map(|d| Duration::from_millis(d.millis))
        .map_err(|e| e.to_string())
}

fn parse_call(url: &str) -> Result<Call, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are called"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("{url:?}: bad port"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(Call {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// The rules of a `meshsim.io/calls` value; each bad line is an error.
pub fn parse(text: &str) -> (Vec<Rule>, Vec<String>) {
    let (mut rules, mut errors) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rule = (|| {
            let (prefix, rest) = line
                .split_once("->")
                .ok_or("expected `PREFIX -> URL, ...`")?;
            let prefix = prefix.trim();
            if !prefix.starts_with('/') {
                return Err(format!("prefix {prefix:?} must start with /"));
            }
            let mut rule = Rule {
                prefix: prefix.to_string(),
                calls: Vec::new(),
                timeout: Duration::from_secs(10),
                retries: 0,
            };
            for word in rest.split(|c: char| c == ',' || c.is_whitespace()) {
                let word = word.trim();
                if word.is_empty() {
                    continue;
                }
                if let Some(t) = word.strip_prefix("timeout=") {
                    rule.timeout = duration(t)?;
                } else if let Some(r) = word.strip_prefix("retries=") {
                    rule.retries = r.parse().map_err(|_| format!("retries={r}: not a count"))?;
                } else {
                    rule.calls.push(parse_call(word)?);
                }
            }
            if rule.calls.is_empty() {
                return Err("no URL to call".to_string());
            }
            Ok(rule)
        })();
        match rule {
            Ok(r) => rules.push(r),
            Err(e) => errors.push(format!("{CALLS_ANNOTATION} line {}: {e}", n + 1)),
        }
    }
    (rules, errors)
}

/// The app's answer for `path` when a rule covers it: status and body.
pub async fn serve(
    rules: &[Rule],
    out: &Outbound,
    path: &str,
    headers: &HeaderMap,
) -> Option<(u16, String)> {
    let rule = rules.iter().find(|r| path.starts_with(&r.prefix))?;
    let mut body = String::new();
    let mut ok = true;
    for c in &rule.calls {
        let t0 = Instant::now();
        let mut last = None;
        for _ in 0..=rule.retries {
            last =
                crate::bookinfo::call(out, &c.host, c.port, &c.path, headers, rule.timeout).await;
            if matches!(last, Some((s, _)) if s < 500) {
                break;
            }
        }
        let ms = t0.elapsed().as_millis();
        match last {
            Some((s, _)) => {
                ok &= (200..300).contains(&s);
                let _ = writeln!(body, "GET {} -> {s} ({ms} ms)", c.url());
            }
            None => {
                ok = false;
                let _ = writeln!(
                    body,
                    "GET {} -> no answer within {:?} ({ms} ms)",
                    c.url(),
                    rule.timeout
                );
            }
        }
    }
    Some((if ok { 200 } else { 503 }, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_bad_lines_are_named() {
        let (rules, errors) = parse(
            "/checkout -> http://payments:8080/charge, http://stock.shop:9090/reserve timeout=2s retries=1\n# note\n/ -> http://catalog/items\nnonsense\n/x -> ftp://a\n",
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].calls[1].host, "stock.shop");
        assert_eq!(rules[0].timeout, Duration::from_secs(2));
        assert_eq!(rules[0].retries, 1);
        assert_eq!(rules[1].calls[0].port, 80);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("meshsim.io/calls line 4:"),
            "{errors:?}"
        );
    }
}
