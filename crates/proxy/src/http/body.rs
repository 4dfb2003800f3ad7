//! The response body on its way downstream: counts the bytes sent and
//! writes the request's access-log line when the response is done (or the
//! client went away).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};

use super::Body;
use crate::accesslog::{AccessLogger, LogEntry};

/// Counts the bytes sent downstream and writes the access-log line when the
/// response is done (or abandoned).
pub(super) struct LoggedBody {
    pub(super) inner: Body,
    pub(super) entry: Option<LogEntry>,
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
        if let Poll::Ready(Some(Ok(f))) = &p {
            if let Some(d) = f.data_ref() {
                self.sent += d.len() as u64;
            }
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

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.bytes_sent = self.sent;
            e.duration = self.started.elapsed();
            self.logger.log(&e);
        }
    }
}
