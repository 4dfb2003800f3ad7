//! Starting a mesh: every pod's applications, every sidecar and gateway as
//! a real proxy with capture sockets, external hosts, the virtual network
//! and DNS, and the control plane that compiles and pushes tables.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use meshsim_compiler::world::{PodRole, Resolution, ServiceSource};
use meshsim_compiler::World;
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::Capture;
use meshsim_proxy::Proxy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::apps::{self, AppKind, EchoIdentity};
use crate::ca::Ca;
use crate::logs::LogCollector;
use crate::network::{Network, PodNet};

/// On a Secret without data: meshsim issues a certificate for these names
/// from the fake public CA (as `kubectl create secret tls` would install one).
pub const GENERATE_CERT_ANNOTATION: &str = "meshsim.io/generate-cert";

pub use meshsim_compiler::world::INGRESS_IP;

#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Seeds every random choice (weighted picks, request ids).
    pub seed: u64,
    /// Print access logs to stderr as they happen.
    pub echo_logs: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            echo_logs: false,
        }
    }
}

pub struct Mesh {
    pub world: World,
    pub net: Arc<Network>,
    pub proxies: BTreeMap<String, Proxy>,
    pub logs: Arc<LogCollector>,
    pub mesh_ca: Arc<Ca>,
    pub public_ca: Arc<Ca>,
    /// Gateway Service external address and port → real localhost socket,
    /// gateway proxy id and the target port its listener binds.
    pub ingress: BTreeMap<(Ipv4Addr, u16), IngressPort>,
    /// Proxy id → admin socket.
    pub admin: BTreeMap<String, SocketAddr>,
    /// Problems met while starting (missing secrets...), reported to users.
    pub warnings: Vec<String>,
}

/// Binds `127.0.0.1:0` with a deep accept queue (load tests open
/// thousands of connections at once).
pub async fn bind() -> Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4().context("socket")?;
    sock.bind((Ipv4Addr::LOCALHOST, 0).into())
        .context("bind 127.0.0.1:0")?;
    sock.listen(4096).context("listen")
}

