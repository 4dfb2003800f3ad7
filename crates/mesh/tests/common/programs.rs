//! Tests that need a real program (curl, nginx, Chromium, Envoy) run in a
//! libtest-mimic harness: a test whose program is missing shows as
//! *ignored* in the test runner's own summary, with the program named —
//! never as a pass. Under `CI=true` (where `.ci/run` installs them) a
//! missing program fails the test.

use std::future::Future;
use std::pin::Pin;

use libtest_mimic::{Arguments, Failed, Trial};

pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One test and the programs it needs.
pub struct Real {
    pub name: &'static str,
    pub needs: &'static [&'static str],
    pub run: fn() -> TestFuture,
}

/// Whether `program` is an executable file on the PATH.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs `tests` as this binary's tests and exits.
pub fn run_all(tests: Vec<Real>) -> ! {
    let args = Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|t| {
            let missing: Vec<&str> = t.needs.iter().copied().filter(|p| !installed(p)).collect();
            let kind = t.needs.join("+");
            let run = t.run;
            let trial = if missing.is_empty() {
                Trial::test(t.name, move || block_on(run()))
            } else {
                let why = format!(
                    "not installed: {} (.ci/run installs it)",
                    missing.join(", ")
                );
                let ci = under_ci();
                let trial = Trial::test(t.name, move || {
                    Err(Failed::from(if ci {
                        format!("CI=true and {why}")
                    } else {
                        why
                    }))
                });
                trial.with_ignored_flag(!ci)
            };
            trial.with_kind(kind)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

fn block_on(f: TestFuture) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    rt.block_on(f);
    Ok(())
}
