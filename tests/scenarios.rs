//! One test per scenario directory (`cargo test -p meshsim-tests --test
//! scenarios -- <name>` runs one). A failing scenario prints its transcript.

use libtest_mimic::{Arguments, Failed, Trial};
use meshsim_tests::root;

fn main() {
    // The fd-limit scenario re-runs this binary as a proxy process.
    meshsim_scenario::process::maybe_child();
    let args = Arguments::from_args();
    let files = meshsim_scenario::runner::discover(&root().join("scenarios"));
    let trials = files
        .into_iter()
        .map(|f| {
            let name = f
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| Failed::from(e.to_string()))?;
                let report = rt.block_on(meshsim_scenario::run_scenario(&f));
                if report.passed {
                    Ok(())
                } else {
                    Err(Failed::from(report.transcript()))
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
