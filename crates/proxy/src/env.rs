//! What the proxy needs from the world around it (the mesh supplies it):
//! connecting from its pod to an address on the virtual network, DNS, and
//! secrets (istio-agent's SDS).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::io::BoxIo;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A certificate chain with its key (`default`, `kubernetes://NAME`).
#[derive(Debug)]
pub struct CertifiedKey {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertifiedKey {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The proxy's view of its environment.
pub trait Environment: Send + Sync + 'static {
    /// Opens a TCP connection from this proxy's pod to `dst` on the virtual
    /// network (a pod IP, a ClusterIP, an external address, or `127.0.0.1`
    /// for the pod's own application), from `source` when the cluster binds
    /// one (`127.0.0.6`: iptables lets that reach the pod's own
    /// application). Also returns the connection's local address on the
    /// virtual network (`%UPSTREAM_LOCAL_ADDRESS%`).
    fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>>;

    /// Resolves a DNS name as the pod would (STRICT_DNS clusters).
    fn resolve(&self, host: &str) -> Option<IpAddr>;

    /// A certificate and key by SDS name (`default`, `kubernetes://NAME`).
    fn certificate(&self, sds_name: &str) -> Option<CertifiedKey>;

    /// Trusted CA certificates by SDS name (`ROOTCA`,
    /// `kubernetes://NAME-cacert`), or `None` name for the system trust store.
    fn trust_roots(&self, sds_name: Option<&str>) -> Vec<CertificateDer<'static>>;
}

pub type SharedEnv = Arc<dyn Environment>;
