//! The request body on its way upstream (router.cc `decodeData`), streamed,
//! never collected whole:
//!
//! * the attempt in flight reads the downstream body as the client sends
//!   it, with the connection's flow control (nothing is read ahead);
//! * while a retry may need it again, the router also keeps what it
//!   forwarded, up to the retry/shadow buffer limit — the listener's
//!   `per_connection_buffer_limit_bytes`, 1 MiB unless set, which istiod
//!   leaves unset on sidecars. Past the limit Envoy gives up: the cluster's
//!   `retry_or_shadow_abandoned` counts it, the buffer is dropped and no
//!   attempt is retried;
//! * shadows are streaming shadows (Envoy ≥ 1.29's default): each gets the
//!   body's chunks as the attempt reads them, whatever the limit. A shadow
//!   that falls [`SHADOW_QUEUE`] chunks behind is reset (its response was
//!   going to be thrown away anyway);
//! * a body the downstream codec cannot decode (a broken chunk) is the
//!   codec error Envoy answers `400 DPE http1.codec_error`; a client that
//!   goes away mid-body is a downstream disconnect (`DC`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;

/// Envoy's default `per_connection_buffer_limit_bytes` (1 MiB), the
/// retry/shadow buffer limit when the listener sets none.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// Chunks a streaming shadow may fall behind before it is reset.
pub const SHADOW_QUEUE: usize = 64;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with the downstream body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamBodyError {
    /// The codec could not decode it (`http1.codec_error`).
    Codec,
    /// The client went away before its end.
    Disconnect,
}

impl std::fmt::Display for DownstreamBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DownstreamBodyError::Codec => "downstream body: codec error",
            DownstreamBodyError::Disconnect => "downstream body: client disconnected",
        })
    }
}

impl std::error::Error for DownstreamBodyError {}

type ShadowFrame = Result<Frame<Bytes>, BoxError>;

struct State {
    source: Incoming,
    /// Everything read so far, from the start, while buffering.
    chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// Keeping chunks for a retry (a retry policy is in force).
    buffering: bool,
    /// The body outgrew the limit: no more retries.
    overflowed: bool,
    complete: bool,
    error: Option<DownstreamBodyError>,
    /// The attempt allowed to read the source (later attempts replace it).
    primary: u64,
    shadows: Vec<mpsc::Sender<ShadowFrame>>,
}

/// One request's downstream body, shared by its attempts and shadows.
#[derive(Clone)]
pub(super) struct RequestBody {
    state: Arc<Mutex<State>>,
    /// Bytes read from the client (`%BYTES_RECEIVED%`).
    pub received: Arc<AtomicU64>,
}

impl RequestBody {
    pub fn new(source: Incoming) -> Self {
        RequestBody {
            state: Arc::new(Mutex::new(State {
                source,
                chunks: Vec::new(),
                buffered: 0,
                limit: DEFAULT_BUFFER_LIMIT,
                buffering: false,
                overflowed: false,
                complete: false,
                error: None,
                primary: 0,
                shadows: Vec::new(),
            })),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// Keep what is read for retries, up to `limit` bytes.
    pub fn buffer_for_retries(&self, limit: usize) {
        self.with(|s| {
            if s.primary == 0 {
                s.buffering = true;
                s.limit = limit;
            }
        });
    }

    /// The body for the next attempt: the first reads the client; a
    /// retry replays what was kept, then reads on. `None` when a retry
    /// cannot have it (the buffer overflowed, or the body failed).
    pub fn attempt(&self) -> Option<UpstreamBody> {
        let received = self.received.clone();
        self.with(|s| {
            if s.primary > 0 && (!s.buffering || s.overflowed || s.error.is_some()) {
                return None;
            }
            s.primary += 1;
            Some(UpstreamBody(Kind::Attempt {
                state: self.state.clone(),
                generation: s.primary,
                pos: 0,
                received,
            }))
        })
        .flatten()
    }

    /// A streaming shadow's body: the chunks the attempt reads from now
    /// on (a shadow starts with the request, before any is read).
    pub fn shadow(&self) -> UpstreamBody {
        let (tx, rx) = mpsc::channel(SHADOW_QUEUE);
        let done = self
            .with(|s| {
                if s.complete || s.source.is_end_stream() {
                    true
                } else {
                    s.shadows.push(tx);
                    false
                }
            })
            .unwrap_or(true);
        UpstreamBody(if done { Kind::Empty } else { Kind::Shadow(rx) })
    }

    /// Whether the downstream body failed, and how.
    pub fn error(&self) -> Option<DownstreamBodyError> {
        self.with(|s| s.error).flatten()
    }

    /// Whether retrying is off because the body outgrew the buffer.
    pub fn overflowed(&self) -> bool {
        self.with(|s| s.overflowed).unwrap_or(false)
    }
}

/// A request body as one upstream request sends it.
pub struct UpstreamBody(Kind);

impl UpstreamBody {
    /// No body.
    pub fn empty() -> Self {
        UpstreamBody(Kind::Empty)
    }
}

enum Kind {
    Empty,
    Attempt {
        state: Arc<Mutex<State>>,
        generation: u64,
        /// The next kept chunk to replay.
        pos: usize,
        received: Arc<AtomicU64>,
    },
    Shadow(mpsc::Receiver<ShadowFrame>),
}

/// How hyper reports a body the client broke off or garbled.
fn classify(e: &hyper::Error) -> DownstreamBodyError {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return DownstreamBodyError::Disconnect;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    DownstreamBodyError::Codec
                }
                _ => DownstreamBodyError::Disconnect,
            };
        }
        src = s.source();
    }
    if e.is_parse() {
        DownstreamBodyError::Codec
    } else {
        DownstreamBodyError::Disconnect
    }
}

