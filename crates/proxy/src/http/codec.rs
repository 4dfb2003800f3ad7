//! The HTTP/1 codec checks Envoy makes before a request exists: an
//! HTTP/1.0 request line is rejected with 426 (`DPE low_version`) unless
//! `accept_http_10`, and bytes that are not HTTP get 400
//! (`DPE http1.codec_error`); both close the connection and log no method
//! or path. The request line is parsed by [`crate::sniff`]'s parser, once:
//! when the HTTP inspector already judged it, that verdict is used.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::LocalReply;
use crate::accesslog::LogEntry;
use crate::io::BoxIo;
use crate::listener::ConnInfo;
use crate::sniff::{scan_request_line, LineVerdict};
use crate::Inner;

/// How long the codec waits for a request line on an idle connection.
const REQUEST_LINE_WAIT: Duration = Duration::from_secs(30);

/// Reads up to the end of the request line (the bytes stay in `buf`).
/// `Incomplete` means the connection closed or went quiet first.
pub(super) async fn read_request_line(io: &mut BoxIo, buf: &mut Vec<u8>) -> LineVerdict {
    let mut chunk = [0u8; 2048];
    loop {
        let v = scan_request_line(buf);
        if v != LineVerdict::Incomplete {
            return v;
        }
        match tokio::time::timeout(REQUEST_LINE_WAIT, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                return if buf.is_empty() {
                    LineVerdict::Incomplete
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
pub(super) async fn codec_reply(
    inner: &Arc<Inner>,
    mut io: BoxIo,
    info: &ConnInfo,
    hcm: &meshsim_tables::HttpConnectionManager,
    reply: LocalReply,
) {
    inner
        .server
        .downstream_cx_protocol_error
        .fetch_add(1, Ordering::Relaxed);
    let status = reply.status();
    let body = reply.body();
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\ndate: {}\r\nserver: {}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        httpdate::fmt_http_date(inner.clock.now()),
        super::server_name(hcm)
    );
    let start = inner.clock.now();
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.shutdown().await;
    let e = LogEntry {
        start: Some(start),
        protocol: Some("HTTP/1.1".into()),
        response_code: status,
        flags: reply.flag().into_iter().collect(),
        details: Some(reply.details()),
        bytes_sent: body.len() as u64,
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    inner.snapshot.load().logger.log(&e);
}
