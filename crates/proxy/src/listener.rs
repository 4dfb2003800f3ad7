//! Accepting connections: the original destination (a PROXY protocol v2
//! header from the mesh's capture, like iptables' SO_ORIGINAL_DST),
//! listener selection, sniffing (tls_inspector / http_inspector), Envoy's
//! filter-chain match, TLS termination, then the chain's filters.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshsim_tables::filter_chain_match::{select_filter_chain, ConnectionInfo};
use meshsim_tables::{FilterChain, Listener, NetworkFilterConfig, TransportProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::accesslog::{Flag, LogEntry};
use crate::io::{BoxIo, Rewind};
use crate::snapshot::{Snapshot, DEFAULT_CHAIN};
use crate::{Inner, Proxy};

/// Which capture a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// iptables' outbound redirect → `virtualOutbound` (15001).
    Outbound,
    /// iptables' inbound redirect → `virtualInbound` (15006).
    Inbound,
    /// A gateway's own port (no redirect): the listener bound on it.
    Port(u16),
}

/// What the listener filters learned about a connection.
#[derive(Debug, Clone, Default)]
pub struct Sniffed {
    pub transport: TransportProtocol,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub buf: Vec<u8>,
}

/// Per-connection facts the filters and the access log need.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub src: SocketAddr,
    /// The original destination.
    pub dst: SocketAddr,
    pub listener: usize,
    pub chain: usize,
    pub sni: Option<String>,
    /// SPIFFE/DNS SANs of a verified client certificate.
    pub peer_sans: Vec<String>,
    /// The verified client certificate, for `x-forwarded-client-cert`.
    pub peer_cert: Option<crate::tls::CertDetails>,
    /// URI SANs of the certificate this chain presented.
    pub local_uris: Vec<String>,
    /// Negotiated ALPN after TLS termination.
    pub negotiated_alpn: Option<String>,
    pub sniffed_alpn: Vec<String>,
}

impl Proxy {
    /// Serves a capture socket: each connection starts with a PROXY v2
    /// header carrying the original source and destination.
    pub async fn serve_capture(self, listener: TcpListener, capture: Capture) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    self.inner.accept_failed(&e).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let p = self.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                match read_proxy_header(&mut stream).await {
                    Ok((src, dst)) => p.inner.clone().handle(stream, src, dst, capture).await,
                    Err(e) => tracing::debug!("{}: bad PROXY header: {e}", p.inner.id),
                }
            });
        }
    }

    /// Serves a port opened to the outside (a gateway's `0.0.0.0:8080` as a
    /// real localhost port): no header, the destination is the proxy's IP.
    pub async fn serve_port(self, listener: TcpListener, port: u16) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    self.inner.accept_failed(&e).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let inner = self.inner.clone();
            let dst = SocketAddr::new(inner.ip, port);
            tokio::spawn(async move { inner.handle(stream, peer, dst, Capture::Port(port)).await });
        }
    }
}

/// Reads a PROXY protocol v2 header (the `ppp` crate parses it).
pub async fn read_proxy_header<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> io::Result<(SocketAddr, SocketAddr)> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await?;
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut buf = head.to_vec();
    buf.resize(16 + len, 0);
    s.read_exact(&mut buf[16..]).await?;
    let header = ppp::v2::Header::try_from(&buf[..])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Ok((
            SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        )),
        ppp::v2::Addresses::IPv6(a) => Ok((
            SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "PROXY header without addresses",
        )),
    }
}

/// Encodes a PROXY protocol v2 header for `src` → `dst`.
pub fn proxy_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let addresses = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            ppp::v2::Addresses::IPv4(ppp::v2::IPv4::new(*s.ip(), *d.ip(), s.port(), d.port()))
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            ppp::v2::Addresses::IPv6(ppp::v2::IPv6::new(v6(s), v6(d), s.port(), d.port()))
        }
    };
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap_or_default()
}

fn needs_sniffing(l: &Listener) -> bool {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .any(|c| {
            let m = &c.filter_chain_match;
            !m.server_names.is_empty()
                || !m.transport_protocol.is_any()
                || !m.application_protocols.is_empty()
                || c.transport_socket.is_some()
        })
}

