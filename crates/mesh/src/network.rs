//! The virtual network on localhost. Kubernetes addresses (pod IPs,
//! ClusterIPs, external hosts) are data: every socket really binds
//! `127.0.0.1:0`, and this map says which real socket a virtual address
//! reaches. Sidecar capture (iptables) is simulated by delivering a pod's
//! outgoing connections to its sidecar's outbound capture socket, and
//! incoming ones to its inbound capture socket, each prefixed with a PROXY
//! protocol v2 header carrying the original source and destination.
//! Connections to a ClusterIP go to one of its endpoints (kube-proxy).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::RwLock;

use meshsim_proxy::listener::proxy_header;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A pod's sockets.
#[derive(Debug, Clone, Default)]
pub struct PodNet {
    pub name: String,
    pub namespace: String,
    /// Sidecar (or gateway) capture sockets: `(outbound, inbound)`.
    pub capture: Option<(SocketAddr, SocketAddr)>,
    /// The pod's listening applications: container port → real socket.
    pub apps: HashMap<u16, SocketAddr>,
    /// Its sidecar's DNS proxy.
    pub dns: meshsim_compiler::world::DnsProxy,
}

#[derive(Default)]
pub struct Network {
    pods: RwLock<HashMap<IpAddr, PodNet>>,
    tables: RwLock<NameTables>,
    /// ClusterIP:port → endpoint pod IP:targetPort.
    vips: RwLock<HashMap<SocketAddr, Vec<SocketAddr>>>,
    /// Outside the cluster: external IP:port → real socket.
    external: RwLock<HashMap<SocketAddr, SocketAddr>>,
    /// DNS: fully qualified name → address.
    dns: RwLock<HashMap<String, IpAddr>>,
    ephemeral: AtomicU16,
    rr: AtomicU64,
    cluster_domain: String,
    /// The rest of the internet: real sockets of the catch-all server,
    /// `(plain, tls)`, for names no configuration declares.
    internet: RwLock<Option<(SocketAddr, SocketAddr)>>,
}

/// Where names of the rest of the internet resolve: 198.18.0.0/15, the
/// range RFC 2544 sets aside (no user address lands there by accident).
fn internet_ip(name: &str) -> IpAddr {
    // FNV-1a: stable across runs and platforms.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let low = (h % (1 << 17)) as u32;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + low,
    ))
}

fn in_internet_range(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if (u32::from(v4) >> 17) == (u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17))
}

/// Public top-level domains a pod's DNS lookup would find on the internet;
/// anything else that is not a cluster name fails to resolve.
const PUBLIC_TLDS: &[&str] = &[
    "com", "org", "net", "io", "dev", "app", "co", "edu", "gov", "info", "biz", "me", "us", "uk",
    "de", "fr", "jp", "cn", "in", "ai", "cloud", "xyz", "tech", "eu", "ca", "au", "nl", "ch", "se",
    "no", "es", "it", "br", "ru", "sh", "so",
];

/// Whether `name` exists on the public internet (a public TLD, not a
/// cluster name).
fn is_public(name: &str, cluster_domain: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(rest, tld)| {
        PUBLIC_TLDS.contains(&tld)
            && !rest.is_empty()
            && !name.ends_with(&format!(".{cluster_domain}"))
    })
}

/// Names only some resolvers know (see [`Network::resolve_app`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTables {
    /// Declared internet hosts → their server.
    pub external: BTreeMap<String, IpAddr>,
    /// ServiceEntry hosts with `addresses`.
    pub capture: BTreeMap<String, IpAddr>,
    /// ServiceEntry hosts with auto-allocated addresses.
    pub auto: BTreeMap<String, IpAddr>,
}

fn refused(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("connection refused: {what}"),
    )
}

impl Network {
    pub fn new(cluster_domain: &str) -> Self {
        Self {
            ephemeral: AtomicU16::new(40000),
            cluster_domain: cluster_domain.to_string(),
            ..Default::default()
        }
    }

    /// Adds a pod (its sockets come later), keeping sockets already set
    /// when the pod is known.
    pub fn add_pod(
        &self,
        ip: IpAddr,
        name: &str,
        namespace: &str,
        dns: meshsim_compiler::world::DnsProxy,
    ) {
        if let Ok(mut m) = self.pods.write() {
            let p = m.entry(ip).or_default();
            p.name = name.to_string();
            p.namespace = namespace.to_string();
            p.dns = dns;
        }
    }

