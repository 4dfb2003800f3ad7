//! The response body on its way downstream: counts the bytes sent and
//! writes the request's access-log line when the response is done (or the
//! client went away). An upstream that fails mid-body is logged as Envoy
//! logs it: `UPE upstream_reset_after_response_started{protocol_error}`
//! for a truncated or unparseable body, `UC ...{connection_termination}`
//! for a reset.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};

use super::Body;
use crate::accesslog::{AccessLogger, Flag, LogEntry};

/// Counts the bytes sent downstream and writes the access-log line when the
/// response is done (or abandoned).
pub(super) struct LoggedBody {
    pub(super) inner: Body,
    pub(super) entry: Option<LogEntry>,
    /// The request body's byte count, read when the line is written.
    pub(super) received: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Where `istio_requests_total` is counted, and how: inbound (with
    /// the caller's mTLS identity) or not.
    pub(super) metrics: Option<(Arc<crate::Inner>, bool, Option<String>)>,
    pub(super) logger: Arc<AccessLogger>,
    pub(super) started: tokio::time::Instant,
    pub(super) sent: u64,
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        match &p {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.sent += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let (flag, reason) = if truncated(e) {
                    (Flag::UpstreamProtocolError, "protocol_error")
                } else {
                    (
                        Flag::UpstreamConnectionTermination,
                        "connection_termination",
                    )
                };
                if let Some(entry) = self.entry.as_mut() {
                    entry.flags.push(flag);
                    entry.details =
                        Some(format!("upstream_reset_after_response_started{{{reason}}}"));
                }
            }
            _ => {}
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body cut short (EOF before its length or last chunk) or unparseable:
/// Envoy's codec calls that a protocol error; a reset is a termination.
fn truncated(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_parse() {
        return true;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::UnexpectedEof;
        }
        src = s.source();
    }
    false
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.bytes_sent = self.sent;
            if let Some(r) = &self.received {
                e.bytes_received = r.load(std::sync::atomic::Ordering::Relaxed);
            }
            e.duration = self.started.elapsed();
            self.logger.log(&e);
            if let Some((inner, inbound, peer)) = self.metrics.take() {
                let seen = crate::metrics::Seen {
                    inbound,
                    entry: &e,
                    peer: peer.as_deref(),
                };
                inner
                    .metrics
                    .record(&inner.snapshot.load().tables.proxy, &seen);
            }
        }
    }
}
