//! The Istio version a proxy reports, and the behaviours that changed
//! between versions (so scenarios can reproduce what older Istio did):
//! istiod's (read by the compiler) and those of the Envoy each release
//! ships (read by the proxy).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl IstioVersion {
    pub const DEFAULT: IstioVersion = IstioVersion {
        major: 1,
        minor: 28,
        patch: 0,
    };

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches('v');
        let mut it = s.split(['.', '-']);
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// The minor version of the Envoy 1.x this release ships (1.28 → 1.36,
    /// 1.22 → 1.30, 1.8 → 1.16).
    pub fn envoy_minor(self) -> u32 {
        self.minor + 8
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// HTTP listeners on `0.0.0.0:PORT` match only sniffed HTTP (ALPN
    /// `http/1.1`, `h2c`) and let everything else through to
    /// PassthroughCluster — istio/istio#17169 "Let TCP traffic fall
    /// through" (1.6). Before, the whole port was one HTTP connection
    /// manager, so a TLS ClientHello on an HTTP port was an HTTP codec error
    /// (`400 DPE`) — what Istio's troubleshooting page documents.
    pub fn http_ports_fall_through(self) -> bool {
        self.at_least(1, 6)
    }

    /// The sniffed-HTTP chain also requires `transport_protocol:
    /// raw_buffer` and the fall-through is the default chain —
    /// istio/istio#28166 "Fix HTTPs on HTTP port passthrough" (1.8). In
    /// 1.6/1.7 a TLS client offering ALPN `http/1.1` still matched the HTTP
    /// chain.
    pub fn http_chain_requires_raw_buffer(self) -> bool {
        self.at_least(1, 8)
    }

    /// Auto mTLS exists (default on) since 1.5; before, a DestinationRule
    /// without `tls` meant plaintext (the page's "mode defaults to DISABLE").
    pub fn has_auto_mtls(self) -> bool {
        self.at_least(1, 5)
    }

    /// Inbound clusters are ORIGINAL_DST to the pod IP, connecting from
    /// `127.0.0.6` (istio/istio#31812, 1.10); before, STATIC `127.0.0.1`.
    pub fn inbound_to_pod_ip(self) -> bool {
        self.at_least(1, 10)
    }

    /// Telemetry filters (`istio.stats`) are built in since the move away
    /// from per-version `stats-filter-1.x` EnvoyFilters; before that they
    /// existed only when such an EnvoyFilter added them.
    pub fn builtin_stats_filters(self) -> bool {
        self.at_least(1, 14)
    }

    /// Envoy: the "upstream connect error" local reply ends with
    /// `, transport failure reason: ...` when there is one
    /// (envoyproxy/envoy#12321, Envoy 1.16 = Istio 1.8;
    /// source/common/router/router.cc `Filter::onUpstreamReset`).
    pub fn reply_names_transport_failure(self) -> bool {
        self.at_least(1, 8)
    }

    /// Envoy: `%RESPONSE_FLAGS%` lists flags in the order they were set
    /// (envoyproxy/envoy#31719, Envoy 1.30 = Istio 1.22); before, in the
    /// fixed order of `ResponseFlagUtils::ALL_RESPONSE_STRING_FLAGS`.
    pub fn flags_in_set_order(self) -> bool {
        self.at_least(1, 22)
    }
}

impl Default for IstioVersion {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl serde::Serialize for IstioVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