    pub fn remove_pod(&self, ip: IpAddr) {
        if let Ok(mut m) = self.pods.write() {
            m.remove(&ip);
        }
    }

    /// The pod's application sockets (replacing the previous ones).
    pub fn set_apps(&self, ip: IpAddr, apps: HashMap<u16, SocketAddr>) {
        if let Ok(mut m) = self.pods.write() {
            if let Some(p) = m.get_mut(&ip) {
                p.apps = apps;
            }
        }
    }

    /// The pod's capture sockets, `(outbound, inbound)`, or none.
    pub fn set_capture(&self, ip: IpAddr, capture: Option<(SocketAddr, SocketAddr)>) {
        if let Ok(mut m) = self.pods.write() {
            if let Some(p) = m.get_mut(&ip) {
                p.capture = capture;
            }
        }
    }

    pub fn set_vips(&self, vips: HashMap<SocketAddr, Vec<SocketAddr>>) {
        if let Ok(mut m) = self.vips.write() {
            *m = vips;
        }
    }

    /// Outside the cluster: external address → real socket (replacing the map).
    pub fn set_external(&self, map: HashMap<SocketAddr, SocketAddr>) {
        if let Ok(mut m) = self.external.write() {
            *m = map;
        }
    }

    /// Serves every internet name no configuration declares: port 443 and
    /// 8443 go to `tls`, others to `plain`.
    pub fn set_internet(&self, plain: SocketAddr, tls: SocketAddr) {
        if let Ok(mut m) = self.internet.write() {
            *m = Some((plain, tls));
        }
    }

    /// Cluster DNS (replacing every name).
    pub fn set_dns(&self, names: impl IntoIterator<Item = (String, IpAddr)>) {
        if let Ok(mut m) = self.dns.write() {
            *m = names.into_iter().collect();
        }
    }

    /// The internet's DNS for declared hosts, and Istio's DNS proxy
    /// tables (ServiceEntry addresses, auto-allocated addresses).
    pub fn set_name_tables(&self, tables: NameTables) {
        if let Ok(mut m) = self.tables.write() {
            *m = tables;
        }
    }

    /// Resolves a name as the application in pod `from` would: its
    /// sidecar's DNS proxy first when it captures DNS (ServiceEntry
    /// addresses, auto-allocated ones when it uses them), then the cluster
    /// DNS, then the internet — where only public names exist, so a
    /// ServiceEntry host like `db.corp.internal` resolves only through
    /// the DNS proxy.
    pub fn resolve_app(&self, from: IpAddr, namespace: &str, name: &str) -> Option<IpAddr> {
        if let Ok(ip) = name.parse() {
            return Some(ip);
        }
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let dns = self.pod(from).map(|p| p.dns).unwrap_or_default();
        let tables = self.tables.read().ok()?;
        if dns.capture {
            if let Some(ip) = tables.capture.get(&key) {
                return Some(*ip);
            }
            if let Some(ip) = tables.auto.get(&key).filter(|_| dns.auto_allocate) {
                return Some(*ip);
            }
        }
        self.cluster_name(namespace, &key).or_else(|| {
            is_public(&key, &self.cluster_domain)
                .then(|| {
                    tables
                        .external
                        .get(&key)
                        .copied()
                        .or_else(|| self.internet_name(&key))
                })
                .flatten()
        })
    }

    pub fn pod(&self, ip: IpAddr) -> Option<PodNet> {
        self.pods.read().ok()?.get(&ip).cloned()
    }