/// tls_inspector + http_inspector: reads (and keeps) the first bytes.
pub async fn sniff<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    wait: Duration,
) -> io::Result<Sniffed> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(remaining, s.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => 0,
        };
        if n == 0 && buf.is_empty() {
            return Ok(Sniffed {
                transport: TransportProtocol::RawBuffer,
                buf,
                ..Default::default()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let done = n == 0 || buf.len() >= 16 * 1024 || Instant::now() >= deadline;
        if buf[0] == 0x16 {
            let mut acc = rustls::server::Acceptor::default();
            let mut rd: &[u8] = &buf;
            let parsed = acc.read_tls(&mut rd).ok().and_then(|_| acc.accept().ok());
            match parsed {
                Some(Some(accepted)) => {
                    let ch = accepted.client_hello();
                    let sni = ch.server_name().map(|s| s.to_ascii_lowercase());
                    let alpn = ch
                        .alpn()
                        .map(|it| {
                            it.map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(Sniffed {
                        transport: TransportProtocol::Tls,
                        sni,
                        alpn,
                        buf,
                    });
                }
                Some(None) if !done => continue,
                _ => {
                    return Ok(Sniffed {
                        transport: TransportProtocol::Tls,
                        buf,
                        ..Default::default()
                    })
                }
            }
        }
        if let Some(alpn) = http_alpn(&buf) {
            return Ok(Sniffed {
                transport: TransportProtocol::RawBuffer,
                alpn,
                buf,
                ..Default::default()
            });
        }
        if done || !could_be_http(&buf) {
            return Ok(Sniffed {
                transport: TransportProtocol::RawBuffer,
                buf,
                ..Default::default()
            });
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// http_inspector's verdict once the first line is in: `http/1.0`,
/// `http/1.1` or `h2c`; `Some(vec![])` means "not HTTP".
fn http_alpn(buf: &[u8]) -> Option<Vec<String>> {
    if buf.len() >= H2_PREFACE.len() && buf.starts_with(H2_PREFACE) {
        return Some(vec!["h2c".into()]);
    }
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..end]).ok()?;
    let mut parts = line.split(' ');
    let (m, _t, v) = (parts.next()?, parts.next()?, parts.next()?);
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Some(vec![]);
    }
    match v {
        "HTTP/1.1" => Some(vec!["http/1.1".into()]),
        "HTTP/1.0" => Some(vec!["http/1.0".into()]),
        _ => Some(vec![]),
    }
}

fn could_be_http(buf: &[u8]) -> bool {
    let head = &buf[..buf.len().min(H2_PREFACE.len())];
    H2_PREFACE.starts_with(head)
        || buf
            .iter()
            .take_while(|b| **b != b' ')
            .all(|b| b.is_ascii_uppercase())
}

impl Inner {
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut stream: tokio::net::TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        capture: Capture,
    ) {
        self.server
            .downstream_cx_total
            .fetch_add(1, Ordering::Relaxed);
        self.server
            .downstream_cx_active
            .fetch_add(1, Ordering::Relaxed);
        let snap = self.snapshot.load_full();
        let listener = match capture {
            Capture::Outbound => snap.outbound_listener(dst.ip(), dst.port()),
            Capture::Inbound => snap.virtual_inbound,
            Capture::Port(p) => snap.port_listener(p),
        };
        let Some(li) = listener else {
            // No listener: the kernel would refuse; we close.
            self.server
                .downstream_cx_active
                .fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let l = snap.listener(li);
        let sniffed = if needs_sniffing(l) {
            sniff(&mut stream, Duration::from_millis(1000))
                .await
                .unwrap_or_default()
        } else {
            Sniffed {
                transport: TransportProtocol::RawBuffer,
                ..Default::default()
            }
        };
        let alpn = sniffed.alpn.clone();
        let conn = ConnectionInfo {
            destination_port: dst.port(),
            destination_ip: Some(dst.ip()),
            server_name: sniffed.sni.as_deref(),
            transport_protocol: sniffed.transport,
            application_protocols: &alpn,
        };
        let chain = match select_filter_chain(l, &conn) {
            Some(i) => Some(i),
            None => l.default_filter_chain.as_ref().map(|_| DEFAULT_CHAIN),
        };
        let start = SystemTime::now();
        let Some(ci) = chain else {
            // Envoy closes the connection and logs NR filter_chain_not_found.
            self.server
                .no_filter_chain_match
                .fetch_add(1, Ordering::Relaxed);
            let e = LogEntry {
                start: Some(start),
                flags: vec![Flag::NoRouteFound],
                details: Some("filter_chain_not_found".into()),
                bytes_received: sniffed.buf.len() as u64,
                downstream_local: Some(dst),
                downstream_remote: Some(src),
                requested_server_name: sniffed.sni.clone(),
                ..Default::default()
            };
            self.logger.load().log(&e);
            // Envoy closes with the client's bytes unread: the kernel answers
            // with a reset (curl: "(56) Recv failure: Connection reset by
            // peer"). We have read them while sniffing, so ask for the reset.
            // SO_LINGER 0 closes at once with a RST (no blocking on drop).
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            self.server
                .downstream_cx_active
                .fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let fc: &FilterChain = if ci == DEFAULT_CHAIN {
            l.default_filter_chain
                .as_ref()
                .unwrap_or(&l.filter_chains[0])
        } else {
            &l.filter_chains[ci]
        };
        let mut info = ConnInfo {
            src,
            dst,
            listener: li,
            chain: ci,
            sni: sniffed.sni.clone(),
            peer_sans: vec![],
            peer_cert: None,
            local_uris: vec![],
            negotiated_alpn: None,
            sniffed_alpn: sniffed.alpn.clone(),
        };
        let rewound: BoxIo = Box::new(Rewind::new(sniffed.buf, stream));
        let io: BoxIo = match (&fc.transport_socket, snap.chain_tls.get(&(li, ci))) {
            (Some(_), Some(Ok(server_tls))) => {
                info.local_uris = server_tls.local_uris.clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(server_tls.config.clone());
                match acceptor.accept(rewound).await {
                    Ok(tls) => {
                        let (_, session) = tls.get_ref();
                        info.negotiated_alpn = session
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned());
                        if let Some(certs) = session.peer_certificates() {
                            if let Some(c) = certs.first() {
                                info.peer_sans = crate::tls::subject_alt_names(c);
                                info.peer_cert = Some(crate::tls::cert_details(c));
                            }
                        }
                        Box::new(tls)
                    }
                    Err(e) => {
                        tracing::debug!("{}: TLS handshake failed: {e}", self.id);
                        self.server
                            .downstream_cx_active
                            .fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            (Some(_), _) => {
                // Missing secret: Envoy would not have warmed this chain.
                self.server
                    .downstream_cx_active
                    .fetch_sub(1, Ordering::Relaxed);
                return;
            }
            (None, _) => rewound,
        };
        self.clone().run_filters(io, fc, info, snap.clone()).await;
        self.server
            .downstream_cx_active
            .fetch_sub(1, Ordering::Relaxed);
    }

    async fn run_filters(
        self: Arc<Self>,
        mut io: BoxIo,
        fc: &FilterChain,
        info: ConnInfo,
        snap: Arc<Snapshot>,
    ) {
        let inbound = snap.is_inbound(info.listener);
        for f in &fc.filters {
            match &f.typed_config {
                NetworkFilterConfig::HttpConnectionManager(h) => {
                    crate::http::serve(self.clone(), io, h.as_ref().clone(), info, inbound).await;
                    return;
                }
                NetworkFilterConfig::TcpProxy(t) => {
                    crate::tcp::proxy(self.clone(), io, t.clone(), info).await;
                    return;
                }
                NetworkFilterConfig::Opaque(_) => {}
                NetworkFilterConfig::Rbac(rbac) => {
                    if rbac.decision == meshsim_tables::RbacDecision::DenyAll {
                        // Envoy's RBAC filter decides on the first data, then
                        // closes without a response.
                        let mut first = [0u8; 4096];
                        let _ =
                            tokio::time::timeout(Duration::from_millis(200), io.read(&mut first))
                                .await;
                        let _ = io.shutdown().await;
                        crate::tcp::log_rbac_denied(&self, &info);
                        return;
                    }
                }
            }
        }
    }
}
