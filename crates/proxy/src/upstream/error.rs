//! Why an upstream attempt failed, in Envoy's words: the response flag,
//! the reset reason of the local reply body, the response code details and
//! `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.

use std::io;

use crate::accesslog::Flag;

/// Why an upstream attempt failed, with what Envoy logs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// Circuit breaker: `UO`, reset reason `overflow`.
    Overflow,
    /// Connect refused or unreachable: `UF`.
    ConnectFailure(String),
    /// The cluster's `connect_timeout` passed: `UF`, reset reason
    /// `connection timeout` (upstream_request.cc maps the pool's
    /// `Timeout` failure to `ConnectionTimeout`).
    ConnectTimeout,
    /// TLS handshake failed: `UF` with the TLS error as transport failure reason.
    TlsFailure(String),
    /// The upstream closed or reset before a response: `UC`.
    ConnectionTermination,
    /// No endpoint: `UH`.
    NoHealthyUpstream,
    /// The upstream spoke something that is not HTTP: `UPE`.
    ProtocolError,
}

impl UpstreamError {
    pub fn flag(&self) -> Flag {
        match self {
            UpstreamError::Overflow => Flag::UpstreamOverflow,
            UpstreamError::ConnectFailure(_)
            | UpstreamError::ConnectTimeout
            | UpstreamError::TlsFailure(_) => Flag::UpstreamConnectionFailure,
            UpstreamError::ConnectionTermination => Flag::UpstreamConnectionTermination,
            UpstreamError::NoHealthyUpstream => Flag::NoHealthyUpstream,
            UpstreamError::ProtocolError => Flag::UpstreamProtocolError,
        }
    }

    /// Envoy's reset reason in bodies and details.
    pub fn reset_reason(&self) -> &'static str {
        match self {
            UpstreamError::Overflow => "overflow",
            UpstreamError::ConnectFailure(_) | UpstreamError::TlsFailure(_) => {
                "remote connection failure"
            }
            UpstreamError::ConnectTimeout => "connection timeout",
            UpstreamError::ConnectionTermination => "connection termination",
            UpstreamError::NoHealthyUpstream => "no healthy upstream",
            UpstreamError::ProtocolError => "protocol error",
        }
    }

    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub fn transport_failure_reason(&self) -> Option<String> {
        match self {
            UpstreamError::ConnectFailure(r) | UpstreamError::TlsFailure(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// `upstream_reset_before_response_started{...}` details (spaces → `_`).
    pub fn details(&self) -> String {
        let reason = self.reset_reason().replace(' ', "_");
        match self.transport_failure_reason() {
            Some(t) => format!(
                "upstream_reset_before_response_started{{{reason}|{}}}",
                t.replace(' ', "_")
            ),
            None => format!("upstream_reset_before_response_started{{{reason}}}"),
        }
    }

    /// Whether the failure happened while connecting (Envoy's
    /// `ConnectionFailure` family, what `connect-failure` retries).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectFailure(_)
                | UpstreamError::ConnectTimeout
                | UpstreamError::TlsFailure(_)
        )
    }
}

/// Envoy's name for a connect error (`delayed_connect_error:_Connection_refused`).
pub fn connect_error_reason(e: &io::Error) -> String {
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".to_string(),
        io::ErrorKind::TimedOut => "Connection timed out".to_string(),
        _ => e.to_string(),
    };
    format!("delayed connect error: {what}")
}

/// BoringSSL-style reason for a rustls failure, as Envoy prints it.
pub fn tls_error_reason(e: &io::Error) -> String {
    let msg = e.to_string();
    let code = if msg.contains("InvalidContentType")
        || msg.contains("corrupt message")
        || msg.contains("received corrupt")
    {
        "268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER"
    } else if msg.contains("invalid peer certificate")
        || msg.contains("UnknownIssuer")
        || msg.contains("NotValidForName")
    {
        "268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
    } else if msg.contains("CertificateRequired") || msg.contains("peer sent no certificates") {
        "268436124:SSL routines:OPENSSL_internal:TLSV1_ALERT_CERTIFICATE_REQUIRED"
    } else if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("close_notify")
        || msg.contains("eof")
    {
        "268435650:SSL routines:OPENSSL_internal:CONNECTION_CLOSED"
    } else {
        "268435470:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE"
    };
    format!("TLS_error:|{code}:TLS_error_end")
}

/// An upstream HTTP error before a response: a parse error is `UPE`,
/// anything else a reset (`UC`).
pub fn classify(e: &hyper::Error) -> UpstreamError {
    if e.is_parse() {
        UpstreamError::ProtocolError
    } else {
        UpstreamError::ConnectionTermination
    }
}
