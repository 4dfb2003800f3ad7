//! Secrets, as istio-agent's SDS serves them to a proxy: the workload
//! certificate (`default`) and mesh root (`ROOTCA`) from the mesh CA, and
//! gateway credentials (`kubernetes://NAME`, `kubernetes://NAME-cacert`)
//! from Secrets — or, where the user named a credential without creating
//! it, issued by the fake public CA as if they had. Credentials are
//! replaced as one map on every change, so pushed Gateways see new Secrets.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use meshsim_compiler::World;
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::Ca;
use crate::error::Result;
use crate::network::Network;

/// On a Secret without data: meshsim issues a certificate for these names
/// from the fake public CA (as `kubectl create secret tls` would install one).
pub const GENERATE_CERT_ANNOTATION: &str = "meshsim.io/generate-cert";

#[derive(Clone)]
pub struct Credential {
    pub cert: CertifiedKey,
    pub ca: Vec<CertificateDer<'static>>,
}

/// The secrets every proxy of the mesh can ask for.
pub struct Sds {
    pub mesh_ca: Arc<Ca>,
    pub public_ca: Arc<Ca>,
    credentials: ArcSwap<HashMap<String, Credential>>,
}

impl Sds {
    pub fn new(mesh_ca: Arc<Ca>, public_ca: Arc<Ca>) -> Self {
        Self {
            mesh_ca,
            public_ca,
            credentials: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Reloads gateway credentials for `world`; problems (a Secret without
    /// a usable key) come back as warnings.
    pub fn load(&self, world: &World) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let creds = gateway_credentials(world, &self.public_ca, &mut warnings)?;
        self.credentials.store(Arc::new(creds));
        Ok(warnings)
    }

    fn credential(&self, name: &str) -> Option<Credential> {
        self.credentials.load().get(name).cloned()
    }
}

/// Gateway `credentialName`s: from Secrets (`tls.crt`, `tls.key`,
/// `ca.crt`), else a certificate from the fake public CA for the hosts of
/// the servers that name it (as if the user had created the secret).
fn gateway_credentials(
    world: &World,
    public_ca: &Ca,
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, Credential>> {
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
                let cert = public_ca.server(&names)?;
                out.insert(
                    name,
                    Credential {
                        cert,
                        ca: vec![public_ca.root()],
                    },
                );
                continue;
            }
            match from_secret(&secret.spec.data) {
                Some(c) => {
                    out.insert(name, c);
                    continue;
                }
                None => warnings.push(format!(
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
    Ok(out)
}

fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Option<Credential> {
    let pems = |k: &str| -> Vec<CertificateDer<'static>> {
        data.get(k)
            .map(|b| {
                CertificateDer::pem_slice_iter(b)
                    .filter_map(|c| c.ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let chain = pems("tls.crt");
    let key = data
        .get("tls.key")
        .and_then(|b| PrivateKeyDer::from_pem_slice(b).ok())?;
    (!chain.is_empty()).then(|| Credential {
        cert: CertifiedKey { chain, key },
        ca: pems("ca.crt"),
    })
}

/// One proxy's environment: its pod's network, DNS, and the SDS secrets.
pub struct ProxyEnv {
    pub net: Arc<Network>,
    pub ip: IpAddr,
    pub namespace: String,
    pub workload: CertifiedKey,
    pub sds: Arc<Sds>,
}

impl Environment for ProxyEnv {
    fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (s, local) = match source {
                // iptables lets 127.0.0.6 → the pod's own IP reach the
                // application (Istio's inbound clusters since 1.10).
                Some(src) if dst.ip() == self.ip => {
                    self.net.connect_own_app(self.ip, dst.port(), src).await?
                }
                _ => self.net.connect_direct(self.ip, dst).await?,
            };
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
        match self.sds.credential(cn) {
            Some(c) => Some(c.cert),
            // A credential no Gateway named when secrets were loaded:
            // meshsim issues one, as if the secret had been created.
            None => self.sds.public_ca.server(&[cn.to_string()]).ok(),
        }
    }

    fn trust_roots(&self, name: Option<&str>) -> Vec<CertificateDer<'static>> {
        match name {
            Some("ROOTCA") => vec![self.sds.mesh_ca.root()],
            Some(n) => n
                .strip_prefix("kubernetes://")
                .and_then(|n| n.strip_suffix("-cacert"))
                .and_then(|cn| self.sds.credential(cn))
                .map(|c| c.ca)
                .unwrap_or_else(|| vec![self.sds.public_ca.root()]),
            None => vec![self.sds.public_ca.root()],
        }
    }
}

/// The catch-all internet server's certificates: one per SNI name, issued
/// by the fake public CA on first use.
#[derive(Debug)]
pub struct CertPerName {
    pub ca: Arc<Ca>,
    pub cache: std::sync::Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
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
