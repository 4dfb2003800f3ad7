//! Cases sent with real curl (what users type): HTTP/2 with prior
//! knowledge, HTTP/1.0, and TLS to the gateway's HTTPS server with SNI and
//! ALPN. Each reply is read from curl's `-i` output; curl's local port
//! (`%{local_port}`) finds the access-log line.

use std::net::SocketAddr;
use std::process::Stdio;

use super::client::Reply;

/// A curl invocation; `{url}` in `args` is replaced by the target's URL
/// with `scheme` and `host`.
pub struct CurlCase {
    pub name: &'static str,
    pub scheme: &'static str,
    pub host: &'static str,
    pub path: &'static str,
    pub args: &'static [&'static str],
}

/// Runs curl against `addr` (resolving `case.host` there).
pub async fn curl(case: &CurlCase, addr: SocketAddr) -> Reply {
    let port = addr.port();
    let url = format!("{}://{}:{port}{}", case.scheme, case.host, case.path);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-i", "-k", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{}:{port}:{}", case.host, addr.ip()))
        .arg("-H")
        .arg(format!("Host: {}", case.host))
        .args(case.args)
        .args(["-w", "\n%{local_port}"])
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (text, local) = text.rsplit_once('\n').unwrap_or((&text, ""));
    let mut r = Reply {
        port: local.trim().parse().unwrap_or(0),
        ..Default::default()
    };
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    r.status_line = lines.next().unwrap_or_default().trim().to_string();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            r.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    r.body = body.to_string();
    if !out.status.success() {
        r.error = Some(format!("curl exit {}", out.status.code().unwrap_or(-1)));
    }
    r
}

pub fn gateway_http() -> Vec<CurlCase> {
    vec![
        CurlCase {
            name: "curl --http2-prior-knowledge",
            scheme: "http",
            host: "app.example",
            path: "/api/h2",
            args: &["--http2-prior-knowledge"],
        },
        CurlCase {
            name: "curl --http1.0",
            scheme: "http",
            host: "app.example",
            path: "/api",
            args: &["--http1.0"],
        },
        CurlCase {
            name: "curl POST with a body",
            scheme: "http",
            host: "app.example",
            path: "/api/items",
            args: &["-d", "name=widget&count=3"],
        },
    ]
}

pub fn gateway_https() -> Vec<CurlCase> {
    vec![
        CurlCase {
            name: "curl https (ALPN h2)",
            scheme: "https",
            host: "secure.example",
            path: "/anything",
            args: &["--http2"],
        },
        CurlCase {
            name: "curl https --http1.1",
            scheme: "https",
            host: "secure.example",
            path: "/anything",
            args: &["--http1.1"],
        },
    ]
}
