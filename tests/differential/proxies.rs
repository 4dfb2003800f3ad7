//! The two proxies under comparison, built from the same tables: real
//! Envoy from `meshsim export envoy`'s bootstrap, and meshsim's proxy. Both
//! reach the same upstream servers: every endpoint address on the mesh is
//! mapped to a real loopback socket.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshsim_compiler::World;
use meshsim_mesh::ca::Ca;
use meshsim_proxy::accesslog::{LogEntry, LogSink};
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::Capture;
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{Proxy, ProxyRuntime};
use meshsim_tables::envoy::export::{ExportOptions, HostPort};
use rustls::pki_types::CertificateDer;

/// Mesh endpoint → real socket, shared by both proxies.
pub type AddressMap = BTreeMap<SocketAddr, SocketAddr>;

pub async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// Real Envoy running an exported bootstrap; killed on drop.
pub struct Envoy {
    child: Child,
    log: PathBuf,
    pub listeners: BTreeMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Exports `proxy` of `world` with its `bound` listeners on fresh
    /// loopback ports, starts Envoy and waits until they accept.
    pub async fn start(
        world: &World,
        proxy: &str,
        bound: &[&str],
        map: &AddressMap,
        proxy_protocol: bool,
    ) -> Envoy {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("access.log");
        let mut binds = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for name in bound {
            let port = free_port().await;
            binds.insert(name.to_string(), ("127.0.0.1".to_string(), port));
            listeners.insert(
                name.to_string(),
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            );
        }
        let endpoints: BTreeMap<HostPort, HostPort> = map
            .iter()
            .map(|(v, r)| {
                (
                    (v.ip().to_string(), v.port()),
                    (r.ip().to_string(), r.port()),
                )
            })
            .collect();
        let opts = ExportOptions {
            binds,
            proxy_protocol,
            endpoints,
            admin: ("127.0.0.1".into(), free_port().await),
            access_log_path: Some(log.to_string_lossy().into_owned()),
            ..Default::default()
        };
        meshsim_mesh::export::export_envoy(world, proxy, dir.path(), opts).expect("export");
        let child = Command::new("envoy")
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "error",
                "--file-flush-interval-msec",
                "10",
                "-c",
            ])
            .arg(dir.path().join("bootstrap.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("envoy");
        let e = Envoy {
            child,
            log,
            listeners,
            _dir: dir,
        };
        for addr in e.listeners.values() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "envoy did not listen on {addr}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        e
    }

    /// Access-log lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Access-log lines of meshsim's proxy, rendered as Envoy would write them.
#[derive(Default)]
pub struct Lines(Mutex<Vec<String>>);

impl Lines {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl LogSink for Lines {
    fn write(&self, _: &str, line: &str, _: &LogEntry) {
        if let Ok(mut v) = self.0.lock() {
            v.push(line.trim_end().to_string());
        }
    }
}

/// meshsim's proxy's world: endpoints mapped to the upstream servers,
/// secrets issued by a test CA.
struct MapEnv {
    map: AddressMap,
    ca: Ca,
}

impl Environment for MapEnv {
    fn connect(
        &self,
        dst: SocketAddr,
        _source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let real = self
                .map
                .get(&dst)
                .copied()
                .ok_or(std::io::ErrorKind::ConnectionRefused)?;
            let s = tokio::net::TcpStream::connect(real).await?;
            let local = s.local_addr()?;
            Ok((Box::new(s) as BoxIo, local))
        })
    }
    fn resolve(&self, _: &str) -> Option<IpAddr> {
        None
    }
    fn certificate(&self, name: &str) -> Option<CertifiedKey> {
        let cn = name.strip_prefix("kubernetes://").unwrap_or(name);
        self.ca.server(&[cn.to_string()]).ok()
    }
    fn trust_roots(&self, _: Option<&str>) -> Vec<CertificateDer<'static>> {
        vec![self.ca.root()]
    }
}

/// meshsim's proxy for the same tables, listening where Envoy's listeners
/// would (a gateway port, or the outbound capture for a sidecar).
pub struct Meshsim {
    pub lines: Arc<Lines>,
    pub addr: SocketAddr,
    scope: Scope,
}

impl Meshsim {
    pub async fn start(world: &World, proxy: &str, port: Option<u16>, map: &AddressMap) -> Meshsim {
        let pod = meshsim_compiler::find_proxy(world, proxy).expect("proxy");
        let tables = meshsim_compiler::compile_proxy(world, pod);
        let lines = Arc::new(Lines::default());
        let scope = Scope::new();
        let env = Arc::new(MapEnv {
            map: map.clone(),
            ca: Ca::new("differential test CA").expect("ca"),
        });
        let p = Proxy::new(
            tables,
            ProxyRuntime::new(env, lines.clone(), scope.clone(), 1),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        match port {
            // A gateway port: connections arrive as they are.
            Some(port) => {
                let p2 = p.clone();
                scope.spawn(async move {
                    while let Ok((s, peer)) = l.accept().await {
                        p2.accept_port(s, peer, port);
                    }
                });
            }
            // A sidecar: the capture, with a PROXY header.
            None => p.serve_capture(l, Capture::Outbound),
        }
        Meshsim { lines, addr, scope }
    }

    pub async fn stop(&self) {
        self.scope.shutdown().await;
    }
}
