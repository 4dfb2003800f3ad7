//! httpbin's JSON endpoints, for pods running an httpbin image
//! (`kennethreitz/httpbin`, `kong/httpbin`, `mccutchen/go-httpbin`, as
//! Istio's samples use): `/get`, `/headers`, `/ip`, `/user-agent`,
//! `/anything[/...]`, and `/delay/N` answering like `/get` after N
//! seconds (at most 10, as httpbin caps it). `/status/N` and
//! `/stream-bytes/N` are the echo app's. Header names are title-cased as
//! httpbin prints them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};

/// Whether an image is httpbin.
pub fn is_httpbin(image: &str) -> bool {
    image
        .rsplit('/')
        .next()
        .is_some_and(|n| n.split(':').next().is_some_and(|n| n.ends_with("httpbin")))
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut m = Map::new();
    for (k, v) in h {
        let key = title_case(k.as_str());
        let v = v.to_str().unwrap_or("").to_string();
        match m.get_mut(&key) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                m.insert(key, Value::String(v));
            }
        }
    }
    Value::Object(m)
}

fn args_json(query: Option<&str>) -> Value {
    let mut m = Map::new();
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

/// The request as the endpoints describe it.
pub struct Seen<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    /// The caller's address as the app sees it (its sidecar, 127.0.0.6).
    pub origin: &'a str,
    pub body: &'a [u8],
}

fn reply(v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
    )));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// httpbin's answer, when the path is one of its JSON endpoints.
pub async fn handle(s: &Seen<'_>) -> Option<Response<Full<Bytes>>> {
    let path = s.uri.path();
    let host = s
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let url = format!(
        "http://{host}{}",
        s.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let get = || {
        json!({
            "args": args_json(s.uri.query()),
            "headers": headers_json(s.headers),
            "origin": s.origin,
            "url": url,
        })
    };
    let v = match path {
        "/get" if s.method == http::Method::GET => get(),
        "/headers" => json!({"headers": headers_json(s.headers)}),
        "/ip" => json!({"origin": s.origin}),
        "/user-agent" => json!({
            "user-agent": s.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")
        }),
        p if p == "/anything" || p.starts_with("/anything/") => json!({
            "args": args_json(s.uri.query()),
            "data": String::from_utf8_lossy(s.body),
            "headers": headers_json(s.headers),
            "method": s.method.as_str(),
            "origin": s.origin,
            "url": url,
        }),
        p if p.starts_with("/delay/") => {
            let secs: f64 = p["/delay/".len()..].parse().ok()?;
            tokio::time::sleep(Duration::from_secs_f64(secs.clamp(0.0, 10.0))).await;
            get()
        }
        _ => return None,
    };
    let mut r = reply(v);
    if path == "/get" || path.starts_with("/delay/") {
        *r.status_mut() = StatusCode::OK;
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn httpbin_images_and_header_names() {
        assert!(is_httpbin("docker.io/kong/httpbin:0.1.0"));
        assert!(is_httpbin("mccutchen/go-httpbin"));
        assert!(!is_httpbin("docker.io/istio/examples-helloworld-v1"));
        assert_eq!(title_case("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(args_json(Some("a=1&b")), json!({"a": "1", "b": ""}));
    }
}
