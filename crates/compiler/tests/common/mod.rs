//! Helpers for the compiler's rule tests: a world from YAML at an Istio
//! version, and one proxy's tables.

#![allow(dead_code)]

use meshsim_compiler::{compile_proxy, find_proxy, IstioVersion, NamespaceFlag, Settings, World};
use meshsim_tables::ProxyTables;

pub fn world_with(yaml: &str, version: &str) -> World {
    let loaded = meshsim_model::parse_str("test.yaml", yaml);
    let settings = Settings {
        istio_version: IstioVersion::parse(version).expect("v"),
        ..Settings::default()
    };
    let (w, diags) = World::from_loaded(loaded, settings, &NamespaceFlag::Unset);
    assert!(!diags.has_errors(), "{}", diags.error_text());
    w
}

pub fn tables(yaml: &str, proxy: &str) -> ProxyTables {
    let w = world_with(yaml, "1.28.0");
    let p = find_proxy(&w, proxy).expect("proxy");
    compile_proxy(&w, p)
}

/// Load errors of `yaml` (empty when it loads).
pub fn load_errors(yaml: &str) -> String {
    let loaded = meshsim_model::parse_str("test.yaml", yaml);
    let (_, diags) = World::from_loaded(loaded, Settings::default(), &NamespaceFlag::Unset);
    diags.error_text()
}
