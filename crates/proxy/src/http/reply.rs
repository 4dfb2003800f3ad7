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
    /// The upstream failed before a response (`503` with the reset reason).
    UpstreamFailure {
        error: UpstreamError,
        /// Some earlier attempt was retried.
        retried: bool,
    },
    /// An HTTP/1.0 request without `accept_http_10` (`426 DPE low_version`).
    LowVersion,
    /// Bytes the HTTP/1 codec cannot parse (`400 DPE http1.codec_error`).
    CodecError,
}

impl LocalReply {
    pub fn status(&self) -> u16 {
        match self {
            LocalReply::NoRouteConfig | LocalReply::NoRoute => 404,
            LocalReply::ClusterNotFound
            | LocalReply::NoHealthyUpstream
            | LocalReply::UpstreamFailure { .. } => 503,
            LocalReply::FaultAbort { status }
            | LocalReply::DirectResponse { status, .. }
            | LocalReply::Redirect { status, .. } => *status,
            LocalReply::ResponseTimeout | LocalReply::PerTryTimeout => 504,
            LocalReply::LowVersion => 426,
            LocalReply::CodecError => 400,
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
            LocalReply::LowVersion | LocalReply::CodecError => Some(Flag::DownstreamProtocolError),
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
            LocalReply::LowVersion => "low_version".into(),
            LocalReply::CodecError => "http1.codec_error".into(),
        }
    }

    /// The body Envoy writes.
    pub fn body(&self) -> String {
        match self {
            LocalReply::NoRouteConfig
            | LocalReply::NoRoute
            | LocalReply::ClusterNotFound
            | LocalReply::Redirect { .. } => String::new(),
            LocalReply::NoHealthyUpstream => "no healthy upstream".into(),
            LocalReply::FaultAbort { .. } => "fault filter abort".into(),
            LocalReply::DirectResponse { body, .. } => body.clone(),
            LocalReply::ResponseTimeout | LocalReply::PerTryTimeout => {
                "upstream request timeout".into()
            }
            LocalReply::UpstreamFailure { error, retried } => {
                let prefix = if *retried {
                    "retried and the latest reset reason: "
                } else {
                    "reset reason: "
                };
                format!(
                    "upstream connect error or disconnect/reset before headers. {prefix}{}",
                    error.reset_reason()
                )
            }
            LocalReply::LowVersion => "Upgrade Required".into(),
            LocalReply::CodecError => "Bad Request".into(),
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
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
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
        };
        assert_eq!(o.headers(), vec![("x-envoy-overloaded", "true".into())]);
        assert_eq!(
            LocalReply::PerTryTimeout.details(),
            "upstream_per_try_timeout"
        );
    }
}
