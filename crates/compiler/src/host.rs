//! Istio host matching (`pkg/config/host`): exact names and `*.suffix`
//! wildcards, case-insensitive.

/// Whether config host `pattern` (maybe wildcard) covers host `name`
/// (maybe wildcard itself).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if p == "*" || p == n {
        return true;
    }
    if let Some(suffix) = p.strip_prefix('*') {
        if let Some(nsuffix) = n.strip_prefix('*') {
            return nsuffix.ends_with(suffix);
        }
        return n.ends_with(suffix) && n.len() > suffix.len();
    }
    false
}

/// Whether two config hosts overlap (either covers the other).
pub fn intersects(a: &str, b: &str) -> bool {
    matches(a, b) || matches(b, a)
}

/// The more specific of two overlapping hosts (istiod uses it for
/// Gateway-server × VirtualService host intersections).
pub fn more_specific<'a>(a: &'a str, b: &'a str) -> &'a str {
    let wa = a.starts_with('*');
    let wb = b.starts_with('*');
    match (wa, wb) {
        (true, false) => b,
        (false, true) => a,
        _ => {
            if a.len() >= b.len() {
                a
            } else {
                b
            }
        }
    }
}

/// Specificity rank for choosing among config for one host: exact beats
/// wildcard, longer wildcard beats shorter.
pub fn specificity(pattern: &str) -> usize {
    if pattern.starts_with('*') {
        pattern.len()
    } else {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", "a.b"));
        assert!(matches("*.example.com", "app.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("*.com", "*.example.com"));
        assert!(!matches("*.example.com", "*.com"));
        assert!(intersects("*.example.com", "*.com"));
        assert_eq!(more_specific("*", "myapp.com"), "myapp.com");
        assert_eq!(more_specific("*.test.com", "service1.test.com"), "service1.test.com");
        assert!(matches("HTTPBIN.org", "httpbin.ORG"));
    }
}
