//! Envoy access logs: one [`LogEntry`] per request (HTTP) or connection
//! (TCP), rendered with Istio's default text format, JSON encoding, or a
//! custom `accessLogFormat` of Envoy command operators.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshsim_tables::AccessLogConfig;

pub use meshsim_tables::accesslog::{ISTIO_DEFAULT_FORMAT, ISTIO_JSON_FIELDS};

/// Envoy response flags. Declared in the order Envoy printed them before
/// 1.30 (stream_info/utility.h `ALL_RESPONSE_STRING_FLAGS`), so sorting
/// gives the legacy order; since envoyproxy/envoy#31719 (Envoy 1.30 =
/// Istio 1.22) they print in the order they were set.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Flag {
    /// UH
    NoHealthyUpstream,
    /// UT
    UpstreamRequestTimeout,
    /// UR
    UpstreamRemoteReset,
    /// UF
    UpstreamConnectionFailure,
    /// UC
    UpstreamConnectionTermination,
    /// UO
    UpstreamOverflow,
    /// NR: no route / no filter chain.
    NoRouteFound,
    /// DI: the fault filter delayed the request.
    DelayInjected,
    /// FI: the fault filter aborted the request.
    FaultInjected,
    /// DC
    DownstreamConnectionTermination,
    /// URX
    UpstreamRetryLimitExceeded,
    /// DPE
    DownstreamProtocolError,
    /// UPE
    UpstreamProtocolError,
    /// NC
    NoClusterFound,
}

/// How `%RESPONSE_FLAGS%` orders several flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlagOrder {
    /// In the order they were set (Envoy ≥ 1.30).
    #[default]
    Set,
    /// Envoy's fixed table order (before 1.30).
    Legacy,
}

impl FlagOrder {
    pub fn for_version(v: meshsim_tables::version::IstioVersion) -> FlagOrder {
        if v.flags_in_set_order() {
            FlagOrder::Set
        } else {
            FlagOrder::Legacy
        }
    }
}

impl Flag {
    pub fn code(self) -> &'static str {
        match self {
            Flag::NoRouteFound => "NR",
            Flag::NoHealthyUpstream => "UH",
            Flag::UpstreamConnectionFailure => "UF",
            Flag::UpstreamOverflow => "UO",
            Flag::DelayInjected => "DI",
            Flag::FaultInjected => "FI",
            Flag::UpstreamRetryLimitExceeded => "URX",
            Flag::NoClusterFound => "NC",
            Flag::UpstreamRequestTimeout => "UT",
            Flag::UpstreamConnectionTermination => "UC",
            Flag::DownstreamConnectionTermination => "DC",
            Flag::DownstreamProtocolError => "DPE",
            Flag::UpstreamProtocolError => "UPE",
            Flag::UpstreamRemoteReset => "UR",
        }
    }
}

/// Everything one access-log line can print (serialisable: a sidecar run
/// as its own process streams its entries to the mesh).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    pub start: Option<SystemTime>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `HTTP/1.1`, `HTTP/2`; `None` for TCP.
    pub protocol: Option<String>,
    /// 0 for TCP.
    pub response_code: u16,
    pub flags: Vec<Flag>,
    pub details: Option<String>,
    pub termination_details: Option<String>,
    pub transport_failure_reason: Option<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    /// Request headers by lowercase name (`:authority` included).
    pub req_headers: BTreeMap<String, String>,
    pub resp_headers: BTreeMap<String, String>,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_local: Option<String>,
    pub downstream_local: Option<SocketAddr>,
    pub downstream_remote: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
}

impl LogEntry {
    /// `%RESPONSE_FLAGS%`: each flag once, in the order they were set
    /// (the logger sorts them first for Envoy before 1.30).
    pub fn flags_string(&self) -> String {
        let mut s = String::new();
        self.write_flags(FlagOrder::Set, &mut s);
        s
    }

