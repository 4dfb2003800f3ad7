//! Helpers shared by the cross-crate tests: loading a configuration the way
//! the CLI does, and golden-file comparison with a re-bless switch.

use std::path::{Path, PathBuf};

use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};

/// The workspace root (tests refer to `scenarios/...` from there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Loads files (relative to the workspace root) into a world; panics with
/// every diagnostic if the input has errors.
pub fn world(files: &[&str], version: &str) -> World {
    let paths: Vec<PathBuf> = files.iter().map(|f| root().join(f)).collect();
    let settings = Settings {
        istio_version: IstioVersion::parse(version).expect("version"),
        ..Settings::default()
    };
    let (world, diags) = World::load(&paths, settings, &NamespaceFlag::Unset);
    assert!(
        !diags.has_errors(),
        "input has errors:\n{}",
        diags.error_text()
    );
    world
}

/// Compares `actual` with the golden file; `MESHSIM_BLESS=1` rewrites it.
pub fn check_golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("MESHSIM_BLESS").is_some() {
        std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run with MESHSIM_BLESS=1 to create it)",
            path.display()
        )
    })?;
    if expected == actual {
        return Ok(());
    }
    let mut diff = String::new();
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            diff.push_str(&format!(
                "line {}:\n  expected: {e}\n  actual:   {a}\n",
                i + 1
            ));
        }
    }
    if expected.lines().count() != actual.lines().count() {
        diff.push_str(&format!(
            "expected {} lines, got {}\n",
            expected.lines().count(),
            actual.lines().count()
        ));
    }
    Err(format!(
        "{} differs (MESHSIM_BLESS=1 to accept):\n{diff}",
        path.display()
    ))
}