    /// Resolves a name as a pod in `namespace` would (resolv.conf search
    /// path `NS.svc.DOMAIN svc.DOMAIN DOMAIN`), or an IP literal.
    pub fn resolve(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        if let Ok(ip) = name.parse() {
            return Some(ip);
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.cluster_name(namespace, &name)
            .or_else(|| {
                self.tables
                    .read()
                    .ok()
                    .and_then(|t| t.external.get(&name).copied())
            })
            .or_else(|| self.internet_name(&name))
    }

    /// A cluster DNS name, through the pod's search path.
    fn cluster_name(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        let dns = self.dns.read().ok()?;
        let d = &self.cluster_domain;
        [
            format!("{name}.{namespace}.svc.{d}"),
            format!("{name}.svc.{d}"),
            format!("{name}.{d}"),
            name.to_string(),
        ]
        .iter()
        .find_map(|n| dns.get(n).copied())
    }

    /// A public internet name (`www.google.com`) the configuration does not
    /// declare: it exists out there, served by the catch-all server.
    fn internet_name(&self, name: &str) -> Option<IpAddr> {
        self.internet.read().ok()?.as_ref()?;
        is_public(name, &self.cluster_domain).then(|| internet_ip(name))
    }

    /// A fresh source address of pod `from` (an ephemeral port).
    pub(crate) fn source(&self, from: IpAddr) -> SocketAddr {
        let p = self.ephemeral.fetch_add(1, Ordering::Relaxed);
        let p = if p < 40000 { 40000 + p } else { p };
        SocketAddr::new(from, p)
    }

    /// An application in pod `from` connects to `dst`: its sidecar's
    /// outbound capture gets it, if it has one.
    pub async fn connect_app(
        &self,
        from: IpAddr,
        dst: SocketAddr,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let pod = self.pod(from);
        if let Some((outbound, _)) = pod.as_ref().and_then(|p| p.capture) {
            if !dst.ip().is_loopback() {
                let src = self.source(from);
                let mut s = TcpStream::connect(outbound).await?;
                s.set_nodelay(true)?;
                s.write_all(&proxy_header(src, dst)).await?;
                return Ok((s, src));
            }
        }
        self.connect_direct(from, dst).await
    }

    /// A connection that is not captured on the way out (the sidecar's own,
    /// or a pod without one); captured on the way in by the destination's
    /// sidecar.
    pub async fn connect_direct(
        &self,
        from: IpAddr,
        dst: SocketAddr,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let src = self.source(from);
        if dst.ip().is_loopback() {
            let real = self
                .pod(from)
                .and_then(|p| p.apps.get(&dst.port()).copied())
                .ok_or_else(|| refused(dst))?;
            let s = TcpStream::connect(real).await?;
            s.set_nodelay(true)?;
            return Ok((s, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), src.port())));
        }
        let dst = self.kube_proxy(dst);
        if let Some(pod) = self.pod(dst.ip()) {
            if let Some((_, inbound)) = pod.capture {
                let mut s = TcpStream::connect(inbound).await?;
                s.set_nodelay(true)?;
                s.write_all(&proxy_header(src, dst)).await?;
                return Ok((s, src));
            }
            let real = pod
                .apps
                .get(&dst.port())
                .copied()
                .ok_or_else(|| refused(dst))?;
            let s = TcpStream::connect(real).await?;
            s.set_nodelay(true)?;
            return Ok((s, src));
        }
        let real = self
            .external
            .read()
            .ok()
            .and_then(|m| m.get(&dst).copied())
            .or_else(|| {
                let (plain, tls) = (*self.internet.read().ok()?)?;
                in_internet_range(dst.ip()).then_some(if matches!(dst.port(), 443 | 8443) {
                    tls
                } else {
                    plain
                })
            })
            .ok_or_else(|| refused(dst))?;
        let s = TcpStream::connect(real).await?;
        s.set_nodelay(true)?;
        Ok((s, src))
    }

    /// A pod's sidecar reaching its own application from `source` (not
    /// captured: iptables returns traffic from `127.0.0.6`).
    pub async fn connect_own_app(
        &self,
        pod: IpAddr,
        port: u16,
        source: IpAddr,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let real = self
            .pod(pod)
            .and_then(|p| p.apps.get(&port).copied())
            .ok_or_else(|| refused(SocketAddr::new(pod, port)))?;
        let s = TcpStream::connect(real).await?;
        s.set_nodelay(true)?;
        let local = SocketAddr::new(source, self.source(pod).port());
        Ok((s, local))
    }

    /// kube-proxy: a ClusterIP:port becomes one of its endpoints.
    fn kube_proxy(&self, dst: SocketAddr) -> SocketAddr {
        let Ok(vips) = self.vips.read() else {
            return dst;
        };
        match vips.get(&dst) {
            Some(eps) if !eps.is_empty() => {
                eps[(self.rr.fetch_add(1, Ordering::Relaxed) as usize) % eps.len()]
            }
            _ => dst,
        }
    }
}
