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
        if self.flags.is_empty() {
            return "-".into();
        }
        let mut seen: Vec<Flag> = Vec::with_capacity(self.flags.len());
        for f in &self.flags {
            if !seen.contains(f) {
                seen.push(*f);
            }
        }
        seen.iter().map(|f| f.code()).collect::<Vec<_>>().join(",")
    }

    /// The value of one command operator, `None` when unset (printed `-`).
    pub fn operator(&self, op: &str) -> Option<String> {
        let (name, arg, max_len) = match op.split_once('(') {
            Some((n, rest)) => {
                let (arg, after) = rest.split_once(')').unwrap_or((rest, ""));
                (
                    n,
                    arg,
                    after
                        .strip_prefix(':')
                        .and_then(|l| l.parse::<usize>().ok()),
                )
            }
            None => (op, "", None),
        };
        let v = self.operator_value(name, arg);
        match max_len {
            Some(n) => v.map(|s| s.chars().take(n).collect()),
            None => v,
        }
    }

    fn operator_value(&self, name: &str, arg: &str) -> Option<String> {
        match name {
            "START_TIME" => self
                .start
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            "REQ" => {
                let mut v = None;
                for h in arg.split('?') {
                    let key = h.to_ascii_lowercase();
                    let got = match key.as_str() {
                        ":method" => self.method.clone(),
                        ":path" => self.path.clone(),
                        _ => self.req_headers.get(&key).cloned(),
                    };
                    if got.is_some() {
                        v = got;
                        break;
                    }
                }
                v
            }
            "RESP" => self.resp_headers.get(&arg.to_ascii_lowercase()).cloned(),
            "PROTOCOL" => self.protocol.clone(),
            "RESPONSE_CODE" => Some(self.response_code.to_string()),
            "RESPONSE_FLAGS" => Some(self.flags_string()),
            "RESPONSE_CODE_DETAILS" => self.details.clone(),
            "CONNECTION_TERMINATION_DETAILS" => self.termination_details.clone(),
            // formatter: spaces become `_` in this field.
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => self
                .transport_failure_reason
                .as_ref()
                .map(|r| r.replace(' ', "_")),
            "BYTES_RECEIVED" => Some(self.bytes_received.to_string()),
            "BYTES_SENT" => Some(self.bytes_sent.to_string()),
            "DURATION" => Some(self.duration.as_millis().to_string()),
            "UPSTREAM_HOST" => self.upstream_host.clone(),
            "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => self.upstream_cluster.clone(),
            "UPSTREAM_LOCAL_ADDRESS" => self.upstream_local.clone(),
            "DOWNSTREAM_LOCAL_ADDRESS" => self.downstream_local.map(|a| a.to_string()),
            "DOWNSTREAM_REMOTE_ADDRESS" => self.downstream_remote.map(|a| a.to_string()),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                self.downstream_remote.map(|a| a.ip().to_string())
            }
            "REQUESTED_SERVER_NAME" => self.requested_server_name.clone(),
            "ROUTE_NAME" => self.route_name.clone(),
            _ => None,
        }
    }
}

/// Renders `format` (Envoy command operators between `%`) for `e`.
pub fn render(format: &str, e: &LogEntry) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end)
                if end > 0
                    && after[..end].chars().all(|c| {
                        c.is_ascii_uppercase()
                            || c.is_ascii_digit()
                            || "_():?-".contains(c)
                            || c.is_ascii_lowercase()
                    }) =>
            {
                out.push_str(&e.operator(&after[..end]).unwrap_or_else(|| "-".into()));
                rest = &after[end + 1..];
            }
            Some(0) => {
                out.push('%');
                rest = &after[1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A proxy's logger: the mesh config's encoding and format, and a sink.
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

/// Header names used by `%REQ(...)%` / `%RESP(...)%` operators in `text`.
fn headers_used(text: &str, op: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    let pat = format!("%{op}(");
    while let Some(i) = rest.find(&pat) {
        let after = &rest[i + pat.len()..];
        let Some(end) = after.find(')') else { break };
        for h in after[..end].split('?') {
            let h = h.to_ascii_lowercase();
            if !h.is_empty() && !out.contains(&h) {
                out.push(h);
            }
        }
        rest = &after[end..];
    }
    out
}

enum LogFormat {
    Off,
    Text(String),
    Json(Vec<(String, String)>),
}

/// Where log lines go (stdout of the "container", a test's collector).
pub trait LogSink: Send + Sync + 'static {
    fn write(&self, proxy_id: &str, line: &str, entry: &LogEntry);
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
            if cfg.format.trim().starts_with('{') {
                let fields =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&cfg.format)
                        .map(|m| {
                            m.into_iter()
                                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                LogFormat::Json(fields)
            } else {
                LogFormat::Json(
                    ISTIO_JSON_FIELDS
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            }
        } else if cfg.format.is_empty() {
            LogFormat::Text(ISTIO_DEFAULT_FORMAT.to_string())
        } else {
            let mut f = cfg.format.clone();
            if !f.ends_with('\n') {
                f.push('\n');
            }
            LogFormat::Text(f)
        };
        let all_text = match &format {
            LogFormat::Off => String::new(),
            LogFormat::Text(t) => t.clone(),
            LogFormat::Json(fields) => fields
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let req_headers: Arc<[String]> = headers_used(&all_text, "REQ").into();
        let resp_headers: Arc<[String]> = headers_used(&all_text, "RESP").into();
        Self {
            proxy_id: proxy_id.into(),
            format: Arc::new(format),
            order,
            sink,
            req_headers,
            resp_headers,
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
        let sorted;
        let e = if self.order == FlagOrder::Legacy && e.flags.len() > 1 {
            let mut c = e.clone();
            c.flags.sort();
            sorted = c;
            &sorted
        } else {
            e
        };
        let line = match &*self.format {
            LogFormat::Off => return,
            LogFormat::Text(f) => render(f, e),
            LogFormat::Json(fields) => {
                let mut m = serde_json::Map::new();
                for (k, op) in fields {
                    let v =
                        if op.starts_with('%') && op.ends_with('%') && op.matches('%').count() == 2
                        {
                            match e.operator(&op[1..op.len() - 1]) {
                                Some(s) => match op.as_str() {
                                    "%RESPONSE_CODE%" | "%BYTES_RECEIVED%" | "%BYTES_SENT%"
                                    | "%DURATION%" => s
                                        .parse::<u64>()
                                        .map(serde_json::Value::from)
                                        .unwrap_or(serde_json::Value::String(s)),
                                    _ => serde_json::Value::String(s),
                                },
                                None => serde_json::Value::Null,
                            }
                        } else {
                            serde_json::Value::String(render(op, e))
                        };
                    m.insert(k.clone(), v);
                }
                let mut s = serde_json::Value::Object(m).to_string();
                s.push('\n');
                s
            }
        };
        self.sink.write(&self.proxy_id, &line, e);
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
