//! Accepting connections: the original destination (a PROXY protocol v2
//! header from the mesh's capture, like iptables' SO_ORIGINAL_DST),
//! listener selection, the inspectors, Envoy's filter-chain match, TLS
//! termination, then the chain's network filters.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meshsim_tables::filter_chain_match::{select_filter_chain, ConnectionInfo};
use meshsim_tables::{FilterChain, NetworkFilterConfig, RbacDecision, TransportProtocol};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::accesslog::{Flag, LogEntry};
use crate::io::{BoxIo, Rewind};
use crate::snapshot::{Snapshot, DEFAULT_CHAIN};
use crate::sniff::{needs_sniffing, sniff, LineVerdict, Sniffed};
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
    /// A gateway pod reached inside the mesh: no iptables redirect, the
    /// listener bound on the destination port (from the PROXY header).
    Direct,
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
    /// The request line, when the HTTP inspector already parsed it.
    pub request_line: Option<LineVerdict>,
}

/// How long a capture port waits for the PROXY header the mesh's capture
/// writes first (meshsim's stand-in for iptables; Envoy's listener filter
/// default, 15 s).
pub const PROXY_HEADER_WAIT: Duration = meshsim_tables::ENVOY_LISTENER_FILTERS_TIMEOUT;

/// Counts a connection as active while it lives.
struct ActiveConn(Arc<Inner>);

impl ActiveConn {
    fn new(inner: &Arc<Inner>) -> Self {
        inner
            .server
            .downstream_cx_total
            .fetch_add(1, Ordering::Relaxed);
        inner
            .server
            .downstream_cx_active
            .fetch_add(1, Ordering::Relaxed);
        Self(inner.clone())
    }
}

