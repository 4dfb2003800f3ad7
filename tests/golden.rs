//! Golden tests of compiled tables for the configurations of Istio's
//! "Traffic Management Problems" page. Each `tests/golden/<case>/case.txt`
//! names input files, an Istio version and what to show for which proxy;
//! `expected.txt` holds the istioctl-style tables (reviewed by hand against
//! istiod's rules). `MESHSIM_BLESS=1 cargo test -p meshsim-tests --test golden`
//! re-blesses after an intended change.

use meshsim_tables::display::{self, Format, Kind};
use meshsim_tests::{check_golden, root, world};

fn run_case(dir: &std::path::Path) -> Result<(), String> {
    let spec = std::fs::read_to_string(dir.join("case.txt")).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    let mut version = meshsim_compiler::IstioVersion::DEFAULT.to_string();
    let mut shows = Vec::new();
    for line in spec
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("file") => files.extend(words.map(String::from)),
            Some("istio-version") => version = words.next().unwrap_or_default().to_string(),
            Some("show") => {
                let proxy = words.next().unwrap_or_default().to_string();
                shows.push((proxy, words.map(String::from).collect::<Vec<_>>()));
            }
            other => return Err(format!("case.txt: unknown directive {other:?}")),
        }
    }
    let file_refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let w = world(&file_refs, &version);
    let mut out = String::new();
    for (proxy, kinds) in shows {
        let pod = meshsim_compiler::find_proxy(&w, &proxy).map_err(|e| e.to_string())?;
        let t = meshsim_compiler::compile_proxy(&w, pod);
        for k in kinds {
            let kind = match k.as_str() {
                "listeners" => Kind::Listeners,
                "routes" => Kind::Routes,
                "clusters" => Kind::Clusters,
                "endpoints" => Kind::Endpoints,
                "secrets" => Kind::Secrets,
                "all" => Kind::All,
                "patches" => {
                    out.push_str(&format!(
                        "=== {proxy} patches ===\n{}\n",
                        display::patch_table(&t.envoy_filter_patches)
                    ));
                    continue;
                }
                other => return Err(format!("unknown kind {other}")),
            };
            let src = display::Sources::from_tables(&t);
            let body = display::render(&src, kind, Format::Short, &Default::default());
            out.push_str(&format!("=== {proxy} {k} ===\n{body}\n"));
        }
    }
    check_golden(&dir.join("expected.txt"), &out)
}

#[test]
fn golden_tables() {
    let base = root().join("tests/golden");
    let mut dirs: Vec<_> = std::fs::read_dir(&base)
        .expect("tests/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.txt").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no golden cases found");
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| run_case(d).err().map(|e| format!("[{}] {e}", d.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
