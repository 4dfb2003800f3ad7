//! Every reply Envoy makes itself, as one type: each variant knows its
//! status, response flag, response code details, body and extra headers,
//! so adding an Envoy local reply is adding a variant.

use http::{HeaderValue, Response, StatusCode};

use super::{full, Body};
use crate::accesslog::Flag;
use crate::upstream::UpstreamError;

/// A response the proxy writes without (a usable answer from) upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReply {
    /// The HCM names a route configuration this proxy does not have.
    NoRouteConfig,
    /// No virtual host or route matched (`404 NR route_not_found`).
    NoRoute,
    /// The route's cluster does not exist (`503 NC`).
    ClusterNotFound,
    /// The cluster has no endpoint (`503 UH`).
    NoHealthyUpstream,
    /// The fault filter aborted the request (`FI fault_filter_abort`).
    FaultAbort { status: u16 },
    /// A route's `direct_response`.
    DirectResponse { status: u16, body: String },
    /// A route's `redirect`.
    Redirect { status: u16, location: String },
    /// The route's `timeout` passed before the response (`504 UT`).
    ResponseTimeout,
    /// The retry policy's `per_try_timeout` passed on the last try.
    PerTryTimeout,
    /// The upstream failed before a response (`503` with the reset
    /// reason; `502` for a protocol error).
    UpstreamFailure {
        error: UpstreamError,
        /// Some earlier attempt was retried.
        retried: bool,
        /// The body names the transport failure reason (Envoy ≥ 1.16).
        name_transport: bool,
    },
    /// An HTTP/1 codec rejection before a request exists
    /// (`DPE`, no method or path in the log).
    Codec(CodecReject),
    /// An HTTP/1.1 request without `Host` (`400 missing_host_header`).
    MissingHost,
    /// `normalize_path` could not normalise the path (a fragment, ...):
    /// `400 path_normalization_failed`.
    PathNormalizationFailed,
    /// A request target that is not an absolute path (`OPTIONS *`):
    /// `404 absolute_path_rejected`.
    AbsolutePathRejected,
    /// The client went away before its request body ended: nothing is
    /// sent, the log says `0 DC downstream_remote_disconnect`.
    DownstreamDisconnect,
}

/// `%RESPONSE_CODE_DETAILS%` of a client gone mid-request (the log's
/// code is then 0: no response was sent).
pub const DOWNSTREAM_DISCONNECT: &str = "downstream_remote_disconnect";

/// Why Envoy's HTTP/1 codec (http1/codec_impl.cc, balsa_parser.cc)
/// rejected a request; each with its status, details and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecReject {
    /// A request line not `HTTP/1.1` (nor an accepted `HTTP/1.0`): `426 low_version`.
    LowVersion,
    /// Unparseable request line or header (`http1.codec_error`).
    Malformed,
    /// A control character in a header value (`http1.invalid_characters`).
    InvalidCharacters,
    /// Header block over `max_request_headers_kb` (`431 http1.headers_too_large`).
    HeadersTooLarge,
    /// More than `max_headers_count` headers (`431 http1.too_many_headers`).
    TooManyHeaders,
    /// Both `content-length` and chunked (`http1.content_length_and_chunked_not_allowed`).
    ContentLengthAndChunked,
    /// A transfer coding other than chunked (`501 http1.invalid_transfer_encoding`).
    InvalidTransferEncoding,
    /// A `host` that is not a valid authority (`http.invalid_authority`).
    InvalidAuthority,
}

impl CodecReject {
    pub fn status(self) -> u16 {
        match self {
            CodecReject::LowVersion => 426,
            CodecReject::HeadersTooLarge | CodecReject::TooManyHeaders => 431,
            CodecReject::InvalidTransferEncoding => 501,
            _ => 400,
        }
    }

    pub fn details(self) -> &'static str {
        match self {
            CodecReject::LowVersion => "low_version",
            CodecReject::Malformed => "http1.codec_error",
            CodecReject::InvalidCharacters => "http1.invalid_characters",
            CodecReject::HeadersTooLarge => "http1.headers_too_large",
            CodecReject::TooManyHeaders => "http1.too_many_headers",
            CodecReject::ContentLengthAndChunked => "http1.content_length_and_chunked_not_allowed",
            CodecReject::InvalidTransferEncoding => "http1.invalid_transfer_encoding",
            CodecReject::InvalidAuthority => "http.invalid_authority",
        }
    }
}

