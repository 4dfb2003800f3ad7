//! The listener filters that look at a connection's first bytes: Envoy's
//! `tls_inspector` (SNI and ALPN from a ClientHello) and `http_inspector`
//! (HTTP/1.x or HTTP/2 prior knowledge). The bytes read are kept so the
//! chosen filter chain sees them again, and the request line is parsed
//! once: the HTTP connection manager reuses the verdict.

use std::io;
use std::time::Duration;

use meshsim_tables::{Listener, TransportProtocol};
use tokio::io::AsyncReadExt;

/// What the listener filters learned about a connection.
#[derive(Debug, Clone, Default)]
pub struct Sniffed {
    pub transport: TransportProtocol,
    pub sni: Option<String>,
    /// ALPN offered in a ClientHello, or `http/1.1` / `http/1.0` / `h2c`
    /// from the HTTP inspector.
    pub alpn: Vec<String>,
    /// The request line, when plaintext bytes held a complete one.
    pub request_line: Option<LineVerdict>,
    pub buf: Vec<u8>,
}

/// The first line of a plaintext connection, as Envoy's HTTP/1 codec
/// judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineVerdict {
    /// Not a whole line yet, and nothing wrong so far.
    Incomplete,
    /// The HTTP/2 connection preface (prior knowledge).
    H2Preface,
    Http11 {
        /// The method is upper-case letters (what http_inspector accepts).
        upper: bool,
    },
    Http10 {
        upper: bool,
    },
    /// Not an HTTP/1.x request line: the codec answers 400.
    Garbage,
}

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `buf` starts the HTTP/2 connection preface: `Some(true)` when
/// it holds all of it, `Some(false)` for a part, `None` when it is not one.
pub fn h2_preface(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(H2_PREFACE.len());
    (n > 0 && buf[..n] == H2_PREFACE[..n]).then_some(buf.len() >= H2_PREFACE.len())
}

/// The longest request line the codec waits for before calling it garbage.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Parses the start of a plaintext stream: the one request-line parser
/// both http_inspector and the HTTP/1 codec use.
pub fn scan_request_line(buf: &[u8]) -> LineVerdict {
    match h2_preface(buf) {
        Some(true) => return LineVerdict::H2Preface,
        Some(false) => return LineVerdict::Incomplete,
        None => {}
    }
    let method_len = buf.iter().position(|b| *b == b' ').unwrap_or(buf.len());
    let method = &buf[..method_len];
    if !method.iter().all(|b| b.is_ascii_alphabetic() || *b == b'-') {
        return LineVerdict::Garbage;
    }
    let upper = !method.is_empty() && method.iter().all(u8::is_ascii_uppercase);
    // A bare LF ends the line too (the codec accepts it).
    let Some(lf) = buf.iter().position(|b| *b == b'\n') else {
        return if buf.len() > MAX_REQUEST_LINE {
            LineVerdict::Garbage
        } else {
            LineVerdict::Incomplete
        };
    };
    let line = buf[..lf].strip_suffix(b"\r").unwrap_or(&buf[..lf]);
    let mut parts = line.split(|b| *b == b' ');
    let (m, t, v) = (parts.next(), parts.next(), parts.next());
    match (m, t, v) {
        (Some(m), Some(_), Some(b"HTTP/1.1")) if !m.is_empty() => LineVerdict::Http11 { upper },
        (Some(m), Some(_), Some(b"HTTP/1.0")) if !m.is_empty() => LineVerdict::Http10 { upper },
        _ => LineVerdict::Garbage,
    }
}

