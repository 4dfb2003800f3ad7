//! A built-in nginx: serves like the echo app, and reverse-proxies the
//! `location`s of a mounted nginx.conf. Like real nginx, `proxy_pass`
//! speaks HTTP/1.0 upstream (with `Connection: close`) unless the location
//! sets `proxy_http_version 1.1` — the page's "Envoy won't connect to my
//! HTTP/1.0 service". Upstream connections leave through the pod's
//! sidecar like any application traffic.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshsim_proxy::scope::Scope;
use tokio::net::TcpListener;

use crate::apps::EchoIdentity;
use crate::network::Network;

/// One `location` with a `proxy_pass`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub prefix: String,
    /// `host:port` after resolving an `upstream` block.
    pub upstream: String,
    pub upstream_path: Option<String>,
    pub http11: bool,
    pub clear_connection: bool,
}

/// What meshsim reads of an nginx configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NginxConf {
    pub listen: Vec<u16>,
    pub locations: Vec<Location>,
}

/// Parses the directives meshsim simulates: `upstream { server }`,
/// `server { listen; location { proxy_pass; proxy_http_version;
/// proxy_set_header Connection "" } }`. Others are ignored.
pub fn parse(conf: &str) -> NginxConf {
    let text: String = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' | '{' | '}' if !quoted => {
                tokens.push(cur.trim().to_string());
                tokens.push(c.to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    let mut upstreams: HashMap<String, String> = HashMap::new();
    let mut out = NginxConf::default();
    let mut stack: Vec<String> = Vec::new();
    let mut loc: Option<Location> = None;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1).map(String::as_str);
        match (t.as_str(), next) {
            (head, Some("{")) => {
                let words: Vec<&str> = head.split_whitespace().collect();
                if words.first() == Some(&"location") {
                    loc = Some(Location {
                        prefix: words.last().unwrap_or(&"/").to_string(),
                        upstream: String::new(),
                        upstream_path: None,
                        http11: false,
                        clear_connection: false,
                    });
                }
                stack.push(head.to_string());
                i += 2;
                continue;
            }
            ("}", _) => {
                if let Some(top) = stack.pop() {
                    if top.starts_with("location") {
                        if let Some(l) = loc.take().filter(|l| !l.upstream.is_empty()) {
                            out.locations.push(l);
                        }
                    }
                }
            }
            (stmt, Some(";")) => {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                let ctx = stack.last().map(String::as_str).unwrap_or("");
                match words.as_slice() {
                    ["server", addr, ..] if ctx.starts_with("upstream") => {
                        let name = ctx.split_whitespace().nth(1).unwrap_or("").to_string();
                        upstreams.entry(name).or_insert_with(|| addr.to_string());
                    }
                    ["listen", port, ..] => {
                        if let Some(p) = port.rsplit(':').next().and_then(|p| p.parse().ok()) {
                            out.listen.push(p);
                        }
                    }
                    ["proxy_pass", url] => {
                        if let Some(l) = loc.as_mut() {
                            let rest = url.trim_start_matches("http://");
                            let (host, path) = match rest.split_once('/') {
                                Some((h, p)) => (h.to_string(), Some(format!("/{p}"))),
                                None => (rest.to_string(), None),
                            };
                            l.upstream = host;
                            l.upstream_path = path;
                        }
                    }
                    ["proxy_http_version", v] => {
                        if let Some(l) = loc.as_mut() {
                            l.http11 = *v == "1.1";
                        }
                    }
                    ["proxy_set_header", name, value]
                        if name.eq_ignore_ascii_case("connection")
                            && (*value == "\"\"" || *value == "''") =>
                    {
                        if let Some(l) = loc.as_mut() {
                            l.clear_connection = true;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    for l in &mut out.locations {
        if let Some(addr) = upstreams.get(&l.upstream) {
            l.upstream = addr.clone();
        }
        if !l.upstream.contains(':') {
            l.upstream.push_str(":80");
        }
    }
    out
}

/// Serves nginx on `listener` for the pod at `pod_ip`.
pub async fn serve(
    listener: TcpListener,
    conf: Arc<NginxConf>,
    id: Arc<EchoIdentity>,
    net: Arc<Network>,
    pod_ip: IpAddr,
    scope: Scope,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let (conf, id, net) = (conf.clone(), id.clone(), net.clone());
        let exec = scope.clone();
        scope.spawn(async move {
            let inner_scope = exec.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (conf, id, net, s) =
                    (conf.clone(), id.clone(), net.clone(), inner_scope.clone());
                async move { Ok::<_, Infallible>(handle(&conf, &id, &net, pod_ip, &s, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(exec)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::SERVER,
        http::HeaderValue::from_static("nginx/1.22.1"),
    );
    r
}

async fn handle(
    conf: &NginxConf,
    id: &EchoIdentity,
    net: &Network,
    pod_ip: IpAddr,
    scope: &Scope,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let Some(loc) = conf
        .locations
        .iter()
        .filter(|l| path.starts_with(&l.prefix))
        .max_by_key(|l| l.prefix.len())
    else {
        return text(
            StatusCode::OK,
            format!(
                "Hello version: {}, instance: {}\nnginx\n",
                id.version, id.pod
            ),
        );
    };
    let (host, port) = loc
        .upstream
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse().unwrap_or(80)))
        .unwrap_or((loc.upstream.clone(), 80));
    let Some(ip) = net.resolve_app(pod_ip, &id.namespace, &host) else {
        return text(
            StatusCode::BAD_GATEWAY,
            "<html><center><h1>502 Bad Gateway</h1></center></html>\n".into(),
        );
    };
    let upstream_path = match &loc.upstream_path {
        Some(p) => format!("{p}{}", &path[loc.prefix.len().min(path.len())..]),
        None => path.clone(),
    };
    let Ok((stream, _)) = net.connect_app(pod_ip, SocketAddr::new(ip, port)).await else {
        return text(
            StatusCode::BAD_GATEWAY,
            "<html><center><h1>502 Bad Gateway</h1></center></html>\n".into(),
        );
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return text(StatusCode::BAD_GATEWAY, String::new());
    };
    scope.spawn(conn);
    let mut b = Request::builder()
        .method(req.method().clone())
        .uri(upstream_path)
        .version(if loc.http11 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        })
        .header(http::header::HOST, loc.upstream.clone());
    if !loc.clear_connection {
        b = b.header(http::header::CONNECTION, "close");
    }
    for (k, v) in req.headers() {
        if k != http::header::HOST && k != http::header::CONNECTION {
            b = b.header(k, v);
        }
    }
    let Ok(up) = b.body(Full::new(Bytes::new())) else {
        return text(StatusCode::BAD_GATEWAY, String::new());
    };
    match sender.send_request(up).await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::SERVER,
                http::HeaderValue::from_static("nginx/1.22.1"),
            );
            r
        }
        Err(_) => text(
            StatusCode::BAD_GATEWAY,
            "<html><center><h1>502 Bad Gateway</h1></center></html>\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's configuration, fixed.
    #[test]
    fn parses_the_page_config() {
        let c = parse("upstream http_backend {\n    server 127.0.0.1:8080;\n\n    keepalive 16;\n}\n\nserver {\n    listen 80;\n    location /http/ {\n        proxy_pass http://http_backend;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n    }\n}\n");
        assert_eq!(c.listen, vec![80]);
        assert_eq!(
            c.locations,
            vec![Location {
                prefix: "/http/".into(),
                upstream: "127.0.0.1:8080".into(),
                upstream_path: None,
                http11: true,
                clear_connection: true
            }]
        );
        let broken = parse("server { location / { proxy_pass http://helloworld:5000/; } }");
        assert_eq!(broken.locations[0].upstream, "helloworld:5000");
        assert!(!broken.locations[0].http11);
    }
}