impl LocalReply {
    pub fn status(&self) -> u16 {
        match self {
            LocalReply::NoRouteConfig | LocalReply::NoRoute => 404,
            LocalReply::UpstreamFailure {
                error: UpstreamError::ProtocolError,
                ..
            } => 502,
            LocalReply::ClusterNotFound
            | LocalReply::NoHealthyUpstream
            | LocalReply::UpstreamFailure { .. } => 503,
            LocalReply::FaultAbort { status }
            | LocalReply::DirectResponse { status, .. }
            | LocalReply::Redirect { status, .. } => *status,
            LocalReply::ResponseTimeout | LocalReply::PerTryTimeout => 504,
            LocalReply::Codec(c) => c.status(),
            LocalReply::MissingHost
            | LocalReply::PathNormalizationFailed
            | LocalReply::DownstreamDisconnect => 400,
            LocalReply::AbsolutePathRejected => 404,
        }
    }

    /// The reply's own response flag (the pipeline adds `DI`, `URX`).
    pub fn flag(&self) -> Option<Flag> {
        match self {
            LocalReply::NoRouteConfig | LocalReply::NoRoute => Some(Flag::NoRouteFound),
            LocalReply::ClusterNotFound => Some(Flag::NoClusterFound),
            LocalReply::NoHealthyUpstream => Some(Flag::NoHealthyUpstream),
            LocalReply::FaultAbort { .. } => Some(Flag::FaultInjected),
            LocalReply::DirectResponse { .. } | LocalReply::Redirect { .. } => None,
            LocalReply::ResponseTimeout | LocalReply::PerTryTimeout => {
                Some(Flag::UpstreamRequestTimeout)
            }
            LocalReply::UpstreamFailure { error, .. } => Some(error.flag()),
            LocalReply::Codec(_) => Some(Flag::DownstreamProtocolError),
            LocalReply::MissingHost
            | LocalReply::PathNormalizationFailed
            | LocalReply::AbsolutePathRejected => None,
            LocalReply::DownstreamDisconnect => Some(Flag::DownstreamConnectionTermination),
        }
    }

    /// `%RESPONSE_CODE_DETAILS%`.
    pub fn details(&self) -> String {
        match self {
            LocalReply::NoRouteConfig => "route_configuration_not_found".into(),
            LocalReply::NoRoute => "route_not_found".into(),
            LocalReply::ClusterNotFound => "cluster_not_found".into(),
            LocalReply::NoHealthyUpstream => "no_healthy_upstream".into(),
            LocalReply::FaultAbort { .. } => "fault_filter_abort".into(),
            LocalReply::DirectResponse { .. } | LocalReply::Redirect { .. } => {
                "direct_response".into()
            }
            LocalReply::ResponseTimeout => "response_timeout".into(),
            LocalReply::PerTryTimeout => "upstream_per_try_timeout".into(),
            LocalReply::UpstreamFailure { error, .. } => error.details(),
            LocalReply::Codec(c) => c.details().into(),
            LocalReply::MissingHost => "missing_host_header".into(),
            LocalReply::PathNormalizationFailed => "path_normalization_failed".into(),
            LocalReply::AbsolutePathRejected => "absolute_path_rejected".into(),
            LocalReply::DownstreamDisconnect => DOWNSTREAM_DISCONNECT.into(),
        }
    }

