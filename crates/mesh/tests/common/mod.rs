//! Helpers the data-plane tests share: building a world from fixtures plus
//! inline YAML, starting a mesh, and curl-like requests with their logs.
#![allow(dead_code)]

pub mod programs;

use std::path::PathBuf;
use std::time::Duration;

use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_mesh::curl::{CurlRequest, CurlResponse, From};
use meshsim_mesh::logs::LogLine;
use meshsim_mesh::{Mesh, MeshOptions};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn world(files: &[&str], extra: &str, version: &str) -> World {
    let paths: Vec<PathBuf> = files.iter().map(|f| root().join(f)).collect();
    let mut loaded = meshsim_model::load_paths(&paths);
    loaded.extend(meshsim_model::parse_str("extra.yaml", extra));
    let settings = Settings {
        istio_version: IstioVersion::parse(version).expect("version"),
        ..Settings::default()
    };
    let (w, diags) = World::from_loaded(loaded, settings, &NamespaceFlag::Unset);
    assert!(!diags.has_errors(), "{}", diags.error_text());
    w
}

pub async fn start(files: &[&str], extra: &str) -> Mesh {
    start_v(files, extra, "1.28.0").await
}

pub async fn start_v(files: &[&str], extra: &str, version: &str) -> Mesh {
    let m = Mesh::start(world(files, extra, version), MeshOptions::default())
        .await
        .expect("mesh");
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
    m
}

pub fn sleep() -> From {
    From::Pod("sleep-0".into(), "default".into())
}

pub fn get(url: &str) -> CurlRequest {
    CurlRequest {
        url: url.into(),
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    }
}

/// Sends a request and returns the response with the log lines it caused.
pub async fn curl(mesh: &Mesh, from: &From, req: &CurlRequest) -> (CurlResponse, Vec<LogLine>) {
    mesh.curl_logged(from, req).await
}

pub fn line<'a>(logs: &'a [LogLine], proxy_prefix: &str) -> &'a str {
    logs.iter()
        .find(|l| l.proxy.starts_with(proxy_prefix))
        .map(|l| &*l.line)
        .unwrap_or_else(|| panic!("no log line from {proxy_prefix}: {logs:#?}"))
}

/// curl failed with `code`, its error line saying `says`.
pub fn assert_client_error(r: &CurlResponse, code: i32, says: &str) {
    assert_eq!(r.exit_code, code, "{r:?}");
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains(says)),
        "{r:?}"
    );
}

pub fn body(r: &CurlResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

pub const BOOKINFO: &[&str] = &["tests/fixtures/bookinfo"];

pub const HELLO: &[&str] = &[
    "scenarios/_shared/sleep.yaml",
    "scenarios/_shared/helloworld.yaml",
];
