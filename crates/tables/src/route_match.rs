//! Route selection within a virtual host (Envoy `RouteEntryImplBase::matches`):
//! the first route whose path, header and query-parameter matchers all
//! accept the request wins.

use crate::route::{HeaderMatchSpecifier, PathMatch, Route, RouteMatch, VirtualHost};

/// The parts of a request that routes match on. Header names are lowercase.
pub trait RequestView {
    /// Path including any query string, as sent (`/a/b?x=1`).
    fn path(&self) -> &str;
    fn method(&self) -> &str;
    /// First value of a header (`:authority` included).
    fn header(&self, name: &str) -> Option<&str>;
}

/// Index of the first route of `vh` that matches.
pub fn find_route<R: RequestView + ?Sized>(vh: &VirtualHost, req: &R) -> Option<usize> {
    vh.routes.iter().position(|r| route_matches(r, req))
}

pub fn route_matches<R: RequestView + ?Sized>(route: &Route, req: &R) -> bool {
    match_request(&route.match_, req)
}

pub fn match_request<R: RequestView + ?Sized>(m: &RouteMatch, req: &R) -> bool {
    let full = req.path();
    let (path, query) = match full.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (full, None),
    };
    let case_sensitive = m.case_sensitive.unwrap_or(true);
    let path_ok = match &m.path {
        PathMatch::Prefix(p) => {
            if case_sensitive {
                path.starts_with(p.as_str())
            } else {
                path.len() >= p.len()
                    && path.is_char_boundary(p.len())
                    && path[..p.len()].eq_ignore_ascii_case(p)
            }
        }
        PathMatch::Path(p) => {
            if case_sensitive {
                path == p
            } else {
                path.eq_ignore_ascii_case(p)
            }
        }
        PathMatch::SafeRegex(r) => r.is_match(path),
    };
    if !path_ok {
        return false;
    }
    let headers_ok = m.headers.iter().all(|h| {
        let value = if h.name == ":method" {
            Some(req.method())
        } else {
            req.header(&h.name)
        };
        let matched = match (&h.matcher, value) {
            (HeaderMatchSpecifier::PresentMatch(want), v) => v.is_some() == *want,
            (HeaderMatchSpecifier::StringMatch(_), None) => false,
            (HeaderMatchSpecifier::StringMatch(s), Some(v)) => s.matches(v),
        };
        matched != h.invert_match
    });
    if !headers_ok {
        return false;
    }
    m.query_parameters.iter().all(|q| {
        query.is_some_and(|qs| {
            qs.split('&').any(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                k == q.name && q.string_match.matches(v)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::*;

    struct Req {
        path: &'static str,
        method: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestView for Req {
        fn path(&self) -> &str {
            self.path
        }
        fn method(&self) -> &str {
            self.method
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        }
    }

    fn route(name: &str, m: RouteMatch) -> Route {
        Route {
            match_: m,
            ..Route::catch_all(
                name,
                RouteAction::DirectResponse(DirectResponse {
                    status: 200,
                    body: None,
                }),
            )
        }
    }

    fn vh(routes: Vec<Route>) -> VirtualHost {
        VirtualHost {
            name: "v".into(),
            domains: vec!["*".into()],
            routes,
            include_request_attempt_count: false,
            require_tls: TlsRequirement::None,
        }
    }

    #[test]
    fn header_exact_then_default() {
        let v = vh(vec![
            route(
                "jason",
                RouteMatch {
                    headers: vec![HeaderMatcher {
                        name: "end-user".into(),
                        matcher: HeaderMatchSpecifier::StringMatch(StringMatcher::Exact(
                            "jason".into(),
                        )),
                        invert_match: false,
                    }],
                    ..Default::default()
                },
            ),
            route("default", RouteMatch::default()),
        ]);
        let with = Req {
            path: "/",
            method: "GET",
            headers: vec![("end-user", "jason")],
        };
        let without = Req {
            path: "/",
            method: "GET",
            headers: vec![],
        };
        assert_eq!(find_route(&v, &with), Some(0));
        assert_eq!(find_route(&v, &without), Some(1));
    }

    #[test]
    fn prefix_exact_regex_and_case() {
        let m = |p: PathMatch, cs: Option<bool>| RouteMatch {
            path: p,
            case_sensitive: cs,
            ..Default::default()
        };
        let r = |p| Req {
            path: p,
            method: "GET",
            headers: vec![],
        };
        assert!(match_request(
            &m(PathMatch::Prefix("/hello".into()), None),
            &r("/hello/x?y=1")
        ));
        assert!(!match_request(
            &m(PathMatch::Prefix("/hello".into()), None),
            &r("/HELLO")
        ));
        assert!(match_request(
            &m(PathMatch::Prefix("/hello".into()), Some(false)),
            &r("/HELLO")
        ));
        assert!(match_request(
            &m(PathMatch::Path("/a".into()), None),
            &r("/a?q")
        ));
        assert!(!match_request(
            &m(PathMatch::Path("/a".into()), None),
            &r("/ab")
        ));
        let re = SafeRegex::new("/v[0-9]+/.*").expect("regex");
        assert!(match_request(
            &m(PathMatch::SafeRegex(re.clone()), None),
            &r("/v1/x")
        ));
        assert!(
            !match_request(&m(PathMatch::SafeRegex(re), None), &r("/x/v1/x")),
            "regex matches the whole path"
        );
    }

    #[test]
    fn method_and_query() {
        let m = RouteMatch {
            headers: vec![HeaderMatcher {
                name: ":method".into(),
                matcher: HeaderMatchSpecifier::StringMatch(StringMatcher::Exact("POST".into())),
                invert_match: false,
            }],
            query_parameters: vec![QueryParameterMatcher {
                name: "v".into(),
                string_match: StringMatcher::Exact("2".into()),
            }],
            ..Default::default()
        };
        assert!(match_request(
            &m,
            &Req {
                path: "/?a=1&v=2",
                method: "POST",
                headers: vec![]
            }
        ));
        assert!(!match_request(
            &m,
            &Req {
                path: "/?v=2",
                method: "GET",
                headers: vec![]
            }
        ));
        assert!(!match_request(
            &m,
            &Req {
                path: "/",
                method: "POST",
                headers: vec![]
            }
        ));
    }
}
