//! The HTTP/1 codec checks Envoy makes before a request exists: an
//! HTTP/1.0 request line is rejected with 426 (`DPE low_version`) unless
//! `accept_http_10`, and bytes that are not HTTP get 400
//! (`DPE http1.codec_error`); both close the connection and log no method
//! or path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accesslog::{Flag, LogEntry};
use crate::io::BoxIo;
use crate::listener::ConnInfo;
use crate::Inner;

pub(super) enum LineVerdict {
    Http11,
    Http10,
    Garbage,
    Closed,
}

/// Reads up to the end of the request line (kept in `buf`).
pub(super) async fn read_request_line(io: &mut BoxIo, buf: &mut Vec<u8>) -> LineVerdict {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]);
            let mut parts = line.split(' ');
            let (m, t, v) = (parts.next().unwrap_or(""), parts.next(), parts.next());
            let method_ok =
                !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
            return match (method_ok, t, v) {
                (true, Some(_), Some("HTTP/1.1")) => LineVerdict::Http11,
                (true, Some(_), Some("HTTP/1.0")) => LineVerdict::Http10,
                _ => LineVerdict::Garbage,
            };
        }
        if buf.len() > 64 * 1024
            || (!buf.is_empty()
                && !buf
                    .iter()
                    .take_while(|b| **b != b' ')
                    .all(|b| b.is_ascii_alphabetic() || *b == b'-'))
        {
            return LineVerdict::Garbage;
        }
        match tokio::time::timeout(Duration::from_secs(30), io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                return if buf.is_empty() {
                    LineVerdict::Closed
                } else {
                    LineVerdict::Garbage
                }
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Envoy's codec-level local reply (426 for HTTP/1.0, 400 for garbage): the
/// connection is closed and the log has no method or path.
pub(super) async fn local_codec_reply(
    inner: &Arc<Inner>,
    mut io: BoxIo,
    info: &ConnInfo,
    status: u16,
    body: &str,
    details: &str,
) {
    inner
        .server
        .downstream_cx_protocol_error
        .fetch_add(1, Ordering::Relaxed);
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\ndate: {}\r\nserver: {}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        httpdate::fmt_http_date(SystemTime::now()),
        super::server_name(false)
    );
    let start = SystemTime::now();
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.shutdown().await;
    let e = LogEntry {
        start: Some(start),
        protocol: Some("HTTP/1.1".into()),
        response_code: status,
        flags: vec![Flag::DownstreamProtocolError],
        details: Some(details.into()),
        bytes_sent: body.len() as u64,
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    inner.logger.load().log(&e);
}