impl Drop for ActiveConn {
    fn drop(&mut self) {
        self.0
            .server
            .downstream_cx_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Proxy {
    /// Serves a capture socket: each connection starts with a PROXY v2
    /// header carrying the original source and destination. The accept
    /// loop and its connections live in the proxy's scope.
    pub fn serve_capture(&self, listener: TcpListener, capture: Capture) {
        let inner = self.inner.clone();
        self.inner.scope.spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        inner.io_failed(&e).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let inner2 = inner.clone();
                inner.scope.spawn(async move {
                    let mut stream = stream;
                    let header =
                        tokio::time::timeout(PROXY_HEADER_WAIT, read_proxy_header(&mut stream));
                    match header.await {
                        Ok(Ok((src, dst))) => inner2.handle(stream, src, dst, capture).await,
                        Ok(Err(e)) => tracing::debug!("{}: bad PROXY header: {e}", inner2.id),
                        Err(_) => tracing::debug!("{}: no PROXY header in time", inner2.id),
                    }
                });
            }
        });
    }

    /// A connection whose original source and destination are known
    /// without a PROXY header (a plain listener standing for a port).
    pub fn accept_with(
        &self,
        stream: TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        capture: Capture,
    ) {
        let _ = stream.set_nodelay(true);
        let inner = self.inner.clone();
        self.inner
            .scope
            .spawn(async move { inner.handle(stream, src, dst, capture).await });
    }

    /// A connection accepted on a port opened to the outside (a gateway's
    /// `0.0.0.0:8080` as a real localhost port): no header, the destination
    /// is the proxy's own IP. The listener belongs to whoever exposes the
    /// port; the connection belongs to this proxy.
    pub fn accept_port(&self, stream: TcpStream, peer: SocketAddr, port: u16) {
        let dst = SocketAddr::new(self.inner.ip, port);
        self.accept_with(stream, peer, dst, Capture::Port(port));
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

impl Inner {
    /// One accepted connection: listener, inspectors, chain, TLS, filters.
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut stream: TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        capture: Capture,
    ) {
        let _active = ActiveConn::new(&self);
        let snap = self.snapshot.load_full();
        let listener = match capture {
            Capture::Outbound => snap.outbound_listener(dst.ip(), dst.port()),
            Capture::Inbound => snap.virtual_inbound,
            Capture::Port(p) => snap.port_listener(p),
            Capture::Direct => snap.port_listener(dst.port()),
        };
        // No listener: the kernel would refuse; we close.
        let Some(li) = listener else { return };
        let l = snap.listener(li);
        let sniffed = if needs_sniffing(l) {
            match sniff(&mut stream, l.listener_filters_timeout.deadline()).await {
                Ok(s) => s,
                // listener_filters_timeout passed: closed, nothing logged
                // (the listener's access log keeps only NR lines).
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    self.server
                        .downstream_pre_cx_timeout
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => Sniffed::default(),
            }
        } else {
            Sniffed {
                transport: TransportProtocol::RawBuffer,
                ..Default::default()
            }
        };
        let conn = ConnectionInfo {
            destination_port: dst.port(),
            destination_ip: Some(dst.ip()),
            server_name: sniffed.sni.as_deref(),
            transport_protocol: sniffed.transport,
            application_protocols: &sniffed.alpn,
        };
        let chain = select_filter_chain(l, &conn)
            .or_else(|| l.default_filter_chain.as_ref().map(|_| DEFAULT_CHAIN));
        let Some(ci) = chain else {
            self.no_filter_chain(stream, src, dst, &sniffed);
            return;
        };
        let Some(fc) = snap.chain(li, ci) else { return };
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
            sniffed_alpn: sniffed.alpn,
            request_line: sniffed.request_line,
        };
        // Bytes the inspectors read that Envoy would only have peeked: if the
        // TCP proxy closes without an upstream they are unread, and the
        // kernel resets the connection. A duplicate of the socket lets it
        // ask for that reset after our read.
        let unread = (fc.transport_socket.is_none() && !sniffed.buf.is_empty())
            .then(|| stream.as_fd().try_clone_to_owned().ok())
            .flatten();
        let rewound: BoxIo = Box::new(Rewind::new(sniffed.buf, stream));
        let io = match fc.transport_socket {
            None => rewound,
            Some(_) => match self.terminate_tls(&snap, li, ci, rewound, &mut info).await {
                Some(io) => io,
                None => return,
            },
        };
        self.run_filters(io, fc, info, unread).await;
    }

    /// Envoy closes the connection and logs `NR filter_chain_not_found`.
    fn no_filter_chain(&self, stream: TcpStream, src: SocketAddr, dst: SocketAddr, s: &Sniffed) {
        self.server
            .no_filter_chain_match
            .fetch_add(1, Ordering::Relaxed);
        let e = LogEntry {
            start: Some(self.clock.now()),
            flags: vec![Flag::NoRouteFound],
            details: Some("filter_chain_not_found".into()),
            // The inspectors only peeked: nothing was received.
            bytes_received: 0,
            downstream_local: Some(dst),
            downstream_remote: Some(src),
            requested_server_name: s.sni.clone(),
            ..Default::default()
        };
        self.snapshot.load().logger.log(&e);
        // Envoy closes with the client's bytes unread: the kernel answers
        // with a reset (curl: "(56) Recv failure: Connection reset by
        // peer"). We have read them while sniffing, so ask for the reset.
        // SO_LINGER 0 closes at once with a RST (no blocking on drop).
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        drop(stream);
    }

    /// The chain's `transport_socket`: a TLS handshake with the context
    /// built at push time. `None`: the connection is over (a handshake
    /// failure, or a chain Envoy would not have warmed for lack of a secret).
    async fn terminate_tls(
        &self,
        snap: &Snapshot,
        li: usize,
        ci: usize,
        io: BoxIo,
        info: &mut ConnInfo,
    ) -> Option<BoxIo> {
        let server_tls = snap.chain_tls.get(&(li, ci))?.as_ref().ok()?;
        info.local_uris = server_tls.local_uris.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_tls.config.clone());
        match acceptor.accept(io).await {
            Ok(tls) => {
                let (_, session) = tls.get_ref();
                info.negotiated_alpn = session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                if let Some(c) = session.peer_certificates().and_then(|c| c.first()) {
                    info.peer_sans = crate::tls::subject_alt_names(c);
                    info.peer_cert = Some(crate::tls::cert_details(c));
                }
                Some(Box::new(tls))
            }
            Err(e) => {
                tracing::debug!("{}: TLS handshake failed: {e}", self.id);
                None
            }
        }
    }

    /// The chain's network filters in order; the terminal one (HTTP
    /// connection manager or TCP proxy) owns the connection from there.
    async fn run_filters(
        self: Arc<Self>,
        io: BoxIo,
        fc: &FilterChain,
        info: ConnInfo,
        unread: Option<OwnedFd>,
    ) {
        for f in &fc.filters {
            match &f.typed_config {
                NetworkFilterConfig::HttpConnectionManager(h) => {
                    crate::http::serve(self.clone(), io, h.as_ref().clone(), info).await;
                    return;
                }
                NetworkFilterConfig::TcpProxy(t) => {
                    crate::tcp::proxy(self.clone(), io, t.clone(), info, unread).await;
                    return;
                }
                NetworkFilterConfig::Rbac(rbac) if rbac.decision == RbacDecision::DenyAll => {
                    crate::tcp::rbac_deny(&self, io, &info).await;
                    return;
                }
                NetworkFilterConfig::Rbac(_) | NetworkFilterConfig::Opaque(_) => {}
            }
        }
    }
}
