//! Collected access logs of every proxy, tagged with the proxy the way
//! `kubectl logs --prefix` tags lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use meshsim_proxy::accesslog::{LogEntry, LogSink};

/// A request's log lines are all written once no new line came for this long.
pub const SETTLE_QUIET: Duration = Duration::from_millis(30);
/// Give up waiting for a first line after this long.
pub const SETTLE_MAX: Duration = Duration::from_millis(800);

#[derive(Debug, Clone)]
pub struct LogLine {
    pub proxy: String,
    pub line: String,
    pub entry: LogEntry,
}

/// Keeps every line; optionally prints them to stderr as they come.
#[derive(Default)]
pub struct LogCollector {
    lines: Mutex<Vec<LogLine>>,
    written: Notify,
    pub echo: bool,
}

impl LogCollector {
    pub fn new(echo: bool) -> Self {
        Self {
            lines: Mutex::new(Vec::new()),
            written: Notify::new(),
            echo,
        }
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Lines after the first `from` (for "what did this request log").
    pub fn since(&self, from: usize) -> Vec<LogLine> {
        self.lines
            .lock()
            .map(|l| l.iter().skip(from).cloned().collect())
            .unwrap_or_default()
    }

    /// Lines after the first `from`, once the proxies are done writing for
    /// now: woken by each new line, it returns after [`SETTLE_QUIET`]
    /// without one (at least one line must have come, or [`SETTLE_MAX`]
    /// passed).
    pub async fn settle(&self, from: usize) -> Vec<LogLine> {
        let (quiet, max) = (SETTLE_QUIET, SETTLE_MAX);
        let deadline = Instant::now() + max;
        loop {
            let notified = self.written.notified();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let got_one = self.len() > from;
            let wait = if got_one {
                quiet.min(remaining)
            } else {
                remaining
            };
            if tokio::time::timeout(wait, notified).await.is_err() {
                break;
            }
        }
        self.since(from)
    }

    pub fn len(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `[pod/sleep-0/istio-proxy] <line>` as `kubectl logs --prefix` prints.
pub fn prefixed(l: &LogLine) -> String {
    let pod = l.proxy.split('.').next().unwrap_or(&l.proxy);
    format!("[pod/{pod}/istio-proxy] {}", l.line.trim_end())
}

impl LogSink for LogCollector {
    fn write(&self, proxy_id: &str, line: &str, entry: &LogEntry) {
        let l = LogLine {
            proxy: proxy_id.to_string(),
            line: line.to_string(),
            entry: entry.clone(),
        };
        if self.echo {
            eprintln!("{}", prefixed(&l));
        }
        if let Ok(mut v) = self.lines.lock() {
            v.push(l);
        }
        self.written.notify_waiters();
    }
}
