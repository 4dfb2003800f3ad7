//! Running scenarios: start the mesh for the resources, execute each step
//! through real sockets, check expectations, write the transcript.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::expect::Verdict;
use crate::format::Scenario;

mod check;
mod steps;

use steps::Runner;

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub transcript: Vec<String>,
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub path: String,
    pub section: String,
    pub summary: String,
    pub steps: Vec<StepReport>,
    /// A problem that stopped the scenario (bad file, mesh failed to start).
    pub error: Option<String>,
    /// Why a failure may not be the configuration's: this process ran out
    /// of file descriptors while the scenario ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub passed: bool,
    pub seconds: f64,
}

impl ScenarioReport {
    /// The transcript a person reads.
    pub fn transcript(&self) -> String {
        let mut s = format!("### {} — {}\n", self.name, self.section);
        for line in self.summary.trim().lines() {
            s.push_str(&format!("# {line}\n"));
        }
        for (i, st) in self.steps.iter().enumerate() {
            s.push_str(&format!("\n== step {}: {}\n", i + 1, st.name));
            for l in &st.transcript {
                s.push_str(l);
                s.push('\n');
            }
            for v in &st.verdicts {
                s.push_str(&v.render());
                s.push('\n');
            }
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("ERROR: {e}\n"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("{h}\n"));
        }
        s.push_str(&format!(
            "=> {} ({:.1}s)\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.seconds
        ));
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioReport>,
    pub passed: usize,
    pub failed: usize,
}

/// Scenario files under `path`: a `scenario.yaml`, a directory holding one,
/// or a directory of such directories.
pub fn discover(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let direct = path.join("scenario.yaml");
    if direct.is_file() {
        return vec![direct];
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(path) {
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            out.extend(discover(&d));
        }
    }
    out
}

/// Runs every scenario found under `paths`, `parallel` at a time; the
/// report keeps the order they were found in.
pub async fn run_path(paths: &[PathBuf], parallel: usize) -> Report {
    let files: Vec<PathBuf> = paths.iter().flat_map(|p| discover(p)).collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, f) in files.into_iter().enumerate() {
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            (i, run_scenario(&f).await)
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(r) = r {
            done.push(r);
        }
    }
    done.sort_by_key(|(i, _)| *i);
    let scenarios: Vec<ScenarioReport> = done.into_iter().map(|(_, r)| r).collect();
    let passed = scenarios.iter().filter(|s| s.passed).count();
    Report {
        failed: scenarios.len() - passed,
        passed,
        scenarios,
    }
}

pub fn parse(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut field = String::new();
    let r = serde_saphyr::with_deserializer_from_str(&text, |de| {
        serde_path_to_error::deserialize::<_, Scenario>(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    });
    r.map_err(|e| {
        let loc = e
            .location()
            .map(|l| format!("{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        anyhow!("{}:{loc}: {field}: {}", path.display(), e.without_snippet())
    })
}

/// Runs one scenario file.
pub async fn run_scenario(path: &Path) -> ScenarioReport {
    let started = Instant::now();
    let mut report = ScenarioReport {
        name: path.display().to_string(),
        path: path.display().to_string(),
        section: String::new(),
        summary: String::new(),
        steps: vec![],
        error: None,
        hint: None,
        passed: false,
        seconds: 0.0,
    };
    let fd_events = meshsim_mesh::fdlimit::exhaustion_events();
    match parse(path) {
        Ok(sc) => {
            report.name = sc.name.clone();
            report.section = sc.section.clone();
            report.summary = sc.summary.clone();
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            if let Err(e) = Runner::run(&sc, &dir, &mut report).await {
                report.error = Some(format!("{e:#}"));
            }
        }
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    report.passed =
        report.error.is_none() && report.steps.iter().all(|s| s.verdicts.iter().all(|v| v.ok));
    if !report.passed {
        report.hint = meshsim_mesh::fdlimit::hint_if(fd_events, &[]);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