impl Mesh {
    pub async fn start(world: World, opts: MeshOptions) -> Result<Mesh> {
        let net = Arc::new(Network::new(&world.settings.cluster_domain));
        let mesh_ca = Arc::new(Ca::new("meshsim mesh CA (cluster.local)")?);
        let public_ca = Arc::new(Ca::new("meshsim Public Root CA")?);
        let logs = Arc::new(LogCollector::new(opts.echo_logs));
        let mut warnings = Vec::new();
        let domain = world.settings.cluster_domain.clone();

        // Pods: applications.
        for pod in &world.pods {
            let ip = IpAddr::V4(pod.ip);
            net.add_pod(
                ip,
                PodNet {
                    name: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                    ..Default::default()
                },
            );
            if pod.role == PodRole::Gateway {
                continue;
            }
            let kind = apps::app_for(
                &pod.image,
                pod.annotations
                    .get(meshsim_compiler::world::APP_ANNOTATION)
                    .map(String::as_str),
            );
            if kind == AppKind::Client {
                continue;
            }
            let mut ports: Vec<u16> = pod.container_ports.iter().map(|(p, _)| *p).collect();
            for svc in world.services_selecting(pod) {
                for sp in &svc.ports {
                    if let Some(tp) = pod.resolve_target_port(&sp.target_port, sp.port) {
                        ports.push(tp);
                    }
                }
            }
            ports.sort_unstable();
            ports.dedup();
            let id = Arc::new(EchoIdentity {
                pod: pod.name.clone(),
                namespace: pod.namespace.clone(),
                version: pod
                    .labels
                    .get("version")
                    .cloned()
                    .unwrap_or_else(|| "v1".into()),
                host: None,
            });
            // nginx with a mounted nginx.conf proxies; otherwise it serves.
            let nginx_conf = if kind == AppKind::Nginx {
                nginx_config(&world, pod)
            } else {
                None
            };
            if let Some(conf) = &nginx_conf {
                ports.extend(conf.listen.iter().copied());
                ports.sort_unstable();
                ports.dedup();
            }
            for port in ports {
                let l = bind().await?;
                net.set_pod_app(ip, port, l.local_addr()?);
                match &nginx_conf {
                    Some(conf) => {
                        tokio::spawn(crate::nginx::serve(
                            l,
                            conf.clone(),
                            id.clone(),
                            net.clone(),
                            ip,
                        ));
                    }
                    None => {
                        tokio::spawn(apps::serve_echo(l, id.clone(), None));
                    }
                }
            }
        }

        // Services: kube-proxy and DNS.
        let mut vips: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
        let mut external_hosts: Vec<(String, Vec<IpAddr>)> = Vec::new();
        for svc in &world.services {
            if svc.source == ServiceSource::Kubernetes {
                for addr in &svc.addresses {
                    let Ok(vip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    net.add_dns(&svc.hostname, vip);
                    for p in &svc.ports {
                        let eps = svc
                            .endpoints
                            .iter()
                            .filter_map(|e| {
                                Some(SocketAddr::new(
                                    e.address.parse().ok()?,
                                    *e.ports.get(&p.port)?,
                                ))
                            })
                            .collect();
                        vips.insert(SocketAddr::new(vip, p.port), eps);
                    }
                }
                if svc.resolution == Resolution::Passthrough {
                    if let Some(first) = svc.endpoints.first().and_then(|e| e.address.parse().ok())
                    {
                        net.add_dns(&svc.hostname, first);
                    }
                }
            } else if !svc.hostname.starts_with('*')
                && !svc.hostname.ends_with(&format!(".svc.{domain}"))
            {
                // An internet host: served by an external server; its
                // ServiceEntry addresses (if any) reach the same server.
                external_hosts.push((
                    svc.hostname.clone(),
                    svc.addresses
                        .iter()
                        .filter_map(|a| a.parse::<IpAddr>().ok())
                        .collect::<Vec<_>>(),
                ));
            }
        }
        net.set_vips(vips);
        for pod in &world.pods {
            // StatefulSet pods behind a headless Service: web-0.nginx.NS.svc.DOMAIN.
            if pod.owner.starts_with("StatefulSet/") {
                for svc in world.services_selecting(pod).filter(|s| s.is_headless()) {
                    net.add_dns(
                        &format!("{}.{}", pod.name, svc.hostname),
                        IpAddr::V4(pod.ip),
                    );
                }
            }
        }

        // The rest of the internet (names no ServiceEntry declares, reached
        // through PassthroughCluster under ALLOW_ANY): one catch-all server,
        // HTTPS with a certificate for whatever name the client sends.
        let (plain, tls) = (bind().await?, bind().await?);
        net.set_internet(plain.local_addr()?, tls.local_addr()?);
        let anyone = Arc::new(EchoIdentity {
            pod: String::new(),
            namespace: String::new(),
            version: String::new(),
            host: Some(String::new()),
        });
        let mut any_tls =
            rustls::ServerConfig::builder_with_provider(meshsim_proxy::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(CertPerName {
                    ca: public_ca.clone(),
                    cache: std::sync::Mutex::new(HashMap::new()),
                }));
        any_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio::spawn(apps::serve_echo(plain, anyone.clone(), None));
        tokio::spawn(apps::serve_echo(tls, anyone, Some(Arc::new(any_tls))));

        // External hosts: one "internet" server each, HTTPS on 443.
        external_hosts.sort();
        external_hosts.dedup_by(|a, b| a.0 == b.0);
        for (i, (host, vips)) in external_hosts.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + (i % 240) as u8));
            net.add_dns(host, ip);
            let id = Arc::new(EchoIdentity {
                pod: host.clone(),
                namespace: String::new(),
                version: String::new(),
                host: Some(host.clone()),
            });
            let ck = public_ca.server(std::slice::from_ref(host))?;
            // Internet hosts accept (but do not require) client certificates
            // from the public CA, and echo them: MUTUAL origination shows.
            let mut roots = rustls::RootCertStore::empty();
            roots.add(public_ca.root())?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                meshsim_proxy::tls::provider(),
            )
            .allow_unauthenticated()
            .build()?;
            let tls = rustls::ServerConfig::builder_with_provider(meshsim_proxy::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(ck.chain, ck.key)?;
            let mut tls = tls;
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let tls = Arc::new(tls);
            // The ports the internet host serves: the usual ones plus every
            // port (and targetPort) ServiceEntries declare for it. TLS where
            // the real host would speak it (443, 8443, HTTPS/TLS ports).
            let mut ports: Vec<(u16, bool)> =
                vec![(80, false), (443, true), (8080, false), (8443, true)];
            for svc in world.services.iter().filter(|s| &s.hostname == host) {
                for p in &svc.ports {
                    let tls = matches!(
                        p.protocol,
                        meshsim_compiler::protocol::Protocol::Https
                            | meshsim_compiler::protocol::Protocol::Tls
                    );
                    ports.push((p.port, tls || p.port == 443));
                    if let Some(meshsim_model::common::IntOrString::Int(t)) = &p.target_port {
                        if let Ok(t) = u16::try_from(*t) {
                            ports.push((t, t == 443 || t == 8443 || tls));
                        }
                    }
                }
            }
            // TLS wins when one port is listed both ways.
            ports.sort_unstable_by_key(|(p, tls)| (*p, !*tls));
            ports.dedup_by_key(|(p, _)| *p);
            for (port, is_tls) in ports {
                let l = bind().await?;
                net.add_external(SocketAddr::new(ip, port), l.local_addr()?);
                for vip in vips {
                    net.add_external(SocketAddr::new(*vip, port), l.local_addr()?);
                }
                tokio::spawn(apps::serve_echo(l, id.clone(), is_tls.then(|| tls.clone())));
            }
        }

        // Credentials for gateways: Secrets, or generated from the public CA.
        let credentials = gateway_credentials(&world, &public_ca, &mut warnings)?;

        // Proxies.
        let compiled = meshsim_compiler::compile_all(&world);
        let mut proxies = BTreeMap::new();
        let mut admin = BTreeMap::new();
        let mut ingress = BTreeMap::new();
        for (i, tables) in compiled.into_iter().enumerate() {
            let Some(pod) = world.pods.iter().find(|p| p.id() == tables.proxy.id) else {
                continue;
            };
            let ip = IpAddr::V4(pod.ip);
            let env = Arc::new(ProxyEnv {
                net: net.clone(),
                ip,
                namespace: pod.namespace.clone(),
                workload: mesh_ca.workload(&pod.identity(&world.mesh.trust_domain))?,
                mesh_root: mesh_ca.root(),
                public_root: public_ca.root(),
                credentials: credentials.clone(),
                public_ca: public_ca.clone(),
            });
            let proxy = Proxy::new(tables, env, logs.clone(), opts.seed.wrapping_add(i as u64));
            for w in proxy.warnings() {
                warnings.push(format!("{}: {w}", proxy.id()));
            }
            let (out_l, in_l, admin_l) = (bind().await?, bind().await?, bind().await?);
            let mut pn = net.pod(ip).unwrap_or_default();
            pn.capture = Some((out_l.local_addr()?, in_l.local_addr()?));
            net.add_pod(ip, pn);
            admin.insert(proxy.id().to_string(), admin_l.local_addr()?);
            tokio::spawn(proxy.clone().serve_capture(out_l, Capture::Outbound));
            tokio::spawn(proxy.clone().serve_capture(in_l, Capture::Inbound));
            tokio::spawn(proxy.clone().serve_admin(admin_l));
            if pod.role == PodRole::Gateway {
                for svc in world.services_selecting(pod) {
                    let Some(external) = svc.external_ip else {
                        continue;
                    };
                    for sp in &svc.ports {
                        let Some(tp) = pod.resolve_target_port(&sp.target_port, sp.port) else {
                            continue;
                        };
                        let l = bind().await?;
                        // The load balancer sends to the first replica.
                        ingress.entry((external, sp.port)).or_insert(IngressPort {
                            real: l.local_addr()?,
                            proxy: proxy.id().to_string(),
                            service: format!("{}.{}", svc.name, svc.namespace),
                            target_port: tp,
                        });
                        if tp == 15021 {
                            // The gateway's status port: Envoy's readiness
                            // endpoint, what load balancers health-check.
                            tokio::spawn(apps::serve_readiness(l));
                        } else {
                            tokio::spawn(proxy.clone().serve_port(l, tp));
                        }
                    }
                }
            }
            proxies.insert(proxy.id().to_string(), proxy);
        }
        Ok(Mesh {
            world,
            net,
            proxies,
            logs,
            mesh_ca,
            public_ca,
            ingress,
            admin,
            warnings,
        })
    }

    pub fn proxy(&self, id: &str) -> Option<&Proxy> {
        self.proxies.get(id)
    }

    /// The control plane's push: recompiles every proxy's tables for `world`
    /// and swaps them in. Established connections keep flowing; new
    /// connections and requests follow the new tables. Workloads (pods,
    /// their applications) are those the mesh started with.
    pub fn push(&mut self, world: World) {
        for tables in meshsim_compiler::compile_all(&world) {
            if let Some(p) = self.proxies.get(&tables.proxy.id) {
                p.update(tables);
            }
        }
        self.world = world;
    }

    /// Opens a real localhost port that enters the mesh as pod `from`
    /// connecting to `dst` (its sidecar captures it, as iptables would):
    /// how a real client — curl, nginx, a browser — talks from inside a pod.
    pub async fn expose(&self, from: IpAddr, dst: SocketAddr) -> Result<SocketAddr> {
        let l = bind().await?;
        let addr = l.local_addr()?;
        let net = self.net.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = l.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let net = net.clone();
                tokio::spawn(async move {
                    if let Ok((mut up, _)) = net.connect_app(from, dst).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Ok(addr)
    }

    /// Pushes tables to one proxy only (a control plane that has reached
    /// some proxies but not others).
    pub fn push_to(&self, world: &World, proxy_id: &str) -> bool {
        let Some(pod) = world.pods.iter().find(|p| p.id() == proxy_id) else {
            return false;
        };
        let Some(p) = self.proxies.get(proxy_id) else {
            return false;
        };
        p.update(meshsim_compiler::compile_proxy(world, pod));
        true
    }
}

/// The nginx.conf of a pod: the first mounted ConfigMap value with nginx
/// directives in it.
fn nginx_config(
    world: &World,
    pod: &meshsim_compiler::world::Pod,
) -> Option<Arc<crate::nginx::NginxConf>> {
    pod.config_maps
        .iter()
        .filter_map(|cm| {
            world
                .config_maps
                .iter()
                .find(|c| c.meta.name == *cm && c.meta.ns() == pod.namespace)
        })
        .flat_map(|c| c.spec.values())
        .find(|v| v.contains("proxy_pass") || v.contains("listen"))
        .map(|text| Arc::new(crate::nginx::parse(text)))
}

/// Gateway `credentialName`s: from Secrets (`tls.crt`, `tls.key`,
/// `ca.crt`), else a certificate from the fake public CA for the hosts of
/// the servers that name it (as if the user had created the secret).
fn gateway_credentials(
    world: &World,
    public_ca: &Ca,
    warnings: &mut Vec<String>,
) -> Result<Arc<HashMap<String, Credential>>> {
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &world.gateways {
        for s in &g.spec.servers {
            if let Some(cn) = s.tls.as_ref().and_then(|t| t.credential_name.clone()) {
                let e = hosts.entry(cn).or_default();
                for h in &s.hosts {
                    let h = h.rsplit('/').next().unwrap_or(h);
                    if h != "*" {
                        e.push(h.to_string());
                    }
                }
            }
        }
    }
    let mut out = HashMap::new();
    for (name, mut hs) in hosts {
        if let Some(secret) = world.secrets.iter().find(|s| s.meta.name == name) {
            if let Some(names) = secret.meta.annotations.get(GENERATE_CERT_ANNOTATION) {
                let names: Vec<String> = names
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                out.insert(
                    name.clone(),
                    Credential {
                        cert: public_ca.server(&names)?,
                        ca: vec![public_ca.root()],
                    },
                );
                continue;
            }
            let certs: Vec<CertificateDer<'static>> = secret
                .spec
                .data
                .get("tls.crt")
                .map(|b| {
                    CertificateDer::pem_slice_iter(b)
                        .filter_map(|c| c.ok())
                        .collect()
                })
                .unwrap_or_default();
            let key = secret
                .spec
                .data
                .get("tls.key")
                .and_then(|b| PrivateKeyDer::from_pem_slice(b).ok());
            let ca: Vec<CertificateDer<'static>> = secret
                .spec
                .data
                .get("ca.crt")
                .map(|b| {
                    CertificateDer::pem_slice_iter(b)
                        .filter_map(|c| c.ok())
                        .collect()
                })
                .unwrap_or_default();
            match key {
                Some(key) if !certs.is_empty() => {
                    out.insert(
                        name.clone(),
                        Credential {
                            cert: CertifiedKey { chain: certs, key },
                            ca,
                        },
                    );
                    continue;
                }
                _ => warnings.push(format!(
                    "secret {name}: no usable tls.crt/tls.key; generating a certificate instead"
                )),
            }
        }
        hs.sort();
        hs.dedup();
        if hs.is_empty() {
            hs.push("localhost".into());
        }
        let cert = public_ca.server(&hs)?;
        out.insert(
            name,
            Credential {
                cert,
                ca: vec![public_ca.root()],
            },
        );
    }
    Ok(Arc::new(out))
}

#[derive(Debug, Clone)]
pub struct IngressPort {
    pub real: SocketAddr,
    pub proxy: String,
    /// The gateway Service, `NAME.NAMESPACE`.
    pub service: String,
    pub target_port: u16,
}

#[derive(Clone)]
pub struct Credential {
    pub cert: CertifiedKey,
    pub ca: Vec<CertificateDer<'static>>,
}

/// One proxy's environment: its pod's network, DNS, and istio-agent's SDS.
struct ProxyEnv {
    net: Arc<Network>,
    ip: IpAddr,
    namespace: String,
    workload: CertifiedKey,
    mesh_root: CertificateDer<'static>,
    public_root: CertificateDer<'static>,
    credentials: Arc<HashMap<String, Credential>>,
    public_ca: Arc<Ca>,
}

impl Environment for ProxyEnv {
    fn connect(&self, dst: SocketAddr) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (s, local) = self.net.connect_direct(self.ip, dst).await?;
            Ok((Box::new(s) as BoxIo, local))
        })
    }

    fn resolve(&self, host: &str) -> Option<IpAddr> {
        self.net.resolve(&self.namespace, host)
    }

    fn certificate(&self, name: &str) -> Option<CertifiedKey> {
        if name == "default" {
            return Some(self.workload.clone());
        }
        let cn = name.strip_prefix("kubernetes://")?;
        match self.credentials.get(cn) {
            Some(c) => Some(c.cert.clone()),
            // A credential that appeared after start (a pushed Gateway):
            // meshsim issues one, as if the secret had been created.
            None => self.public_ca.server(&[cn.to_string()]).ok(),
        }
    }

    fn trust_roots(&self, name: Option<&str>) -> Vec<CertificateDer<'static>> {
        match name {
            Some("ROOTCA") => vec![self.mesh_root.clone()],
            Some(n) => n
                .strip_prefix("kubernetes://")
                .and_then(|n| n.strip_suffix("-cacert"))
                .and_then(|cn| self.credentials.get(cn))
                .map(|c| c.ca.clone())
                .unwrap_or_else(|| vec![self.public_root.clone()]),
            None => vec![self.public_root.clone()],
        }
    }
}

/// The catch-all internet server's certificates: one per SNI name, issued
/// by the fake public CA on first use.
#[derive(Debug)]
struct CertPerName {
    ca: Arc<Ca>,
    cache: std::sync::Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
}

impl rustls::server::ResolvesServerCert for CertPerName {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let name = hello
            .server_name()
            .unwrap_or("internet.example")
            .to_ascii_lowercase();
        if let Some(ck) = self.cache.lock().ok()?.get(&name) {
            return Some(ck.clone());
        }
        let issued = self.ca.server(std::slice::from_ref(&name)).ok()?;
        let key = meshsim_proxy::tls::provider()
            .key_provider
            .load_private_key(issued.key)
            .ok()?;
        let ck = Arc::new(rustls::sign::CertifiedKey::new(issued.chain, key));
        self.cache.lock().ok()?.insert(name, ck.clone());
        Some(ck)
    }
}