    /// `%RESPONSE_FLAGS%` into `out`: each flag once, in the order they
    /// were set, or in Envoy's old table order (`Legacy`).
    pub fn write_flags(&self, order: FlagOrder, out: &mut String) {
        if self.flags.is_empty() {
            out.push('-');
            return;
        }
        let mut seen: Vec<Flag> = Vec::with_capacity(self.flags.len());
        for f in &self.flags {
            if !seen.contains(f) {
                seen.push(*f);
            }
        }
        if order == FlagOrder::Legacy {
            seen.sort();
        }
        for (i, f) in seen.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(f.code());
        }
    }
}

/// One command operator, resolved when the format is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    StartTime,
    /// `%REQ(A?B)%`: the first header present (lowercase names).
    Req(Vec<String>),
    Resp(String),
    Protocol,
    ResponseCode,
    ResponseFlags,
    Details,
    TerminationDetails,
    TransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocal,
    DownstreamLocal,
    DownstreamRemote,
    DownstreamRemoteWithoutPort,
    RequestedServerName,
    RouteName,
    /// An operator meshsim does not know: printed `-`.
    Unknown,
}

impl Op {
    fn parse(name: &str, arg: &str) -> Op {
        match name {
            "START_TIME" => Op::StartTime,
            "REQ" => Op::Req(arg.split('?').map(str::to_ascii_lowercase).collect()),
            "RESP" => Op::Resp(arg.to_ascii_lowercase()),
            "PROTOCOL" => Op::Protocol,
            "RESPONSE_CODE" => Op::ResponseCode,
            "RESPONSE_FLAGS" => Op::ResponseFlags,
            "RESPONSE_CODE_DETAILS" => Op::Details,
            "CONNECTION_TERMINATION_DETAILS" => Op::TerminationDetails,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::TransportFailureReason,
            "BYTES_RECEIVED" => Op::BytesReceived,
            "BYTES_SENT" => Op::BytesSent,
            "DURATION" => Op::Duration,
            "UPSTREAM_HOST" => Op::UpstreamHost,
            "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Op::UpstreamCluster,
            "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocal,
            "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocal,
            "DOWNSTREAM_REMOTE_ADDRESS" => Op::DownstreamRemote,
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteWithoutPort,
            "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
            "ROUTE_NAME" => Op::RouteName,
            _ => Op::Unknown,
        }
    }

    /// Whether JSON prints it as a number.
    fn numeric(&self) -> bool {
        matches!(
            self,
            Op::ResponseCode | Op::BytesReceived | Op::BytesSent | Op::Duration
        )
    }

    /// Writes the value into `out`; `false` when unset (Envoy prints `-`).
    fn write(&self, e: &LogEntry, order: FlagOrder, out: &mut String) -> bool {
        use std::fmt::Write as _;
        let s = |v: &Option<String>, out: &mut String| match v {
            Some(v) => {
                out.push_str(v);
                true
            }
            None => false,
        };
        match self {
            Op::StartTime => match e.start {
                Some(t) => write!(out, "{}", humantime::format_rfc3339_millis(t)).is_ok(),
                None => false,
            },
            Op::Req(names) => {
                for n in names {
                    let v = match n.as_str() {
                        ":method" => e.method.as_deref(),
                        ":path" => e.path.as_deref(),
                        _ => e.req_headers.get(n).map(String::as_str),
                    };
                    if let Some(v) = v {
                        out.push_str(v);
                        return true;
                    }
                }
                false
            }
            Op::Resp(n) => match e.resp_headers.get(n) {
                Some(v) => {
                    out.push_str(v);
                    true
                }
                None => false,
            },
            Op::Protocol => s(&e.protocol, out),
            Op::ResponseCode => write!(out, "{}", e.response_code).is_ok(),
            Op::ResponseFlags => {
                e.write_flags(order, out);
                true
            }
            Op::Details => s(&e.details, out),
            Op::TerminationDetails => s(&e.termination_details, out),
            // formatter: spaces become `_` in this field.
            Op::TransportFailureReason => match &e.transport_failure_reason {
                Some(r) => {
                    out.extend(r.chars().map(|c| if c == ' ' { '_' } else { c }));
                    true
                }
                None => false,
            },
            Op::BytesReceived => write!(out, "{}", e.bytes_received).is_ok(),
            Op::BytesSent => write!(out, "{}", e.bytes_sent).is_ok(),
            Op::Duration => write!(out, "{}", e.duration.as_millis()).is_ok(),
            Op::UpstreamHost => s(&e.upstream_host, out),
            Op::UpstreamCluster => s(&e.upstream_cluster, out),
            Op::UpstreamLocal => s(&e.upstream_local, out),
            Op::DownstreamLocal => match e.downstream_local {
                Some(a) => write!(out, "{a}").is_ok(),
                None => false,
            },
            Op::DownstreamRemote => match e.downstream_remote {
                Some(a) => write!(out, "{a}").is_ok(),
                None => false,
            },
            Op::DownstreamRemoteWithoutPort => match e.downstream_remote {
                Some(a) => write!(out, "{}", a.ip()).is_ok(),
                None => false,
            },
            Op::RequestedServerName => s(&e.requested_server_name, out),
            Op::RouteName => s(&e.route_name, out),
            Op::Unknown => false,
        }
    }
}

