//! Built-in applications behind pods and external hosts, chosen from the
//! container image (annotation `meshsim.io/app` overrides):
//! * `echo` — like Istio's helloworld/httpbin: answers
//!   `Hello version: v1, instance: helloworld-v1-0` and echoes the request;
//!   `/status/N` answers N, `/headers` echoes headers, `/delay/N` waits,
//!   `/stream-bytes/N` streams N bytes (httpbin's endpoint, any size);
//!   a request body is read as it streams, its first [`ECHO_BODY_LIMIT`]
//!   bytes echoed and its length reported (memory stays flat for a 1 GiB
//!   upload);
//!   annotation `meshsim.io/app-status: "503"` makes a replica answer that
//!   status to everything.
//! * `client` — sleep/curl pods: no server.
//! * `external` — an internet host: HTTPS on 443 with a certificate from the
//!   fake public CA, plain HTTP elsewhere.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshsim_proxy::scope::Scope;
use tokio::net::TcpListener;

/// Which application a pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Echo,
    Nginx,
    Client,
    /// Istio's `tcp-echo-server` sample: each line back, prefixed `hello `.
    TcpEcho,
    /// Bring your own app as a command line (`meshsim.io/app: "cmd:..."`):
    /// meshsim runs it with `$PORT` set and owns the process.
    Command,
    /// Bring your own app: a real process already listening at this
    /// address (`meshsim.io/app: addr:127.0.0.1:8080`) serves every port
    /// of the pod, behind the pod's sidecar like a built-in app.
    Local(std::net::SocketAddr),
}

pub fn app_for(image: &str, annotation: Option<&str>) -> AppKind {
    match annotation {
        Some("client" | "sleep" | "curl") => return AppKind::Client,
        Some("nginx") => return AppKind::Nginx,
        Some(a) if a.starts_with("cmd:") => return AppKind::Command,
        Some(a) => {
            return match a.strip_prefix("addr:").map(|x| x.trim().parse()) {
                Some(Ok(addr)) => AppKind::Local(addr),
                _ => AppKind::Echo,
            }
        }
        None => {}
    }
    let img = image.rsplit('/').next().unwrap_or(image);
    if img.starts_with("curl")
        || img.starts_with("sleep")
        || img.contains("curlimages")
        || image.contains("curlimages")
    {
        AppKind::Client
    } else if img.starts_with("nginx") {
        AppKind::Nginx
    } else if img.starts_with("tcp-echo") {
        AppKind::TcpEcho
    } else {
        AppKind::Echo
    }
}

/// Identity an echo server reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoIdentity {
    pub pod: String,
    pub namespace: String,
    pub version: String,
    pub host: Option<String>,
    /// A replica that answers every request with this status (pod
    /// annotation `meshsim.io/app-status`): a broken instance behind a
    /// Service, as outlier detection meets it.
    pub status: Option<u16>,
    /// A Bookinfo image: its own paths behave as the sample's service.
    pub bookinfo: Option<crate::bookinfo::Role>,
    /// An httpbin image: its JSON endpoints.
    pub httpbin: bool,
    /// `meshsim.io/calls`: the upstreams it calls per path.
    pub calls: Vec<crate::graph::Rule>,
    /// `meshsim.io/app-delay`: every answer this much later.
    pub delay: Option<Duration>,
}

/// Serves the echo application on `listener` (HTTP/1.1 and h2c); its
/// connections live in `scope`.
pub async fn serve_echo(
    listener: TcpListener,
    id: Arc<EchoIdentity>,
    tls: Option<Arc<rustls::ServerConfig>>,
    out: Option<crate::bookinfo::Outbound>,
    scope: Scope,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = id.clone();
        let tls = tls.clone();
        let out = out.clone();
        let origin = remote.ip().to_string();
        let exec = scope.clone();
        scope.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(exec);
            let service = |id: Arc<EchoIdentity>, peer: Option<String>| {
                let origin = origin.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (id, peer, out) = (id.clone(), peer.clone(), out.clone());
                    let origin = origin.clone();
                    async move {
                        let at = Caller {
                            peer: peer.as_deref(),
                            origin: &origin,
                        };
                        Ok::<_, Infallible>(echo(&id, &at, out.as_ref(), req).await)
                    }
                })
            };
            match tls {
                Some(cfg) => {
                    if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await {
                        // The client certificate, if one was presented (MUTUAL origination).
                        let peer = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| meshsim_proxy::tls::subject_alt_names(c).join(","));
                        let _ = builder
                            .serve_connection(TokioIo::new(s), service(id, peer))
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service(id, None))
                        .await;
                }
            }
        });
    }
}

/// How much of a request body the echo server prints back.
pub const ECHO_BODY_LIMIT: usize = 64 * 1024;

/// A response body of the built-in apps.
type AppBody = BoxBody<Bytes, Infallible>;

fn full_body(b: impl Into<Bytes>) -> AppBody {
    Full::new(b.into()).boxed()
}

/// Reads a request body as it streams: its first `keep` bytes and its
/// length (`None` when the client broke it off).
async fn drain(mut body: Incoming, keep: usize) -> Option<(Vec<u8>, u64)> {
    let (mut head, mut len) = (Vec::new(), 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.ok()?.into_data() {
            len += d.len() as u64;
            let room = keep.saturating_sub(head.len());
            head.extend_from_slice(&d[..room.min(d.len())]);
        }
    }
    Some((head, len))
}

