//! The HTTP/1 codec's checks on a connection's first request head, before
//! hyper serves it ([`super::head`] has the rules), and the codec's own
//! local replies: logged with no method or path, `connection: close`, and
//! the connection closed Envoy's way (`FlushWriteAndDelay`: written out,
//! then up to `delayed_close_timeout`, 1 s, for the client to close first).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{check, Head, Limits};
use super::reply::CodecReject;
use super::LocalReply;
use crate::accesslog::LogEntry;
use crate::io::BoxIo;
use crate::listener::ConnInfo;
use crate::Inner;

/// How long a connection may stay without a request: the HCM's
/// `common_http_protocol_options.idle_timeout`, Envoy's default 1 h
/// (istiod sets one only from the proxy's `IDLE_TIMEOUT` metadata). Once a
/// head has begun a stream exists and no timer runs: istiod leaves
/// `request_headers_timeout` unset and sets `stream_idle_timeout: 0s`
/// (listener_builder.go), so a head that never ends is held, as Envoy
/// holds it — bounded by `max_request_headers_kb`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Envoy's default `delayed_close_timeout`.
const DELAYED_CLOSE: Duration = Duration::from_secs(1);

/// Reads until the codec has a verdict on the first head (the bytes stay
/// in `buf`). `Incomplete` means the connection closed or went quiet first.
pub(super) async fn read_head(io: &mut BoxIo, buf: &mut Vec<u8>, limits: &Limits) -> Head {
    let mut chunk = [0u8; 8192];
    loop {
        let v = check(buf, limits);
        if v != Head::Incomplete {
            return v;
        }
        let read = if buf.is_empty() {
            tokio::time::timeout(IDLE_TIMEOUT, io.read(&mut chunk)).await
        } else {
            Ok(io.read(&mut chunk).await)
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                return if buf.is_empty() {
                    Head::Incomplete
                } else {
                    Head::Rejected(CodecReject::Malformed)
                }
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The codec's reply to a head it rejected.
pub(super) async fn codec_reply(
    inner: &Arc<Inner>,
    mut io: BoxIo,
    info: &ConnInfo,
    hcm: &meshsim_tables::HttpConnectionManager,
    reject: CodecReject,
) {
    inner
        .server
        .downstream_cx_protocol_error
        .fetch_add(1, Ordering::Relaxed);
    let reply = LocalReply::Codec(reject);
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
    let _ = io.flush().await;
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
    delayed_close(io).await;
}

/// `FlushWriteAndDelay`: the reply is out; wait (bounded) for the client
/// to close, discarding what it still sends, then close.
pub(super) async fn delayed_close(mut io: BoxIo) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DELAYED_CLOSE, async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let _ = io.shutdown().await;
}
