//! Helpers for the proxy's own tests: a log sink that keeps entries, an
//! environment that maps mesh addresses to real loopback sockets (with an
//! optional delay before each connect), and a proxy built from YAML.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshsim_compiler::{NamespaceFlag, Settings, World};
use meshsim_proxy::accesslog::{LogEntry, LogSink};
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::Capture;
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{Proxy, ProxyRuntime};
use rustls::pki_types::CertificateDer;

/// Keeps every access-log entry.
#[derive(Default)]
pub struct Lines(pub Mutex<Vec<LogEntry>>);

impl LogSink for Lines {
    fn write(&self, _: &str, _: &str, e: &LogEntry) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.clone());
        }
    }
}

impl Lines {
    pub fn entries(&self) -> Vec<LogEntry> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Mesh address → real socket; unknown addresses are refused.
pub struct MapEnv {
    pub map: BTreeMap<SocketAddr, SocketAddr>,
    /// Waited before each connect (a far-away upstream).
    pub delay: Duration,
}

impl Environment for MapEnv {
    fn connect(
        &self,
        dst: SocketAddr,
        _source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let real = *self
                .map
                .get(&dst)
                .ok_or(std::io::ErrorKind::ConnectionRefused)?;
            tokio::time::sleep(self.delay).await;
            let s = tokio::net::TcpStream::connect(real).await?;
            let local = s.local_addr()?;
            Ok((Box::new(s) as BoxIo, local))
        })
    }
    fn resolve(&self, _: &str) -> Option<IpAddr> {
        None
    }
    fn certificate(&self, _: &str) -> Option<CertifiedKey> {
        None
    }
    fn trust_roots(&self, _: Option<&str>) -> Vec<CertificateDer<'static>> {
        vec![]
    }
}

pub fn world(yaml: &str) -> World {
    let (world, diags) = World::from_loaded(
        meshsim_model::parse_str("test.yaml", yaml),
        Settings::default(),
        &NamespaceFlag::Unset,
    );
    assert!(!diags.has_errors(), "{}", diags.error_text());
    world
}

/// A sidecar proxy for `proxy` of `world` serving its outbound capture;
/// the capture's address.
pub async fn sidecar(
    world: &World,
    proxy: &str,
    env: Arc<dyn Environment>,
    lines: Arc<Lines>,
    scope: &Scope,
) -> (Proxy, SocketAddr) {
    let pod = meshsim_compiler::find_proxy(world, proxy).expect("proxy");
    let tables = meshsim_compiler::compile_proxy(world, pod);
    let p = Proxy::new(tables, ProxyRuntime::new(env, lines, scope.clone(), 1));
    let capture = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = capture.local_addr().expect("addr");
    p.serve_capture(capture, Capture::Outbound);
    (p, addr)
}