/// `n` bytes of `x`, produced as they are sent (never held whole).
struct Repeat {
    left: u64,
    chunk: Bytes,
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Who called the app: its client certificate (MUTUAL origination) and
/// address.
struct Caller<'a> {
    peer: Option<&'a str>,
    origin: &'a str,
}

async fn echo(
    id: &EchoIdentity,
    at: &Caller<'_>,
    out: Option<&crate::bookinfo::Outbound>,
    req: Request<Incoming>,
) -> Response<AppBody> {
    let peer = at.peer;
    if let Some(d) = id.delay {
        tokio::time::sleep(d).await;
    }
    let (parts, body) = req.into_parts();
    let Some((body, body_len)) = drain(body, ECHO_BODY_LIMIT).await else {
        let mut r = Response::new(full_body(""));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    if id.httpbin {
        let seen = crate::httpbin::Seen {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            origin: at.origin,
            body: &body,
        };
        if let Some(r) = crate::httpbin::handle(&seen).await {
            return r.map(|b| b.boxed());
        }
    }
    if let (false, Some(out)) = (id.calls.is_empty(), out) {
        let path = parts.uri.path();
        if let Some((status, text)) =
            crate::graph::serve(&id.calls, out, path, &parts.headers).await
        {
            let mut r = Response::new(full_body(text));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return r;
        }
    }
    if let Some(role) = id.bookinfo {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let r =
            crate::bookinfo::handle(role, out, &id.pod, &parts.method, pq, &parts.headers, &body);
        if let Some(r) = r.await {
            return r.map(|b| b.boxed());
        }
    }
    let path = parts.uri.path();
    if let Some(n) = path.strip_prefix("/stream-bytes/") {
        let Ok(left) = n.parse::<u64>() else {
            let mut r = Response::new(full_body(""));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        let mut r = Response::new(
            Repeat {
                left,
                chunk: Bytes::from(vec![b'x'; 64 * 1024]),
            }
            .boxed(),
        );
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        return r;
    }
    let mut status = id
        .status
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    if let Some(secs) = path.strip_prefix("/delay/") {
        let s: f64 = secs.parse().unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs_f64(s.clamp(0.0, 10.0))).await;
    }
    // `/page?frame=URL`: an HTML page embedding URL, so a real browser
    // makes a second request (reusing its connection when it may).
    if path == "/page" {
        let frame = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("frame=")))
            .unwrap_or("");
        let html = format!("<html><body><p>Hello version: {}, instance: {}</p><iframe src=\"{frame}\"></iframe></body></html>\n", id.version, id.pod);
        let mut r = Response::new(full_body(html));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html"),
        );
        return r;
    }
    let mut out = String::new();
    match &id.host {
        // The rest of the internet: one server answers for every name.
        Some(h) if h.is_empty() => {
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| parts.uri.host())
                .unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let _ = writeln!(out, "Hello from external host {host}");
        }
        Some(h) => {
            let _ = writeln!(out, "Hello from external host {h}");
        }
        None => {
            let _ = writeln!(out, "Hello version: {}, instance: {}", id.version, id.pod);
            let _ = writeln!(
                out,
                "pod={} namespace={} version={}",
                id.pod, id.namespace, id.version
            );
        }
    }
    let _ = writeln!(out, "{} {} {:?}", parts.method, parts.uri, parts.version);
    if let Some(p) = peer {
        let _ = writeln!(out, "client certificate: {p}");
    }
    for (k, v) in &parts.headers {
        let _ = writeln!(out, "{k}: {}", v.to_str().unwrap_or("?"));
    }
    if !body.is_empty() {
        let _ = writeln!(out, "\n{}", String::from_utf8_lossy(&body));
        if body_len > body.len() as u64 {
            let _ = writeln!(out, "... ({body_len} bytes in all)");
        }
    }
    let mut r = Response::new(full_body(out));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Istio's tcp-echo-server (samples/tcp-echo): every line it reads comes
/// back prefixed with `hello ` (the sample's default prefix).
pub async fn serve_tcp_echo(listener: TcpListener, scope: Scope) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        scope.spawn(async move {
            let (r, mut w) = stream.into_split();
            // A line is at most 64 KiB; a longer one ends the connection.
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                let mut limited = (&mut r).take(64 * 1024);
                match limited.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if !line.ends_with(b"\n") && line.len() >= 64 * 1024 => return,
                    Ok(_) => {}
                }
                let mut reply = b"hello ".to_vec();
                reply.extend_from_slice(&line);
                if !reply.ends_with(b"\n") {
                    reply.push(b'\n');
                }
                if w.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `GET /healthz/ready` → 200, as a gateway's status port answers health checks.
pub async fn serve_readiness(listener: TcpListener, scope: Scope) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        scope.spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let mut r = Response::new(Full::new(Bytes::new()));
                if req.uri().path() != "/healthz/ready" {
                    *r.status_mut() = StatusCode::NOT_FOUND;
                }
                Ok::<_, Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
