//! Unit tests of the analyzers' helpers; the analyzers themselves are
//! tested on whole configurations in `crates/compiler/tests/analyze.rs`.

use super::*;

#[test]
fn suppression_globs_like_istioctl() {
    let m = Message {
        level: Level::Error,
        code: "IST0101",
        kind: "VirtualService".into(),
        name: "ledger".into(),
        namespace: "accounts".into(),
        reference: "a.yaml:3".into(),
        text: "x".into(),
    };
    for (s, hit) in [
        ("IST0101=VirtualService ledger.accounts", true),
        ("IST0101=VirtualService *.accounts", true),
        ("IST0101=* ledger.*", true),
        ("IST0102=VirtualService ledger.accounts", false),
        ("IST0101=VirtualService ledger.default", false),
    ] {
        assert_eq!(
            Suppression::parse(s).expect("valid").matches(&m),
            hit,
            "{s}"
        );
    }
    assert!(Suppression::parse("IST0101").is_err());
    assert_eq!(
        m.to_string(),
        "Error [IST0101] (VirtualService accounts/ledger a.yaml:3) x"
    );
}

#[test]
fn nginx_http_version_scoping() {
    let http10 = "server { location / { proxy_pass http://b; } }";
    assert_eq!(checks::nginx_check(http10).as_deref(), Some("http://b"));
    for ok in [
        "server { location / { proxy_pass http://b; proxy_http_version 1.1; } }",
        "server { proxy_http_version 1.1; location / { proxy_pass http://b; } }",
        "http { proxy_http_version 1.1; server { location / { proxy_pass http://b; } } }",
        "server { location / { root /x; } }",
    ] {
        assert_eq!(checks::nginx_check(ok), None, "{ok}");
    }
    // A sibling block's setting does not reach.
    let sibling =
        "server { location /a { proxy_http_version 1.1; } location /b { proxy_pass http://c; } }";
    assert_eq!(checks::nginx_check(sibling).as_deref(), Some("http://c"));
    // A comment is not a directive.
    let comment = "server { location / { # proxy_http_version 1.1;\n proxy_pass http://d; } }";
    assert_eq!(checks::nginx_check(comment).as_deref(), Some("http://d"));
}

#[test]
fn selector_strings_sort_by_key() {
    let m = [("version", "v1"), ("app", "web")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(checks::selector(&m), "app=web,version=v1");
}