fn poll_attempt(
    s: &mut State,
    generation: u64,
    pos: &mut usize,
    received: &AtomicU64,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if generation != s.primary {
        // A later attempt took over: this one is over.
        return Poll::Ready(Some(Err("superseded by a retry".into())));
    }
    if !s.overflowed && *pos < s.chunks.len() {
        let c = s.chunks[*pos].clone();
        *pos += 1;
        return Poll::Ready(Some(Ok(Frame::data(c))));
    }
    if let Some(e) = s.error {
        return Poll::Ready(Some(Err(Box::new(e))));
    }
    if s.complete {
        return Poll::Ready(None);
    }
    match Pin::new(&mut s.source).poll_frame(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(None) => {
            s.complete = true;
            s.shadows.clear();
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(e))) => {
            let e = classify(&e);
            s.error = Some(e);
            for tx in s.shadows.drain(..) {
                let _ = tx.try_send(Err(Box::new(e)));
            }
            Poll::Ready(Some(Err(Box::new(e))))
        }
        Poll::Ready(Some(Ok(frame))) => {
            if let Some(d) = frame.data_ref() {
                received.fetch_add(d.len() as u64, Ordering::Relaxed);
                if s.buffering && !s.overflowed {
                    s.buffered += d.len();
                    if s.buffered > s.limit {
                        // router.cc: "exceeds buffer limit ... Give up on
                        // the retry/shadow".
                        s.overflowed = true;
                        s.chunks = Vec::new();
                    } else {
                        s.chunks.push(d.clone());
                        *pos = s.chunks.len();
                    }
                }
                // A shadow that cannot keep up is dropped (reset).
                s.shadows
                    .retain(|tx| tx.try_send(Ok(Frame::data(d.clone()))).is_ok());
            }
            Poll::Ready(Some(Ok(frame)))
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Shadow(rx) => rx.poll_recv(cx),
            Kind::Attempt {
                state,
                generation,
                pos,
                received,
            } => match state.lock() {
                Ok(mut s) => poll_attempt(&mut s, *generation, pos, received, cx),
                Err(_) => Poll::Ready(Some(Err("request body state poisoned".into()))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Shadow(_) => false,
            Kind::Attempt { state, pos, .. } => state.lock().is_ok_and(|s| {
                (s.overflowed || *pos >= s.chunks.len())
                    && (s.complete || (s.error.is_none() && s.source.is_end_stream()))
            }),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Shadow(_) => SizeHint::default(),
            Kind::Attempt { state, pos, .. } => state
                .lock()
                .map(|s| {
                    if *pos == 0 && s.buffered == 0 && !s.complete {
                        // Nothing read yet: what the client announced.
                        s.source.size_hint()
                    } else if s.complete && !s.overflowed {
                        let rest: usize = s.chunks[(*pos).min(s.chunks.len())..]
                            .iter()
                            .map(Bytes::len)
                            .sum();
                        SizeHint::with_exact(rest as u64)
                    } else {
                        SizeHint::default()
                    }
                })
                .unwrap_or_default(),
        }
    }
}
