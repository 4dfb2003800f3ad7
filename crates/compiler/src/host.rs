//! Istio host matching (`pkg/config/host`): exact names and `*.suffix`
//! wildcards, case-insensitive.

/// Whether config host `pattern` (maybe wildcard) covers host `name`
/// (maybe wildcard itself).
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let ends_with = |n: &str| {
        n.len() >= suffix.len() && n[n.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    match name.strip_prefix('*') {
        Some(nsuffix) => ends_with(nsuffix),
        None => {
            name.len() > suffix.len()
                && name.is_char_boundary(name.len() - suffix.len())
                && ends_with(name)
        }
    }
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
        assert_eq!(
            more_specific("*.test.com", "service1.test.com"),
            "service1.test.com"
        );
        assert!(matches("HTTPBIN.org", "httpbin.ORG"));
    }
}