    /// The body Envoy writes.
    pub fn body(&self) -> String {
        match self {
            LocalReply::NoRouteConfig
            | LocalReply::NoRoute
            | LocalReply::ClusterNotFound
            | LocalReply::Redirect { .. }
            | LocalReply::MissingHost
            | LocalReply::PathNormalizationFailed
            | LocalReply::AbsolutePathRejected
            | LocalReply::DownstreamDisconnect => String::new(),
            LocalReply::NoHealthyUpstream => "no healthy upstream".into(),
            LocalReply::FaultAbort { .. } => "fault filter abort".into(),
            LocalReply::DirectResponse { body, .. } => body.clone(),
            LocalReply::ResponseTimeout | LocalReply::PerTryTimeout => {
                "upstream request timeout".into()
            }
            LocalReply::UpstreamFailure {
                error,
                retried,
                name_transport,
            } => {
                let prefix = if *retried {
                    "retried and the latest reset reason: "
                } else {
                    "reset reason: "
                };
                // router.cc onUpstreamReset: the reason as the transport
                // socket gave it (unescaped, unlike the access log).
                let transport = match error.transport_failure_reason() {
                    Some(t) if *name_transport => format!(", transport failure reason: {t}"),
                    _ => String::new(),
                };
                format!(
                    "upstream connect error or disconnect/reset before headers. {prefix}{}{transport}",
                    error.reset_reason()
                )
            }
            // The codec's replies carry the status's reason phrase.
            LocalReply::Codec(c) => http::StatusCode::from_u16(c.status())
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Headers the reply carries besides content type and length.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            LocalReply::Redirect { location, .. } => vec![("location", location.clone())],
            LocalReply::UpstreamFailure {
                error: UpstreamError::Overflow,
                ..
            } => vec![("x-envoy-overloaded", "true".into())],
            // Replies before the filter chain exists close the connection.
            LocalReply::MissingHost
            | LocalReply::PathNormalizationFailed
            | LocalReply::Codec(_)
            | LocalReply::DownstreamDisconnect => vec![("connection", "close".into())],
            _ => vec![],
        }
    }

    /// The reply as a response for hyper to send.
    pub fn response(&self) -> Response<Body> {
        let body = self.body();
        let mut r = Response::new(full(body.clone()));
        *r.status_mut() =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        if !body.is_empty() {
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
        }
        // Envoy's local reply carries no content-length when empty; its
        // HTTP/1 codec writes `content-length: 0`, HTTP/2 nothing.
        if !body.is_empty() {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        for (k, v) in self.headers() {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_read_as_envoy_writes_them() {
        let r = LocalReply::UpstreamFailure {
            error: UpstreamError::ConnectTimeout,
            retried: true,
            name_transport: true,
        };
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.body(),
            "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection timeout"
        );
        assert_eq!(
            r.details(),
            "upstream_reset_before_response_started{connection_timeout}"
        );
        assert_eq!(r.flag(), Some(Flag::UpstreamConnectionFailure));
        let o = LocalReply::UpstreamFailure {
            error: UpstreamError::Overflow,
            retried: false,
            name_transport: true,
        };
        assert_eq!(o.headers(), vec![("x-envoy-overloaded", "true".into())]);
        assert_eq!(
            LocalReply::PerTryTimeout.details(),
            "upstream_per_try_timeout"
        );
    }

    /// Envoy 1.16+ (envoyproxy/envoy#12321) names the transport failure in
    /// the body, unescaped; before, it did not.
    #[test]
    fn transport_failure_named_in_the_body_by_version() {
        let refused = |name_transport| LocalReply::UpstreamFailure {
            error: UpstreamError::ConnectFailure(
                "delayed connect error: Connection refused".into(),
            ),
            retried: false,
            name_transport,
        };
        assert_eq!(
            refused(true).body(),
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
        );
        assert_eq!(
            refused(false).body(),
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
        );
    }

    #[test]
    fn protocol_errors_are_502_and_codec_replies_use_the_reason_phrase() {
        let garbage = LocalReply::UpstreamFailure {
            error: UpstreamError::ProtocolError,
            retried: false,
            name_transport: true,
        };
        assert_eq!(garbage.status(), 502);
        assert_eq!(garbage.flag(), Some(Flag::UpstreamProtocolError));
        let big = LocalReply::Codec(CodecReject::HeadersTooLarge);
        assert_eq!(
            (big.status(), big.body().as_str()),
            (431, "Request Header Fields Too Large")
        );
        let te = LocalReply::Codec(CodecReject::InvalidTransferEncoding);
        assert_eq!((te.status(), te.body().as_str()), (501, "Not Implemented"));
        assert_eq!(LocalReply::MissingHost.flag(), None);
    }
}
