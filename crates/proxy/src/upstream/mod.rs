//! Clusters at run time: choosing a host (an endpoint, or the original
//! destination), the one connect path the TCP proxy and the router share
//! (DNS, the cluster's `connect_timeout`, TLS origination), HTTP connection
//! pools with Envoy's circuit breakers, and the failure vocabulary Envoy
//! logs (response flags, reset reasons, transport failure reasons).

mod error;
mod outlier;
mod pool;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use meshsim_tables::DiscoveryType;
use rustls::pki_types::ServerName;

pub use error::{classify, connect_error_reason, tls_error_reason, UpstreamError};
pub use outlier::Report;
pub(crate) use pool::lease;
pub use pool::{ClusterRt, EndpointRt, Lease, TlsTarget};
pub use stats::ClusterStats;

use crate::io::BoxIo;
use crate::Inner;

/// The host an attempt goes to.
#[derive(Clone)]
pub struct Host {
    /// IP or DNS name on the virtual network.
    pub address: String,
    pub port: u16,
    pub tls: Option<TlsTarget>,
    /// The endpoint's index (pooled); `None` for an original destination.
    pub endpoint: Option<usize>,
    /// The source address the cluster binds (`upstream_bind_config`).
    pub source: Option<std::net::IpAddr>,
}

impl Host {
    /// A DNS cluster's host as Envoy holds it: the address its resolver
    /// returned (so `%UPSTREAM_HOST%` is an IP). A name that does not
    /// resolve stays, and connecting to it fails as Envoy's would.
    pub fn resolved(mut self, env: &dyn crate::env::Environment) -> Host {
        if self.address.parse::<std::net::IpAddr>().is_err() {
            if let Some(ip) = env.resolve(&self.address) {
                self.address = ip.to_string();
            }
        }
        self
    }

    /// `auto_sni`: TLS to this host opens with the request's `authority`
    /// (port stripped) as SNI, for the router and for shadows alike.
    pub fn with_auto_sni(mut self, cluster: &ClusterRt, authority: &str) -> Host {
        if cluster.config.auto_sni {
            if let Some(t) = self.tls.as_mut() {
                t.sni = meshsim_tables::vhost_match::strip_port(authority).to_string();
            }
        }
        self
    }

    /// `%UPSTREAM_HOST%`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

/// What the upstream connection carries, which picks the ALPN Istio's
/// `istio.alpn` filter sets over mTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// Bytes (TCP proxy): the cluster's configured ALPN.
    Bytes,
    Http1,
    Http2,
}

impl ClusterRt {
    /// The load balancer's choice: an endpoint (round robin), or for an
    /// ORIGINAL_DST cluster the connection's original destination.
    pub fn choose(&self, original_dst: SocketAddr) -> Result<Host, UpstreamError> {
        if self.config.discovery_type == DiscoveryType::OriginalDst {
            let tls = self
                .original_dst_tls
                .clone()
                .map_err(|e| UpstreamError::TlsFailure(e.to_string()))?;
            return Ok(Host {
                address: original_dst.ip().to_string(),
                port: original_dst.port(),
                tls,
                endpoint: None,
                source: self.bind_source(),
            });
        }
        let i = self.pick().ok_or(UpstreamError::NoHealthyUpstream)?;
        let e = &self.endpoints[i];
        Ok(Host {
            address: e.host.clone(),
            port: e.port,
            tls: e.tls.clone(),
            endpoint: Some(i),
            source: self.bind_source(),
        })
    }

    fn bind_source(&self) -> Option<std::net::IpAddr> {
        self.config
            .upstream_bind_source
            .as_deref()
            .and_then(|s| s.parse().ok())
    }
}

/// Opens a connection to `host` as the cluster says: resolve, connect and
/// (for TLS clusters) handshake, all within the cluster's
/// `connect_timeout` (Envoy raises `Connected` after the handshake).
/// Returns the stream and `%UPSTREAM_LOCAL_ADDRESS%`.
pub(crate) async fn connect(
    inner: &Inner,
    cluster: &ClusterRt,
    host: &Host,
    carries: Carries,
) -> Result<(BoxIo, SocketAddr), UpstreamError> {
    ClusterStats::inc(&cluster.stats.upstream_cx_total);
    let attempt = establish(inner, host, carries);
    let result = match cluster.config.connect_timeout.as_timeout() {
        Some(t) => tokio::time::timeout(t, attempt)
            .await
            .unwrap_or(Err(UpstreamError::ConnectTimeout)),
        None => attempt.await,
    };
    match &result {
        Err(UpstreamError::ConnectTimeout) => {
            ClusterStats::inc(&cluster.stats.upstream_cx_connect_timeout);
            ClusterStats::inc(&cluster.stats.upstream_cx_connect_fail);
        }
        Err(UpstreamError::ConnectFailure(_) | UpstreamError::TlsFailure(_)) => {
            ClusterStats::inc(&cluster.stats.upstream_cx_connect_fail)
        }
        _ => {}
    }
    result
}

async fn establish(
    inner: &Inner,
    host: &Host,
    carries: Carries,
) -> Result<(BoxIo, SocketAddr), UpstreamError> {
    let env = inner.env.as_ref();
    let ip = match host.address.parse() {
        Ok(ip) => ip,
        Err(_) => env.resolve(&host.address).ok_or_else(|| {
            UpstreamError::ConnectFailure(format!("dns resolution failed for {}", host.address))
        })?,
    };
    let (stream, local) = match env
        .connect(SocketAddr::new(ip, host.port), host.source)
        .await
    {
        Ok(x) => x,
        Err(e) => {
            inner.connect_failed(&e);
            return Err(UpstreamError::ConnectFailure(connect_error_reason(&e)));
        }
    };
    let Some(t) = &host.tls else {
        return Ok((stream, local));
    };
    // No SNI configured: Envoy sends none (rustls sends none for an
    // address as the server name).
    let name = if t.sni.is_empty() {
        ServerName::IpAddress(ip.into())
    } else {
        ServerName::try_from(t.sni.clone()).unwrap_or(ServerName::IpAddress(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ))
    };
    let config: Arc<rustls::ClientConfig> = match carries {
        Carries::Bytes => t.config.clone(),
        Carries::Http1 => t.http_config.clone(),
        Carries::Http2 => t.h2_config.clone(),
    };
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
    {
        Ok(s) => Ok((Box::new(s), local)),
        Err(e) => Err(UpstreamError::TlsFailure(tls_error_reason(&e))),
    }
}
