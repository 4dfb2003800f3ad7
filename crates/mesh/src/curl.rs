//! A curl-compatible client that runs "inside" a pod (its connections are
//! captured by the pod's sidecar) or outside the cluster (to the ingress
//! gateway). Output and errors follow curl 7.88 with OpenSSL 3, the client
//! the Istio page quotes.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use tokio::net::TcpStream;

use crate::mesh::{Mesh, INGRESS_IP};

/// Where the request starts.
#[derive(Debug, Clone)]
pub enum From {
    /// A pod (`POD.NAMESPACE`).
    Pod(String, String),
    Outside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    #[default]
    Default,
    Http10,
    Http11,
    Http2,
}

/// The options of one curl invocation.
#[derive(Debug, Clone, Default)]
pub struct CurlRequest {
    pub url: String,
    pub method: Option<String>,
    pub headers: Vec<String>,
    pub data: Option<String>,
    pub head: bool,
    pub insecure: bool,
    pub version: HttpVersion,
    /// `HOST:PORT:ADDR`
    pub resolve: Vec<String>,
    /// `HOST1:PORT1:HOST2:PORT2`
    pub connect_to: Vec<String>,
    /// PEM CA bundle to trust instead of the system store.
    pub cacert: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub verbose: bool,
    /// `--cert`/`--key`: a client certificate for TLS.
    pub client_cert: Option<meshsim_proxy::env::CertifiedKey>,
}

/// What curl would have printed and returned.
#[derive(Debug, Clone, Default)]
pub struct CurlResponse {
    pub exit_code: i32,
    pub status: Option<u16>,
    pub http_version: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's error line (`curl: (35) ...`), if any.
    pub error: Option<String>,
    /// `-v` lines.
    pub verbose: String,
    pub time_total: Duration,
}

impl CurlResponse {
    /// curl's `(28) Operation timed out` after `t`.
    pub fn timed_out(t: Duration) -> Self {
        CurlResponse::fail(
            28,
            format!(
                "Operation timed out after {} milliseconds with 0 bytes received",
                t.as_millis()
            ),
        )
    }

    fn fail(code: i32, msg: String) -> Self {
        Self {
            exit_code: code,
            error: Some(format!("curl: ({code}) {msg}")),
            ..Default::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Expands `-w` variables (`%{http_code}`, `%{time_total}`, `\n`).
    pub fn write_out(&self, fmt: &str) -> String {
        fmt.replace("%{http_code}", &format!("{:03}", self.status.unwrap_or(0)))
            .replace(
                "%{response_code}",
                &format!("{:03}", self.status.unwrap_or(0)),
            )
            .replace(
                "%{time_total}",
                &format!("{:.6}", self.time_total.as_secs_f64()),
            )
            .replace(
                "%{http_version}",
                self.http_version.as_deref().unwrap_or("0"),
            )
            .replace("\\n", "\n")
    }
}

pub(crate) struct Target {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

fn parse_url(url: &str) -> Option<Target> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Some(Target {
        scheme,
        host,
        port,
        path,
    })
}

mod tls;

impl Mesh {
    /// Runs one curl request.
    /// [`Mesh::curl`], then the access-log lines of every proxy on the
    /// path once they are written.
    pub async fn curl_logged(
        &self,
        from: &From,
        req: &CurlRequest,
    ) -> (CurlResponse, Vec<crate::logs::LogLine>) {
        let before = self.logs.len();
        let r = self.curl(from, req).await;
        (r, self.logs.settle(before).await)
    }

    pub async fn curl(&self, from: &From, req: &CurlRequest) -> CurlResponse {
        let started = Instant::now();
        let fut = self.curl_inner(from, req);
        let mut r = match req.timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => CurlResponse::timed_out(t),
            },
            None => fut.await,
        };
        r.time_total = started.elapsed();
        r
    }

