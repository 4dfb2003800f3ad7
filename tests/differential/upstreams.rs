//! Upstream servers both proxies talk to, each misbehaving in one scripted
//! way, on real loopback sockets. The echo server answers with the request
//! head it received, so what each proxy forwarded can be compared.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What an upstream does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with the request head (minus volatile headers) as the body.
    Echo,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Reads the request and closes without a response.
    CloseBeforeHeaders,
    /// Sends headers promising 100 bytes, 10 of them, then closes.
    CloseMidBody,
    /// Echoes after a pause.
    Slow(u64),
    /// `503 Service Unavailable` on a connection kept open.
    Unavailable,
    /// TLS (any certificate) answering each request with the SNI the
    /// client sent: `sni: NAME` or `sni: -`.
    TlsSni,
    /// Accepts a websocket upgrade (`101`), sends the request head it got,
    /// then echoes every chunk back with an `echo:` prefix.
    WebSocket,
}

/// What a plaintext HTTP server answers a TLS ClientHello with (nginx
/// and most servers do this), so TLS origination to it fails as it does
/// in a cluster: the client reads an HTTP response as a TLS record.
const NOT_TLS: &str = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Reads one request head (up to the blank line); `None` at EOF. A TLS
/// record instead of a request line comes back as `Some("\x16")`.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if buf.first() == Some(&0x16) {
            return Some("\x16".into());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

/// The request head a proxy forwarded, normalised: header names in order,
/// volatile values (ids, times, addresses) replaced.
fn echo_body(head: &str) -> String {
    let mut lines = head.lines();
    let mut out = vec![lines.next().unwrap_or_default().to_string()];
    let mut headers: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            let k = k.trim().to_ascii_lowercase();
            let v = match k.as_str() {
                "x-request-id"
                | "x-b3-traceid"
                | "x-b3-spanid"
                | "x-b3-sampled"
                | "x-envoy-expected-rq-timeout-ms" => "*".to_string(),
                "x-forwarded-for" | "x-envoy-external-address" => v.trim().to_string(),
                _ => v.trim().to_string(),
            };
            format!("{k}: {v}")
        })
        .collect();
    headers.sort();
    out.extend(headers);
    out.join("\n") + "\n"
}

/// A TLS server that reports the SNI of each connection.
async fn serve_tls_sni(s: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(ck) = rcgen::generate_simple_self_signed(vec!["upstream.test".to_string()]) else {
        return;
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let Ok(cfg) = rustls::ServerConfig::builder_with_provider(meshsim_proxy::tls::provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
        })
    else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let Ok(mut t) = acceptor.accept(s).await else {
        return;
    };
    let sni = t.get_ref().1.server_name().unwrap_or("-").to_string();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match t.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        got.clear();
        let body = format!("sni: {sni}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if t.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn serve_one(mut s: TcpStream, b: Behaviour) {
    if let Behaviour::TlsSni = b {
        return serve_tls_sni(s).await;
    }
    while let Some(head) = read_head(&mut s).await {
        if head == "\x16" {
            let _ = s.write_all(NOT_TLS.as_bytes()).await;
            return;
        }
        match b {
            Behaviour::Garbage => {
                let _ = s.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
                return;
            }
            Behaviour::CloseBeforeHeaders | Behaviour::TlsSni => return,
            Behaviour::Unavailable => {
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy")
                    .await;
                continue;
            }
            Behaviour::CloseMidBody => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            Behaviour::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Behaviour::WebSocket => {
                let seen = echo_body(&head);
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n{seen}\n"
                );
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                let mut b = [0u8; 4096];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        return;
                    }
                    let mut out = b"echo:".to_vec();
                    out.extend_from_slice(&b[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
                return;
            }
            Behaviour::Echo => {}
        }
        let body = echo_body(&head);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-upstream: test\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Upstreams owned by one test run.
pub struct Upstreams {
    pub tasks: JoinSet<()>,
}

impl Upstreams {
    pub fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
        }
    }

    /// Starts a server with `b`; its address.
    pub async fn start(&mut self, b: Behaviour) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        self.tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = l.accept().await {
                conns.spawn(serve_one(s, b));
            }
        });
        addr
    }

    /// An address nothing listens on (connection refused).
    pub async fn refused() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    }
}