/// A piece of a compiled format: text, or an operator with its optional
/// `:N` truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Op(Op, Option<usize>),
}

/// A format string compiled once (Envoy's substitution formatter parses
/// its format when the listener is built, not per request): text and
/// operators, rendered straight into a caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Vec<Piece>);

impl Format {
    pub fn compile(format: &str) -> Format {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(start) = rest.find('%') {
            text.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('%') {
                Some(end)
                    if end > 0
                        && after[..end]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_():?-".contains(c)) =>
                {
                    let op = &after[..end];
                    let (name, arg, max_len) = match op.split_once('(') {
                        Some((n, r)) => {
                            let (arg, tail) = r.split_once(')').unwrap_or((r, ""));
                            let max = tail.strip_prefix(':').and_then(|l| l.parse().ok());
                            (n, arg, max)
                        }
                        None => (op, "", None),
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Op(Op::parse(name, arg), max_len));
                    rest = &after[end + 1..];
                }
                Some(0) => {
                    text.push('%');
                    rest = &after[1..];
                }
                _ => {
                    text.push('%');
                    rest = after;
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Format(pieces)
    }

    /// Appends the line for `e` to `out`.
    pub fn render_into(&self, e: &LogEntry, order: FlagOrder, out: &mut String) {
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Op(op, max) => {
                    let at = out.len();
                    if !op.write(e, order, out) {
                        out.truncate(at);
                        out.push('-');
                    } else if let Some(n) = max {
                        if let Some((i, _)) = out[at..].char_indices().nth(*n) {
                            out.truncate(at + i);
                        }
                    }
                }
            }
        }
    }

    /// A lone operator (`%RESPONSE_CODE%`): JSON prints its value typed.
    fn single(&self) -> Option<&Op> {
        match self.0.as_slice() {
            [Piece::Op(op, None)] => Some(op),
            _ => None,
        }
    }

    /// The header names its `%REQ(...)%` / `%RESP(...)%` operators read.
    fn headers(&self, req: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.0 {
            let names: Vec<&String> = match p {
                Piece::Op(Op::Req(n), _) if req => n.iter().collect(),
                Piece::Op(Op::Resp(n), _) if !req => vec![n],
                _ => continue,
            };
            for n in names {
                if !n.is_empty() && !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}

/// Renders `format` (Envoy command operators between `%`) for `e`.
pub fn render(format: &str, e: &LogEntry) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    Format::compile(format).render_into(e, FlagOrder::Set, &mut out);
    out
}

/// A proxy's logger: the mesh config's encoding and format, compiled
/// once, and a sink.
#[derive(Clone)]
pub struct AccessLogger {
    pub proxy_id: Arc<str>,
    format: Arc<LogFormat>,
    order: FlagOrder,
    sink: Arc<dyn LogSink>,
    /// Request and response headers the format prints (lowercase), so the
    /// request path copies only those.
    req_headers: Arc<[String]>,
    resp_headers: Arc<[String]>,
}

enum LogFormat {
    Off,
    Text(Format),
    Json(Vec<(String, Format)>),
}

/// Where log lines go (stdout of the "container", a test's collector).
pub trait LogSink: Send + Sync + 'static {
    fn write(&self, proxy_id: &str, line: &str, entry: &LogEntry);
}

thread_local! {
    /// Each thread renders lines into one reused buffer.
    static LINE: std::cell::RefCell<(String, String)> = const {
        std::cell::RefCell::new((String::new(), String::new()))
    };
}

impl AccessLogger {
    pub fn new(
        proxy_id: &str,
        cfg: &AccessLogConfig,
        order: FlagOrder,
        sink: Arc<dyn LogSink>,
    ) -> Self {
        let format = if cfg.path.is_empty() {
            LogFormat::Off
        } else if cfg.encoding == meshsim_tables::LogEncoding::Json {
            let fields: Vec<(String, String)> = if cfg.format.trim().starts_with('{') {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&cfg.format)
                    .map(|m| {
                        m.into_iter()
                            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                ISTIO_JSON_FIELDS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            LogFormat::Json(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, Format::compile(&v)))
                    .collect(),
            )
        } else if cfg.format.is_empty() {
            LogFormat::Text(Format::compile(ISTIO_DEFAULT_FORMAT))
        } else {
            let mut f = cfg.format.clone();
            if !f.ends_with('\n') {
                f.push('\n');
            }
            LogFormat::Text(Format::compile(&f))
        };
        let (req_headers, resp_headers) = match &format {
            LogFormat::Off => (Vec::new(), Vec::new()),
            LogFormat::Text(f) => (f.headers(true), f.headers(false)),
            LogFormat::Json(fields) => {
                let mut req: Vec<String> = Vec::new();
                let mut resp: Vec<String> = Vec::new();
                for (_, f) in fields {
                    for h in f.headers(true) {
                        if !req.contains(&h) {
                            req.push(h);
                        }
                    }
                    for h in f.headers(false) {
                        if !resp.contains(&h) {
                            resp.push(h);
                        }
                    }
                }
                (req, resp)
            }
        };
        Self {
            proxy_id: proxy_id.into(),
            format: Arc::new(format),
            order,
            sink,
            req_headers: req_headers.into(),
            resp_headers: resp_headers.into(),
        }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        !matches!(*self.format, LogFormat::Off)
    }

    /// Request headers the format prints (lowercase names).
    pub fn request_headers(&self) -> &[String] {
        &self.req_headers
    }

    /// Response headers the format prints (lowercase names).
    pub fn response_headers(&self) -> &[String] {
        &self.resp_headers
    }

    pub fn log(&self, e: &LogEntry) {
        if !self.enabled() {
            return;
        }
        LINE.with(|buf| {
            let Ok(mut buf) = buf.try_borrow_mut() else {
                return;
            };
            let (line, value) = &mut *buf;
            line.clear();
            match &*self.format {
                LogFormat::Off => return,
                LogFormat::Text(f) => f.render_into(e, self.order, line),
                LogFormat::Json(fields) => self.json_into(fields, e, line, value),
            }
            self.sink.write(&self.proxy_id, line, e);
            // Keep the buffers from growing without bound after a huge line.
            if line.capacity() > 64 * 1024 {
                *line = String::new();
            }
        });
    }

    /// Istio's JSON encoding: one object, keys in the format's order; a
    /// lone operator is its typed value (or `null` when unset).
    fn json_into(
        &self,
        fields: &[(String, Format)],
        e: &LogEntry,
        line: &mut String,
        value: &mut String,
    ) {
        line.push('{');
        for (i, (k, f)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            push_json_str(line, k);
            line.push(':');
            value.clear();
            match f.single() {
                Some(op) => {
                    if !op.write(e, self.order, value) {
                        line.push_str("null");
                    } else if op.numeric() && value.parse::<u64>().is_ok() {
                        line.push_str(value);
                    } else {
                        push_json_str(line, value);
                    }
                }
                None => {
                    f.render_into(e, self.order, value);
                    push_json_str(line, value);
                }
            }
        }
        line.push_str("}\n");
    }
}

/// Appends `s` as a JSON string (serde_json's escaping).
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LogEntry {
        let mut e = LogEntry {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_606_339_578_409)),
            method: Some("GET".into()),
            path: Some("/status/418".into()),
            protocol: Some("HTTP/1.1".into()),
            response_code: 418,
            details: Some("via_upstream".into()),
            bytes_sent: 135,
            duration: Duration::from_millis(4),
            upstream_host: Some("10.44.1.27:80".into()),
            upstream_cluster: Some("outbound|8000||httpbin.foo.svc.cluster.local".into()),
            upstream_local: Some("10.44.1.23:37652".into()),
            downstream_local: "10.0.45.184:8000".parse().ok(),
            downstream_remote: "10.44.1.23:46520".parse().ok(),
            route_name: Some("default".into()),
            ..Default::default()
        };
        e.req_headers
            .insert("user-agent".into(), "curl/7.73.0-DEV".into());
        e.req_headers.insert(
            "x-request-id".into(),
            "84961386-6d84-929d-98bd-c5aee93b5c88".into(),
        );
        e.req_headers
            .insert(":authority".into(), "httpbin:8000".into());
        e.resp_headers
            .insert("x-envoy-upstream-service-time".into(), "4".into());
        e
    }

    /// The client-side line of Istio's access-log documentation, byte for byte.
    #[test]
    fn istio_default_format_matches_istio_docs() {
        let line = render(ISTIO_DEFAULT_FORMAT, &entry());
        assert_eq!(
            line,
            "[2020-11-25T21:26:18.409Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" 0 135 4 4 \"-\" \"curl/7.73.0-DEV\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \"httpbin:8000\" \"10.44.1.27:80\" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default\n"
        );
    }

    /// Collects rendered lines.
    #[derive(Default)]
    struct Lines(std::sync::Mutex<Vec<String>>);
    impl LogSink for Lines {
        fn write(&self, _: &str, line: &str, _: &LogEntry) {
            self.0.lock().expect("lines").push(line.to_string());
        }
    }

    fn flags_line(order: FlagOrder, flags: Vec<Flag>) -> String {
        let sink = Arc::new(Lines::default());
        let cfg = AccessLogConfig {
            path: "/dev/stdout".into(),
            format: "%RESPONSE_FLAGS%".into(),
            ..Default::default()
        };
        AccessLogger::new("p", &cfg, order, sink.clone()).log(&LogEntry {
            flags,
            ..Default::default()
        });
        let line = sink.0.lock().expect("lines")[0].trim_end().to_string();
        line
    }

    /// Envoy ≥ 1.30 prints flags as set (the router sets URX before the
    /// reset's UF); older Envoy in its table order. Each flag once.
    #[test]
    fn flags_print_in_set_order_or_envoys_old_table_order() {
        let set = vec![
            Flag::DelayInjected,
            Flag::UpstreamRetryLimitExceeded,
            Flag::UpstreamConnectionFailure,
            Flag::UpstreamRetryLimitExceeded,
        ];
        assert_eq!(flags_line(FlagOrder::Set, set.clone()), "DI,URX,UF");
        assert_eq!(flags_line(FlagOrder::Legacy, set), "UF,DI,URX");
        assert_eq!(
            flags_line(
                FlagOrder::Legacy,
                vec![
                    Flag::FaultInjected,
                    Flag::DelayInjected,
                    Flag::UpstreamRequestTimeout
                ]
            ),
            "UT,DI,FI"
        );
        assert_eq!(LogEntry::default().flags_string(), "-");
    }

    #[test]
    fn transport_failure_reason_has_spaces_escaped() {
        let e = LogEntry {
            transport_failure_reason: Some("delayed connect error: Connection refused".into()),
            ..Default::default()
        };
        assert_eq!(
            render("%UPSTREAM_TRANSPORT_FAILURE_REASON%", &e),
            "delayed_connect_error:_Connection_refused"
        );
    }

    #[test]
    fn custom_operators_and_truncation() {
        assert_eq!(
            render(
                "%REQ(:AUTHORITY):4% %RESPONSE_CODE% 100%% %UNKNOWN%",
                &entry()
            ),
            "http 418 100% -"
        );
    }
}
