//! Checking expectations: each produces a verdict with what was expected
//! and what was observed, so a failing scenario reads as a diff.

use meshsim_mesh::curl::CurlResponse;
use meshsim_mesh::logs::LogLine;

use crate::format::LogExpect;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub what: String,
    pub ok: bool,
    pub expected: String,
    pub observed: String,
}

impl Verdict {
    pub fn new(
        what: impl Into<String>,
        ok: bool,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> Self {
        Self {
            what: what.into(),
            ok,
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    pub fn render(&self) -> String {
        if self.ok {
            format!("  PASS {}: {}", self.what, self.observed)
        } else {
            format!(
                "  FAIL {}: expected {}, observed {}",
                self.what, self.expected, self.observed
            )
        }
    }
}

/// `>0`, `>=3`, `<5`, `=30`, `30`.
pub fn count_matches(rule: &str, n: u64) -> bool {
    let rule = rule.trim();
    let (op, num) = if let Some(r) = rule.strip_prefix(">=") {
        (">=", r)
    } else if let Some(r) = rule.strip_prefix("<=") {
        ("<=", r)
    } else if let Some(r) = rule.strip_prefix('>') {
        (">", r)
    } else if let Some(r) = rule.strip_prefix('<') {
        ("<", r)
    } else if let Some(r) = rule.strip_prefix('=') {
        ("=", r)
    } else {
        ("=", rule)
    };
    let Ok(v) = num.trim().parse::<u64>() else {
        return false;
    };
    match op {
        ">=" => n >= v,
        "<=" => n <= v,
        ">" => n > v,
        "<" => n < v,
        _ => n == v,
    }
}

pub fn body(r: &CurlResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// One-line summary of a response for the transcript.
pub fn describe(r: &CurlResponse) -> String {
    match (&r.error, r.status) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => {
            let b = body(r);
            let first = b
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(100)
                .collect::<String>();
            format!(
                "HTTP/{} {s}  {first}",
                r.http_version.as_deref().unwrap_or("1.1")
            )
        }
        (None, None) => "no response".into(),
    }
}

fn log_field_ok(want: &Option<String>, have: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have.unwrap_or("-") == w,
    }
}

/// Whether one access-log line satisfies a log expectation.
pub fn log_matches(l: &LogLine, e: &LogExpect) -> bool {
    let en = &l.entry;
    l.proxy.starts_with(&e.proxy)
        && e.status.is_none_or(|s| s == en.response_code)
        && log_field_ok(&e.flags, Some(&en.flags_string()))
        && log_field_ok(&e.details, en.details.as_deref())
        && log_field_ok(&e.cluster, en.upstream_cluster.as_deref())
        && log_field_ok(&e.route, en.route_name.as_deref())
        && log_field_ok(&e.sni, en.requested_server_name.as_deref())
        && e.contains
            .as_ref()
            .is_none_or(|c| l.line.contains(c.as_str()))
}

pub fn describe_log_expect(e: &LogExpect) -> String {
    let mut parts = vec![format!("a line from {}", e.proxy)];
    if let Some(s) = e.status {
        parts.push(format!("status {s}"));
    }
    for (k, v) in [
        ("flags", &e.flags),
        ("details", &e.details),
        ("cluster", &e.cluster),
        ("route", &e.route),
        ("sni", &e.sni),
        ("containing", &e.contains),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k} {v}"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rules() {
        assert!(count_matches(">0", 1));
        assert!(!count_matches(">0", 0));
        assert!(count_matches("=30", 30));
        assert!(count_matches("30", 30));
        assert!(count_matches(">=2", 2));
        assert!(count_matches("<5", 4));
        assert!(!count_matches("x", 4));
    }
}