/// Whether any chain of the listener matches on what the inspectors find
/// (Envoy adds tls_inspector / http_inspector for those).
pub fn needs_sniffing(l: &Listener) -> bool {
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

/// tls_inspector + http_inspector: reads (and keeps) the first bytes,
/// until a verdict. `timeout` is the listener's `listener_filters_timeout`
/// with its `continue_on_listener_filters_timeout`: `None` waits as long
/// as the client takes (istiod's sidecars); when it passes, the connection
/// goes on with what was learned, or fails with `TimedOut` (to be closed,
/// as Envoy's `ActiveTcpSocket::onTimeout` closes it).
pub async fn sniff<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    timeout: Option<(Duration, bool)>,
) -> io::Result<Sniffed> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let deadline = timeout.map(|(t, go_on)| (tokio::time::Instant::now() + t, go_on));
    loop {
        let (n, timed_out) = match deadline {
            None => (s.read(&mut chunk).await?, false),
            Some((d, go_on)) => match tokio::time::timeout_at(d, s.read(&mut chunk)).await {
                Ok(r) => (r?, false),
                Err(_) if go_on => (0, true),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "listener filters timed out",
                    ))
                }
            },
        };
        if n == 0 && buf.is_empty() {
            return Ok(raw(buf, None));
        }
        buf.extend_from_slice(&chunk[..n]);
        let done = n == 0 || timed_out || buf.len() >= 16 * 1024;
        if buf[0] == 0x16 {
            match client_hello(&buf) {
                Some(Some(s)) => return Ok(s.with(buf)),
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
        let line = scan_request_line(&buf);
        let alpn: Option<Vec<String>> = match line {
            LineVerdict::H2Preface => Some(vec!["h2c".into()]),
            LineVerdict::Http11 { upper: true } => Some(vec!["http/1.1".into()]),
            LineVerdict::Http10 { upper: true } => Some(vec!["http/1.0".into()]),
            LineVerdict::Http11 { .. } | LineVerdict::Http10 { .. } | LineVerdict::Garbage => {
                Some(vec![])
            }
            LineVerdict::Incomplete => None,
        };
        let verdict = (line != LineVerdict::Incomplete).then_some(line);
        match alpn {
            Some(alpn) => {
                return Ok(Sniffed {
                    alpn,
                    ..raw(buf, verdict)
                })
            }
            // http_inspector gives up on a method that is not upper case.
            None if done || !could_be_http(&buf) => return Ok(raw(buf, verdict)),
            None => {}
        }
    }
}

fn raw(buf: Vec<u8>, request_line: Option<LineVerdict>) -> Sniffed {
    Sniffed {
        transport: TransportProtocol::RawBuffer,
        request_line,
        buf,
        ..Default::default()
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

/// What a ClientHello says; `Some(None)`: not complete yet; `None`: broken.
struct Hello {
    sni: Option<String>,
    alpn: Vec<String>,
}

impl Hello {
    fn with(self, buf: Vec<u8>) -> Sniffed {
        Sniffed {
            transport: TransportProtocol::Tls,
            sni: self.sni,
            alpn: self.alpn,
            request_line: None,
            buf,
        }
    }
}

fn client_hello(buf: &[u8]) -> Option<Option<Hello>> {
    let mut acc = rustls::server::Acceptor::default();
    let mut rd: &[u8] = buf;
    acc.read_tls(&mut rd).ok()?;
    match acc.accept() {
        Ok(Some(accepted)) => {
            let ch = accepted.client_hello();
            let sni = ch.server_name().map(|s| s.to_ascii_lowercase());
            let alpn = ch
                .alpn()
                .map(|it| {
                    it.map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            Some(Some(Hello { sni, alpn }))
        }
        Ok(None) => Some(None),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_as_the_codec_and_inspector_judge_them() {
        use LineVerdict::*;
        assert_eq!(
            scan_request_line(b"GET / HTTP/1.1\r\n"),
            Http11 { upper: true }
        );
        assert_eq!(
            scan_request_line(b"GET / HTTP/1.0\r\nhost: x\r\n"),
            Http10 { upper: true }
        );
        assert_eq!(
            scan_request_line(b"get / HTTP/1.1\r\n"),
            Http11 { upper: false }
        );
        assert_eq!(scan_request_line(b"GET / HTTP/1"), Incomplete);
        assert_eq!(scan_request_line(b"GET / HTTP/2.0\r\n"), Garbage);
        assert_eq!(scan_request_line(b"\x16\x03\x01"), Garbage);
        assert_eq!(scan_request_line(b"PRI * HTTP/2.0\r\n"), Incomplete);
        assert_eq!(scan_request_line(H2_PREFACE), H2Preface);
        assert_eq!(scan_request_line(b"G3T / HTTP/1.1\r\n"), Garbage);
        // A bare LF ends a line as well (no wait for a CR that never comes).
        assert_eq!(
            scan_request_line(b"GET / HTTP/1.1\nhost: x\n"),
            Http11 { upper: true }
        );
    }
}
