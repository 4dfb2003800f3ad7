//! Sending the same bytes to both proxies and reading what comes back:
//! the status line, headers and body of each response, and whether the
//! proxy closed the connection afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub status_line: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The proxy closed the connection after this response.
    pub closed: bool,
    /// What happened instead of a response (reset, closed, timeout).
    pub error: Option<String>,
    /// The client's local port: how the access-log line is found.
    pub port: u16,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `prefix` (a PROXY header, or nothing) then `bytes`, reads one
/// response.
pub async fn exchange(addr: SocketAddr, prefix: &[u8], bytes: &[u8]) -> Reply {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Reply {
                error: Some(format!("connect: {e}")),
                ..Default::default()
            }
        }
    };
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = s.write_all(prefix).await;
    let _ = s.write_all(bytes).await;
    Reply {
        port,
        ..read_reply(&mut s).await
    }
}

/// How long a connection may stay open after a response and still count
/// as closed by the proxy: Envoy closes after a local reply with
/// `FlushWriteAndDelay`, waiting up to `delayed_close_timeout` (1 s by
/// default) for the client to close first.
const CLOSE_WAIT: Duration = Duration::from_millis(1300);

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Result<usize, String> {
    let mut b = [0u8; 16384];
    match tokio::time::timeout(wait, s.read(&mut b)).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&b[..n]);
            Ok(n)
        }
        Ok(Err(e)) => Err(match e.kind() {
            std::io::ErrorKind::ConnectionReset => "reset".to_string(),
            _ => e.to_string(),
        }),
        Err(_) => Err("timeout".into()),
    }
}

pub async fn read_reply(s: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match read_more(s, &mut buf, Duration::from_secs(5)).await {
            Ok(0) => {
                return Reply {
                    error: Some(if buf.is_empty() {
                        "closed".into()
                    } else {
                        "closed mid-head".into()
                    }),
                    closed: true,
                    ..Default::default()
                }
            }
            Ok(_) => {}
            Err(e) => {
                return Reply {
                    error: Some(e),
                    closed: true,
                    ..Default::default()
                }
            }
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut r = Reply {
        status_line: lines.next().unwrap_or_default().to_string(),
        ..Default::default()
    };
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            r.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut body = buf[head_end + 4..].to_vec();
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let length = r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let mut failed = None;
    loop {
        let complete = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => false,
        };
        if complete {
            break;
        }
        match read_more(s, &mut body, Duration::from_secs(5)).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    r.body = String::from_utf8_lossy(&body).into_owned();
    if let Some(e) = failed {
        r.error = Some(format!("body: {e}"));
        r.closed = true;
        return r;
    }
    if length.is_some_and(|n| body.len() < n) {
        r.error = Some("body: closed early".into());
        r.closed = true;
        return r;
    }
    // Closed after the response? (EOF or reset soon after.)
    let mut rest = Vec::new();
    r.closed = !matches!(read_more(s, &mut rest, CLOSE_WAIT).await, Err(e) if e == "timeout");
    r
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = b;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
        rest = &rest[i + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    out
}