    async fn connect_for(
        &self,
        from: &From,
        host: &str,
        port: u16,
        req: &CurlRequest,
    ) -> Result<TcpStream, CurlResponse> {
        // --connect-to HOST1:PORT1:HOST2:PORT2
        let (mut c_host, mut c_port) = (host.to_string(), port);
        for ct in &req.connect_to {
            let p: Vec<&str> = ct.split(':').collect();
            if p.len() == 4
                && (p[0].is_empty() || p[0] == host)
                && (p[1].is_empty() || p[1].parse() == Ok(port))
            {
                if !p[2].is_empty() {
                    c_host = p[2].to_string();
                }
                if let Ok(np) = p[3].parse() {
                    c_port = np;
                }
            }
        }
        let mut addr: Option<IpAddr> = None;
        for r in &req.resolve {
            let p: Vec<&str> = r.splitn(3, ':').collect();
            if p.len() == 3 && p[0] == c_host && p[1].parse() == Ok(c_port) {
                addr = p[2].trim_matches(|c| c == '[' || c == ']').parse().ok();
            }
        }
        let cant_resolve = || CurlResponse::fail(6, format!("Could not resolve host: {c_host}"));
        let refused = |ms: u128| {
            CurlResponse::fail(7, format!("Failed to connect to {c_host} port {c_port} after {ms} ms: Couldn't connect to server"))
        };
        // A client out of descriptors is counted for the fd hint.
        let failed = |e: std::io::Error, ms: u128| {
            if meshsim_proxy::is_fd_exhaustion(&e) {
                meshsim_proxy::note_fd_exhaustion();
            }
            refused(ms)
        };
        let t0 = Instant::now();
        match from {
            From::Pod(name, ns) => {
                let Some(pod) = self.world().pod(name, ns).cloned() else {
                    return Err(CurlResponse::fail(2, format!("no pod {name}.{ns}")));
                };
                let ip =
                    match addr.or_else(|| self.net.resolve_app(IpAddr::V4(pod.ip), ns, &c_host)) {
                        Some(ip) => ip,
                        None => return Err(cant_resolve()),
                    };
                self.net
                    .connect_app(IpAddr::V4(pod.ip), SocketAddr::new(ip, c_port))
                    .await
                    .map(|(s, _)| s)
                    .map_err(|e| failed(e, t0.elapsed().as_millis()))
            }
            From::Outside => {
                // Outside DNS knows no mesh names: a host that is not an
                // address goes to the default ingress gateway.
                let ip = addr
                    .or_else(|| c_host.parse().ok())
                    .unwrap_or(IpAddr::V4(INGRESS_IP));
                let IpAddr::V4(ip) = ip else {
                    return Err(refused(0));
                };
                let Some(ing) = self.ingress().get(&(ip, c_port)).cloned() else {
                    return Err(refused(0));
                };
                // No gateway listener on the target port: the pod refuses.
                if !self
                    .proxy(&ing.proxy)
                    .is_some_and(|p| ing.target_port == 15021 || p.listens_on(ing.target_port))
                {
                    return Err(refused(0));
                }
                TcpStream::connect(ing.real)
                    .await
                    .map_err(|e| failed(e, t0.elapsed().as_millis()))
            }
        }
    }

    async fn curl_inner(&self, from: &From, req: &CurlRequest) -> CurlResponse {
        match self.open(from, req).await {
            Ok(mut conn) => conn.send(req).await,
            Err(e) => e,
        }
    }

