//! Collected access logs of every proxy, tagged with the proxy the way
//! `kubectl logs --prefix` tags lines.

use std::collections::VecDeque;
use std::io::Write as _;
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
    /// Shared with the taps (one copy of the text per line).
    pub line: std::sync::Arc<str>,
    pub entry: LogEntry,
}

/// How many of the latest lines a collector keeps for expectations and
/// waiters: a running sandbox or a load test writes lines without end,
/// memory stays bounded (the sink got every line as it came).
pub const WINDOW: usize = 20_000;

/// The kept window: the latest lines, and how many came before them.
#[derive(Default)]
struct Window {
    lines: VecDeque<LogLine>,
    /// Lines written in all (the index the next line gets).
    total: usize,
}

/// Sees every line as it is written (a load test counting flags and
/// destinations without keeping lines): proxy id, line, entry.
pub type Tap = std::sync::Arc<dyn Fn(&str, &std::sync::Arc<str>, &LogEntry) + Send + Sync>;

/// Streams every line to its sink (stderr when `echo`) as it comes and
/// keeps the last [`WINDOW`] lines; indices count every line ever written,
/// so "lines since N" stays meaningful as old lines go.
pub struct LogCollector {
    window: Mutex<Window>,
    written: Notify,
    pub echo: bool,
    cap: usize,
    /// Loopback Hosts already warned about (bounded).
    warned: Mutex<std::collections::BTreeSet<String>>,
    taps: arc_swap::ArcSwap<Vec<Tap>>,
    /// Whether kept lines keep their entries (scenario expectations read
    /// them; a sandbox or load test keeps only the text).
    keep_entries: bool,
    /// The echo: lines batched into one buffer and written when it fills
    /// or on [`LogCollector::flush`] (the mesh flushes every
    /// [`FLUSH_EVERY`]; Envoy's file access log flushes every second).
    out: Mutex<std::io::BufWriter<std::io::Stderr>>,
}

/// How often a running mesh flushes echoed access-log lines.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

impl Drop for LogCollector {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Default for LogCollector {
    fn default() -> Self {
        Self::new(false)
    }
}

impl LogCollector {
    pub fn new(echo: bool) -> Self {
        Self::with_window(echo, WINDOW)
    }

