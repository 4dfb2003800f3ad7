//! `meshsim export envoy`: a proxy's tables as a bootstrap a stock Envoy
//! starts with, plus the certificate files its secrets name — workload
//! certificate and mesh root from a mesh CA, gateway credentials from
//! Secrets (or issued, as the mesh would), the public CA as the system
//! trust store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshsim_compiler::World;
use meshsim_proxy::env::CertifiedKey;
use meshsim_tables::envoy::admin::pem;
use meshsim_tables::envoy::export::{export, Export, ExportOptions, SecretFiles};
use meshsim_tables::ProxyTables;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::Ca;
use crate::error::{MeshError, Result};
use crate::sds::Sds;

pub(crate) fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain
        .iter()
        .map(|c| pem("CERTIFICATE", c.as_ref()))
        .collect()
}

fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem(label, key.secret_der())
}

/// Writes what a secret name stands for under `dir`; its file names.
fn write_secret(
    dir: &Path,
    name: &str,
    tables: &ProxyTables,
    env: &crate::sds::ProxyEnv,
) -> Result<SecretFiles> {
    use meshsim_proxy::env::Environment;
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let write = |suffix: &str, text: String| -> Result<String> {
        let p = dir.join(format!("{safe}-{suffix}.pem"));
        std::fs::write(&p, text).map_err(|e| MeshError::io(format!("write {}", p.display()), e))?;
        Ok(p.to_string_lossy().into_owned())
    };
    let mut f = SecretFiles::default();
    let ca_name = match name {
        "ROOTCA" => Some("ROOTCA"),
        "file-root:system" => None,
        n if n.ends_with("-cacert") => Some(n),
        _ => {
            let ck: CertifiedKey = env.certificate(name).ok_or_else(|| {
                MeshError::NotFound(format!("secret {name} for {}", tables.proxy.id))
            })?;
            f.certificate_chain = Some(write("cert", chain_pem(&ck.chain))?);
            f.private_key = Some(write("key", key_pem(&ck.key))?);
            return Ok(f);
        }
    };
    let roots = env.trust_roots(ca_name);
    f.trusted_ca = Some(write("ca", chain_pem(&roots))?);
    Ok(f)
}

/// Proxy `id` of `world` with the secrets it would be served, without a
/// running mesh: its tables and an environment whose SDS issues from
/// fresh CAs (workload certificate, mesh root, gateway credentials).
pub fn offline(world: &World, id: &str) -> Result<(ProxyTables, crate::sds::ProxyEnv)> {
    let pod =
        meshsim_compiler::find_proxy(world, id).map_err(|e| MeshError::NotFound(e.to_string()))?;
    let tables = meshsim_compiler::compile_proxy(world, pod);
    let sds = Arc::new(Sds::new(
        Arc::new(Ca::new("meshsim mesh CA (cluster.local)")?),
        Arc::new(Ca::new("meshsim Public Root CA")?),
    ));
    sds.load(world)?;
    let env = crate::sds::ProxyEnv {
        net: Arc::new(crate::network::Network::new(&world.settings.cluster_domain)),
        ip: std::net::IpAddr::V4(pod.ip),
        namespace: pod.namespace.clone(),
        workload: sds
            .mesh_ca
            .workload(&pod.identity(&world.mesh.trust_domain))?,
        sds: sds.clone(),
    };
    Ok((tables, env))
}

/// Exports proxy `id` of `world` into `dir`: `bootstrap.yaml` and the
/// certificate files it names. Returns the export (bootstrap and notes).
pub fn export_envoy(
    world: &World,
    id: &str,
    dir: &Path,
    mut opts: ExportOptions,
) -> Result<Export> {
    let (tables, env) = offline(world, id)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| MeshError::io(format!("create {}", dir.display()), e))?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)
        .map_err(|e| MeshError::io(format!("create {}", certs.display()), e))?;
    for name in meshsim_tables::envoy::admin::secret_names(&tables) {
        if let std::collections::btree_map::Entry::Vacant(e) = opts.secrets.entry(name) {
            let files = write_secret(&certs, e.key(), &tables, &env)?;
            e.insert(files);
        }
    }
    if opts.admin.0.is_empty() {
        opts.admin = ("127.0.0.1".into(), 15000);
    }
    let out = export(&tables, &opts);
    let file: PathBuf = dir.join("bootstrap.yaml");
    std::fs::write(&file, out.to_yaml())
        .map_err(|e| MeshError::io(format!("write {}", file.display()), e))?;
    Ok(out)
}

/// Listener names that take connections in a proxy's tables (capture or
/// gateway ports), for callers building `binds`.
pub fn bound_listeners(t: &ProxyTables) -> BTreeMap<String, u16> {
    t.listeners
        .iter()
        .filter(|l| l.bind_to_port)
        .map(|l| (l.name.clone(), l.address.socket_address.port_value))
        .collect()
}

/// What `istioctl proxy-config` reads from a proxy, without a running
/// mesh: its config dump (with EDS and secrets) and `/clusters?format=json`.
pub struct ProxyDump {
    pub tables: ProxyTables,
    pub config_dump: serde_json::Value,
    pub clusters: serde_json::Value,
}

/// The dump of proxy `id` of `world` (secrets issued by fresh CAs).
pub fn proxy_dump(world: &World, id: &str) -> Result<ProxyDump> {
    use meshsim_proxy::env::Environment;
    let (tables, env) = offline(world, id)?;
    let meta = meshsim_tables::envoy::DumpMeta {
        version_info: "meshsim/1".into(),
        last_updated: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        secrets: meshsim_proxy::admin::dump_secrets(&env, &tables),
    };
    let config_dump = meshsim_tables::envoy::config_dump(&tables, &meta);
    let clusters = meshsim_tables::envoy::admin::clusters_status(&tables, &|h| env.resolve(h));
    Ok(ProxyDump {
        tables,
        config_dump,
        clusters,
    })
}