    /// Opens a connection the way curl would for `req` (TCP, TLS with SNI
    /// and ALPN), ready to carry several requests — as a browser reuses one
    /// HTTP/2 connection for every host its certificate covers.
    pub async fn open(&self, from: &From, req: &CurlRequest) -> Result<Connection, CurlResponse> {
        let Some(t) = parse_url(&req.url) else {
            return Err(CurlResponse::fail(
                3,
                format!("URL using bad/illegal format or missing URL: {}", req.url),
            ));
        };
        let stream = self.connect_for(from, &t.host, t.port, req).await?;
        let https = t.scheme == "https";
        let (io, h2): (Box<dyn meshsim_proxy::io::Io>, bool) = if https {
            self.tls_connect(stream, &t, req).await?
        } else {
            (Box::new(stream), req.version == HttpVersion::Http2)
        };
        let io = TokioIo::new(io);
        let sender = if h2 {
            match hyper::client::conn::http2::handshake(self.scope.clone(), io).await {
                Ok((s, conn)) => {
                    self.scope.spawn(conn);
                    Sender::H2(s)
                }
                Err(_) => {
                    return Err(CurlResponse::fail(
                        16,
                        "Error in the HTTP2 framing layer".into(),
                    ))
                }
            }
        } else {
            match hyper::client::conn::http1::handshake(io).await {
                Ok((s, conn)) => {
                    self.scope.spawn(conn);
                    Sender::H1(s)
                }
                Err(_) => {
                    return Err(CurlResponse::fail(
                        56,
                        "Recv failure: Connection reset by peer".into(),
                    ))
                }
            }
        };
        Ok(Connection {
            sender,
            h2,
            scheme: t.scheme,
        })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An open client connection; each [`Connection::send`] is one request on it.
pub struct Connection {
    sender: Sender,
    h2: bool,
    scheme: String,
}

impl Connection {
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// Sends `req` on this connection; its URL's host becomes the
    /// `:authority`/`Host` (the connection's address and SNI stay).
    pub async fn send(&mut self, req: &CurlRequest) -> CurlResponse {
        let Some(mut t) = parse_url(&req.url) else {
            return CurlResponse::fail(
                3,
                format!("URL using bad/illegal format or missing URL: {}", req.url),
            );
        };
        t.scheme = self.scheme.clone();
        let h2 = self.h2;
        let https = t.scheme == "https";
        let mut verbose = String::new();
        let _ = writeln!(verbose, "* Connected to {} port {}", t.host, t.port);
        let method = if req.head {
            Method::HEAD
        } else {
            req.method
                .as_deref()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                .unwrap_or(if req.data.is_some() {
                    Method::POST
                } else {
                    Method::GET
                })
        };
        let version = match (h2, req.version) {
            (true, _) => Version::HTTP_2,
            (_, HttpVersion::Http10) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let given_host = req.headers.iter().find_map(|h| {
            h.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        });
        let host_header = if let (true, Some(h)) = (h2, &given_host) {
            // curl sends a Host header as :authority on HTTP/2.
            h.clone()
        } else if (t.scheme == "http" && t.port == 80) || (https && t.port == 443) {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let uri = if h2 {
            format!("{}://{}{}", t.scheme, host_header, t.path)
        } else {
            t.path.clone()
        };
        let mut b = Request::builder()
            .method(method.clone())
            .uri(uri)
            .version(version);
        let mut has_host = false;
        let mut has_ua = false;
        for h in &req.headers {
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim();
                if h2 && k.eq_ignore_ascii_case("host") {
                    // curl turns Host into :authority on HTTP/2.
                    has_host = true;
                    continue;
                }
                has_host |= k.eq_ignore_ascii_case("host");
                has_ua |= k.eq_ignore_ascii_case("user-agent");
                b = b.header(k, v.trim());
            }
        }
        if !has_host && !h2 {
            b = b.header(http::header::HOST, host_header.as_str());
        }
        if !has_ua {
            b = b.header(http::header::USER_AGENT, "curl/7.88.1");
        }
        b = b.header(http::header::ACCEPT, "*/*");
        let body = req.data.clone().unwrap_or_default();
        if req.data.is_some() {
            b = b.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        }
        let Ok(request) = b.body(Full::new(Bytes::from(body))) else {
            return CurlResponse::fail(3, "bad request".into());
        };
        let _ = writeln!(verbose, "> {} {} {:?}", method, t.path, version);
        for (k, v) in request.headers() {
            let _ = writeln!(verbose, "> {k}: {}", v.to_str().unwrap_or(""));
        }
        let _ = writeln!(verbose, ">");
        let resp = match &mut self.sender {
            Sender::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Sender::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_incomplete_message() => {
                return CurlResponse::fail(52, "Empty reply from server".into())
            }
            Err(_) => {
                return CurlResponse::fail(56, "Recv failure: Connection reset by peer".into())
            }
        };
        let status = resp.status().as_u16();
        let http_version = match resp.version() {
            Version::HTTP_2 => "2",
            Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let reason = resp
            .status()
            .canonical_reason()
            .filter(|_| http_version != "2")
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        let _ = writeln!(verbose, "< HTTP/{http_version} {status}{reason}");
        for (k, v) in &headers {
            let _ = writeln!(verbose, "< {k}: {v}");
        }
        let _ = writeln!(verbose, "<");
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(_) => {
                return CurlResponse {
                    exit_code: 56,
                    status: Some(status),
                    error: Some("curl: (56) Recv failure: Connection reset by peer".into()),
                    ..Default::default()
                }
            }
        };
        CurlResponse {
            exit_code: 0,
            status: Some(status),
            http_version: Some(http_version.into()),
            headers,
            body,
            error: None,
            verbose,
            time_total: Duration::ZERO,
        }
    }
}
