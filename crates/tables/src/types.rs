//! Typed values the tables carry where Envoy's config has a small, closed
//! vocabulary or a unit: durations, retry conditions, header append
//! actions, transport protocols, access-log encodings. Each serializes to
//! the text Envoy's config dump prints, so the proxy never parses a string
//! the compiler handed it.

use std::fmt;

use serde::{Serialize, Serializer};

/// A protobuf `Duration` as Envoy prints it (`10s`, `1.500s`, `0s`), kept
/// to the millisecond (the resolution Istio's config has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The value as a `std::time::Duration`, for timers.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// A timeout: `None` when zero (Envoy: `0s` disables the timeout).
    pub fn as_timeout(self) -> Option<std::time::Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{}.{:03}s", ms / 1000, ms % 1000)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One retry condition of a route's `retry_on` (Envoy's
/// `x-envoy-retry-on` / `x-envoy-retry-grpc-on` values; router
/// `retry_state_impl.cc` `parseRetryOn` / `parseRetryGrpcOn`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RetryCondition {
    FiveXx,
    GatewayError,
    Reset,
    ResetBeforeRequest,
    ConnectFailure,
    EnvoyRatelimited,
    Retriable4xx,
    RefusedStream,
    RetriableStatusCodes,
    RetriableHeaders,
    Http3PostConnectFailure,
    Cancelled,
    DeadlineExceeded,
    Internal,
    ResourceExhausted,
    Unavailable,
    /// A value Envoy does not know; kept so the dump shows what was given.
    Other(String),
}

impl RetryCondition {
    fn parse(s: &str) -> Self {
        use RetryCondition::*;
        match s {
            "5xx" => FiveXx,
            "gateway-error" => GatewayError,
            "reset" => Reset,
            "reset-before-request" => ResetBeforeRequest,
            "connect-failure" => ConnectFailure,
            "envoy-ratelimited" => EnvoyRatelimited,
            "retriable-4xx" => Retriable4xx,
            "refused-stream" => RefusedStream,
            "retriable-status-codes" => RetriableStatusCodes,
            "retriable-headers" => RetriableHeaders,
            "http3-post-connect-failure" => Http3PostConnectFailure,
            "cancelled" => Cancelled,
            "deadline-exceeded" => DeadlineExceeded,
            "internal" => Internal,
            "resource-exhausted" => ResourceExhausted,
            "unavailable" => Unavailable,
            other => Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        use RetryCondition::*;
        match self {
            FiveXx => "5xx",
            GatewayError => "gateway-error",
            Reset => "reset",
            ResetBeforeRequest => "reset-before-request",
            ConnectFailure => "connect-failure",
            EnvoyRatelimited => "envoy-ratelimited",
            Retriable4xx => "retriable-4xx",
            RefusedStream => "refused-stream",
            RetriableStatusCodes => "retriable-status-codes",
            RetriableHeaders => "retriable-headers",
            Http3PostConnectFailure => "http3-post-connect-failure",
            Cancelled => "cancelled",
            DeadlineExceeded => "deadline-exceeded",
            Internal => "internal",
            ResourceExhausted => "resource-exhausted",
            Unavailable => "unavailable",
            Other(s) => s,
        }
    }
}

/// A route's `retry_on`: the conditions in the order given (the dump
/// prints them comma-joined, as istiod writes them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn(Vec<RetryCondition>);

impl RetryOn {
    /// Parses Envoy's comma-separated list (blank entries dropped).
    pub fn parse(s: &str) -> Self {
        RetryOn(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(RetryCondition::parse)
                .collect(),
        )
    }

    pub fn contains(&self, c: &RetryCondition) -> bool {
        self.0.contains(c)
    }

    pub fn conditions(&self) -> &[RetryCondition] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for RetryOn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Istio `add`: append to an existing header, or add it.
    AppendIfExistsOrAdd,
    /// Only when absent.
    AddIfAbsent,
    /// Istio `set`: replace, or add.
    OverwriteIfExistsOrAdd,
    /// Only replace an existing one.
    OverwriteIfExists,
}

/// `filter_chain_match.transport_protocol`; `Any` is the empty field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TransportProtocol {
    #[default]
    Any,
    /// Set by the TLS inspector for a ClientHello.
    Tls,
    /// Anything else.
    RawBuffer,
}

impl TransportProtocol {
    pub fn is_any(&self) -> bool {
        *self == TransportProtocol::Any
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransportProtocol::Any => "",
            TransportProtocol::Tls => "tls",
            TransportProtocol::RawBuffer => "raw_buffer",
        }
    }

    /// From an EnvoyFilter match or a config (`tls`, `raw_buffer`, empty).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" => Some(TransportProtocol::Any),
            "tls" => Some(TransportProtocol::Tls),
            "raw_buffer" => Some(TransportProtocol::RawBuffer),
            _ => None,
        }
    }
}

impl fmt::Display for TransportProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TransportProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Access-log encoding (mesh config `accessLogEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogEncoding {
    #[default]
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_envoy_does() {
        assert_eq!(Duration::from_millis(0).to_string(), "0s");
        assert_eq!(Duration::from_millis(10_000).to_string(), "10s");
        assert_eq!(Duration::from_millis(1_500).to_string(), "1.500s");
        assert_eq!(Duration::from_millis(250).to_string(), "0.250s");
        assert_eq!(Duration::ZERO.as_timeout(), None);
    }

    #[test]
    fn retry_on_keeps_order_and_unknown_values() {
        let r = RetryOn::parse("connect-failure, refused-stream,,5xx,bogus");
        assert_eq!(r.to_string(), "connect-failure,refused-stream,5xx,bogus");
        assert!(r.contains(&RetryCondition::FiveXx));
        assert!(!r.contains(&RetryCondition::Reset));
    }
}