    /// A collector keeping the last `cap` lines.
    pub fn with_window(echo: bool, cap: usize) -> Self {
        Self {
            keep_entries: true,
            out: Mutex::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stderr(),
            )),
            window: Mutex::new(Window::default()),
            written: Notify::new(),
            echo,
            cap: cap.max(1),
            warned: Mutex::new(Default::default()),
            taps: Default::default(),
        }
    }

    /// Kept lines keep only their text (`lines()` gives default entries).
    pub fn without_entries(mut self) -> Self {
        self.keep_entries = false;
        self
    }

    /// Writes out the echoed lines buffered so far.
    pub fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }

    /// Calls `tap` for every line from now on (for the collector's life).
    pub fn tap(&self, tap: Tap) {
        self.taps.rcu(|v| {
            let mut v = Vec::clone(v);
            v.push(tap.clone());
            v
        });
    }

    /// The lines still kept (the last [`WINDOW`]).
    pub fn lines(&self) -> Vec<LogLine> {
        self.since(0)
    }

    /// Lines with index `from` and after that are still kept (for "what
    /// did this request log").
    pub fn since(&self, from: usize) -> Vec<LogLine> {
        self.window
            .lock()
            .map(|w| {
                let first = w.total - w.lines.len();
                w.lines
                    .iter()
                    .skip(from.saturating_sub(first))
                    .cloned()
                    .collect()
            })
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

    /// Lines written in all (not only the kept ones).
    pub fn len(&self) -> usize {
        self.window.lock().map(|w| w.total).unwrap_or(0)
    }

    /// Lines kept now (at most the window).
    pub fn kept(&self) -> usize {
        self.window.lock().map(|w| w.lines.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LogCollector {
    /// A request that reached a sidecar with `Host: 127.0.0.1:PORT` (a
    /// sandbox entry port curled without `--connect-to`): no VirtualService
    /// names that host, so every route was skipped — said once per host.
    fn loopback_host_warning(&self, proxy: &str, entry: &LogEntry) -> Option<String> {
        // The caller's sidecar says it (the server's inbound line follows).
        if entry
            .upstream_cluster
            .as_deref()
            .is_some_and(|c| c.starts_with("inbound|"))
        {
            return None;
        }
        let host = entry.req_headers.get(":authority")?;
        let h = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let loopback = h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return None;
        }
        let mut warned = self.warned.lock().ok()?;
        if warned.len() >= 64 || !warned.insert(host.clone()) {
            return None;
        }
        let pod = proxy.split('.').next().unwrap_or(proxy);
        Some(format!(
            "meshsim: warning: {pod} got a request with Host: {host}, which no VirtualService names: its routes were skipped. Send the service's name (curl --connect-to NAME:PORT:{host} http://NAME:PORT/, or curl -x through the pod's proxy port)."
        ))
    }
}

/// `[pod/sleep-0/istio-proxy] <line>` as `kubectl logs --prefix` prints.
pub fn prefixed(l: &LogLine) -> String {
    let pod = l.proxy.split('.').next().unwrap_or(&l.proxy);
    format!("[pod/{pod}/istio-proxy] {}", l.line.trim_end())
}

impl LogSink for LogCollector {
    fn write(&self, proxy_id: &str, line: &str, entry: &LogEntry) {
        let shared: std::sync::Arc<str> = std::sync::Arc::from(line);
        for t in self.taps.load().iter() {
            t(proxy_id, &shared, entry);
        }
        if self.echo {
            let pod = proxy_id.split('.').next().unwrap_or(proxy_id);
            if let Ok(mut out) = self.out.lock() {
                let _ = writeln!(out, "[pod/{pod}/istio-proxy] {}", line.trim_end());
            }
        }
        let l = LogLine {
            proxy: proxy_id.to_string(),
            line: shared,
            entry: if self.keep_entries {
                entry.clone()
            } else {
                LogEntry::default()
            },
        };
        if self.echo {
            if let Some(w) = self.loopback_host_warning(proxy_id, entry) {
                if let Ok(mut out) = self.out.lock() {
                    let _ = writeln!(out, "{w}");
                }
            }
        }
        if let Ok(mut w) = self.window.lock() {
            if w.lines.len() == self.cap {
                w.lines.pop_front();
            }
            w.lines.push_back(l);
            w.total += 1;
        }
        self.written.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(c: &LogCollector, n: usize) {
        for i in 0..n {
            c.write("p.ns", &format!("line {i}"), &LogEntry::default());
        }
    }

    #[test]
    fn a_loopback_host_is_warned_once_by_the_callers_sidecar() {
        let c = LogCollector::new(false);
        let line = |proxy: &str, cluster: &str, host: &str| {
            let mut entry = LogEntry {
                upstream_cluster: Some(cluster.into()),
                ..Default::default()
            };
            entry.req_headers.insert(":authority".into(), host.into());
            (proxy.to_string(), entry)
        };
        let warn = |(p, e): (String, LogEntry)| c.loopback_host_warning(&p, &e);
        assert!(warn(line("web-0.shop", "inbound|80||", "127.0.0.1:4100")).is_none());
        let w = warn(line("till-0.shop", "PassthroughCluster", "127.0.0.1:4100")).expect("warned");
        assert!(
            w.starts_with("meshsim: warning: till-0 got a request with Host: 127.0.0.1:4100"),
            "{w}"
        );
        assert!(warn(line("till-0.shop", "PassthroughCluster", "127.0.0.1:4100")).is_none());
        assert!(warn(line("till-0.shop", "outbound|80||web", "web.shop:80")).is_none());
    }

    #[test]
    fn keeps_a_bounded_window_with_absolute_indices() {
        let c = LogCollector::with_window(false, 3);
        write(&c, 5);
        assert_eq!(c.len(), 5);
        assert_eq!(c.kept(), 3);
        let lines = |v: Vec<LogLine>| {
            v.into_iter()
                .map(|l| l.line.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(c.lines()), ["line 2", "line 3", "line 4"]);
        assert_eq!(lines(c.since(4)), ["line 4"]);
        // Lines already gone from the window are not invented.
        assert_eq!(lines(c.since(0)).len(), 3);
        assert!(c.since(5).is_empty());
    }
}
