//! Running scenarios: start the mesh for the resources, execute each step
//! through real sockets, check expectations, write the transcript.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_mesh::curl::{CurlRequest, CurlResponse, From, HttpVersion};
use meshsim_mesh::logs::{prefixed, LogLine};
use meshsim_mesh::{Mesh, MeshOptions};
use meshsim_model::common::Duration as YamlDuration;
use serde::Serialize;

use crate::expect::{self, count_matches, describe, Verdict};
use crate::format::{Expect, RequestSpec, Scenario, Step};

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

/// Runs every scenario found under `paths`, `parallel` at a time.
pub async fn run_path(paths: &[PathBuf], parallel: usize) -> Report {
    let files: Vec<PathBuf> = paths.iter().flat_map(|p| discover(p)).collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::new();
    for f in files {
        let sem = sem.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            run_scenario(&f).await
        }));
    }
    let mut scenarios = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            scenarios.push(r);
        }
    }
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
        passed: false,
        seconds: 0.0,
    };
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
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// The control plane's view: what each proxy has acknowledged.
#[derive(Default)]
struct ControlPlane {
    version: u64,
    acked: BTreeMap<String, u64>,
}

struct Runner {
    dir: PathBuf,
    files: Vec<PathBuf>,
    settings: Settings,
    seed: u64,
    push_delay: Duration,
    mesh: Arc<Mesh>,
    cp: Arc<Mutex<ControlPlane>>,
}

fn load_world(files: &[PathBuf], settings: &Settings) -> Result<World> {
    let (w, diags) = World::load(files, settings.clone(), &NamespaceFlag::Unset);
    if diags.has_errors() {
        bail!("invalid resources:\n{}", diags.error_text());
    }
    Ok(w)
}

fn pods_of(w: &World) -> Vec<(String, std::net::Ipv4Addr, bool)> {
    w.pods
        .iter()
        .map(|p| (p.id(), p.ip, p.is_proxy()))
        .collect()
}

/// ConfigMaps configure applications (nginx.conf): a change restarts them.
fn config_maps_of(w: &World) -> Vec<String> {
    w.config_maps
        .iter()
        .map(|c| format!("{}/{}: {:?}", c.meta.ns(), c.meta.name, c.spec))
        .collect()
}

fn parse_dur(s: &str) -> Result<Duration> {
    YamlDuration::parse(s)
        .map(|d| Duration::from_millis(d.millis))
        .map_err(|e| anyhow!(e))
}

impl Runner {
    async fn run(sc: &Scenario, dir: &Path, report: &mut ScenarioReport) -> Result<()> {
        let version = match &sc.istio_version {
            Some(v) => IstioVersion::parse(v)
                .ok_or_else(|| anyhow!("istioVersion {v:?}: expected MAJOR.MINOR[.PATCH]"))?,
            None => IstioVersion::DEFAULT,
        };
        let settings = Settings {
            istio_version: version,
            ..Settings::default()
        };
        let files: Vec<PathBuf> = sc.resources.iter().map(|f| dir.join(f)).collect();
        let world = load_world(&files, &settings)?;
        let seed = sc.seed.unwrap_or(1);
        let mesh = Mesh::start(
            world,
            MeshOptions {
                seed,
                echo_logs: false,
            },
        )
        .await?;
        let mut r = Runner {
            dir: dir.to_path_buf(),
            files,
            settings,
            seed,
            push_delay: sc
                .push_delay
                .as_deref()
                .map(parse_dur)
                .transpose()?
                .unwrap_or_default(),
            mesh: Arc::new(mesh),
            cp: Arc::new(Mutex::new(ControlPlane::default())),
        };
        r.sync_all();
        let mut setup = StepReport {
            name: "start the mesh".into(),
            transcript: vec![],
            verdicts: vec![],
        };
        setup
            .transcript
            .push(format!("$ kubectl apply -f {}", sc.resources.join(" -f ")));
        setup.transcript.push(format!(
            "  istio {version}; proxies: {}",
            r.mesh
                .proxies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for w in &r.mesh.warnings {
            setup.transcript.push(format!("  warning: {w}"));
        }
        report.steps.push(setup);
        for step in &sc.steps {
            let mut sr = StepReport {
                name: step.name.clone(),
                transcript: vec![],
                verdicts: vec![],
            };
            if let Err(e) = r.step(step, &mut sr).await {
                sr.verdicts.push(Verdict::new(
                    "step",
                    false,
                    "the step to run",
                    format!("{e:#}"),
                ));
            }
            report.steps.push(sr);
        }
        Ok(())
    }

    fn sync_all(&self) {
        if let Ok(mut cp) = self.cp.lock() {
            cp.version += 1;
            let v = cp.version;
            for id in self.mesh.proxies.keys() {
                cp.acked.insert(id.clone(), v);
            }
        }
    }

    fn proxy_status(&self) -> BTreeMap<String, &'static str> {
        let cp = self.cp.lock().unwrap_or_else(|e| e.into_inner());
        self.mesh
            .proxies
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    if cp.acked.get(id).copied().unwrap_or(0) >= cp.version {
                        "SYNCED"
                    } else {
                        "STALE"
                    },
                )
            })
            .collect()
    }

    /// `kubectl apply/delete`: recompute the world; push tables (after the
    /// control-plane delay) or, when workloads change, restart the mesh.
    async fn change(
        &mut self,
        apply: &[String],
        delete: &[String],
        sr: &mut StepReport,
    ) -> Result<()> {
        for f in apply {
            let p = self.dir.join(f);
            self.files.retain(|x| x != &p);
            self.files.push(p);
            sr.transcript.push(format!("$ kubectl apply -f {f}"));
        }
        for f in delete {
            let p = self.dir.join(f);
            let before = self.files.len();
            self.files.retain(|x| x != &p);
            if before == self.files.len() {
                bail!("delete {f}: it was not applied");
            }
            sr.transcript.push(format!("$ kubectl delete -f {f}"));
        }
        let world = load_world(&self.files, &self.settings)?;
        let apps_changed = config_maps_of(&world) != config_maps_of(&self.mesh.world);
        if pods_of(&world) != pods_of(&self.mesh.world)
            || world.services.len() != self.mesh.world.services.len()
            || apps_changed
        {
            let mesh = Mesh::start(
                world,
                MeshOptions {
                    seed: self.seed,
                    echo_logs: false,
                },
            )
            .await?;
            self.mesh = Arc::new(mesh);
            self.sync_all();
            sr.transcript
                .push("  (workloads changed: the mesh was restarted with the new objects)".into());
            return Ok(());
        }
        let version = {
            let mut cp = self.cp.lock().unwrap_or_else(|e| e.into_inner());
            cp.version += 1;
            cp.version
        };
        let world = Arc::new(world);
        if self.push_delay.is_zero() {
            for id in self.mesh.proxies.keys() {
                self.mesh.push_to(&world, id);
            }
            self.sync_all();
            sr.transcript.push("  pushed to every proxy".into());
        } else {
            sr.transcript.push(format!(
                "  istiod pushes to each proxy after {:?}",
                self.push_delay
            ));
            for id in self.mesh.proxies.keys().cloned() {
                let (mesh, world, cp, delay) = (
                    self.mesh.clone(),
                    world.clone(),
                    self.cp.clone(),
                    self.push_delay,
                );
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    mesh.push_to(&world, &id);
                    if let Ok(mut cp) = cp.lock() {
                        let a = cp.acked.entry(id).or_default();
                        *a = (*a).max(version);
                    }
                });
            }
        }
        Ok(())
    }

    fn from(&self, spec: Option<&str>) -> Result<From> {
        let s = spec.unwrap_or("deploy/sleep");
        if s == "outside" {
            return Ok(From::Outside);
        }
        let w = &self.mesh.world;
        let pod = meshsim_compiler::find_proxy(w, s).or_else(|_| {
            let (n, ns) = s.split_once('.').unwrap_or((s, "default"));
            w.pod(n.trim_start_matches("pod/"), ns)
                .ok_or_else(|| format!("no pod {s}"))
        });
        let pod = pod.map_err(|e| anyhow!("from {s}: {e}"))?;
        Ok(From::Pod(pod.name.clone(), pod.namespace.clone()))
    }

    fn curl_request(r: &RequestSpec) -> Result<CurlRequest> {
        let version = match r.http.as_deref() {
            None => HttpVersion::Default,
            Some("1.0") => HttpVersion::Http10,
            Some("1.1") => HttpVersion::Http11,
            Some("2") => HttpVersion::Http2,
            Some(v) => bail!("http: {v:?}: expected \"1.0\", \"1.1\" or \"2\""),
        };
        Ok(CurlRequest {
            url: r.url.clone(),
            method: r.method.clone(),
            headers: r.headers.clone(),
            data: r.data.clone(),
            insecure: r.insecure,
            version,
            resolve: r.resolve.clone(),
            connect_to: r.connect_to.clone(),
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        })
    }

    fn curl_line(r: &RequestSpec) -> String {
        let mut s = format!(
            "$ curl --from {}",
            r.from.as_deref().unwrap_or("deploy/sleep")
        );
        for h in &r.headers {
            s.push_str(&format!(" -H '{h}'"));
        }
        if let Some(v) = &r.http {
            s.push_str(&format!(" --http{v}"));
        }
        for x in &r.resolve {
            s.push_str(&format!(" --resolve {x}"));
        }
        if r.insecure {
            s.push_str(" -k");
        }
        s.push(' ');
        s.push_str(&r.url);
        if let Some(c) = r.count {
            s.push_str(&format!("   (x{c})"));
        }
        s
    }

    async fn settle(&self, before: usize) -> Vec<LogLine> {
        self.mesh.logs.settle(before).await
    }

    async fn step(&mut self, step: &Step, sr: &mut StepReport) -> Result<()> {
        let mut responses: Vec<CurlResponse> = Vec::new();
        let before = self.mesh.logs.len();
        let mut crashed: Option<(bool, String)> = None;
        let mut answered: Option<u64> = None;
        if let Some(v) = &step.upgrade {
            self.settings.istio_version = IstioVersion::parse(v)
                .ok_or_else(|| anyhow!("upgrade {v:?}: expected MAJOR.MINOR[.PATCH]"))?;
            sr.transcript.push(format!(
                "$ istioctl upgrade --set tag={v}   (proxies restart on {v})"
            ));
            let world = load_world(&self.files, &self.settings)?;
            self.mesh = Arc::new(
                Mesh::start(
                    world,
                    MeshOptions {
                        seed: self.seed,
                        echo_logs: false,
                    },
                )
                .await?,
            );
            self.sync_all();
        }
        if !step.apply.is_empty() || !step.delete.is_empty() {
            self.change(&step.apply, &step.delete, sr).await?;
        }
        if let Some(w) = &step.wait {
            let d = parse_dur(w)?;
            sr.transcript.push(format!("$ sleep {w}"));
            tokio::time::sleep(d).await;
        }
        if step.wait_synced {
            let t0 = Instant::now();
            while self.proxy_status().values().any(|s| *s != "SYNCED")
                && t0.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sr.transcript.push(format!(
                "$ istioctl proxy-status   (all SYNCED after {:.1}s)",
                t0.elapsed().as_secs_f64()
            ));
        }
        if let Some(r) = &step.request {
            let from = self.from(r.from.as_deref())?;
            let req = Self::curl_request(r)?;
            sr.transcript.push(Self::curl_line(r));
            for _ in 0..r.count.unwrap_or(1) {
                let resp = self.mesh.curl(&from, &req).await;
                responses.push(resp);
            }
        }
        if let Some(s) = &step.session {
            let from = self.from(s.from.as_deref())?;
            let first = s
                .requests
                .first()
                .ok_or_else(|| anyhow!("session needs requests"))?;
            let req0 = Self::curl_request(first)?;
            sr.transcript.push(format!(
                "$ (one connection, as a browser reuses it) {}",
                Self::curl_line(first)
            ));
            match self.mesh.open(&from, &req0).await {
                Ok(mut conn) => {
                    for r in &s.requests {
                        if !std::ptr::eq(r, first) {
                            sr.transcript
                                .push(format!("  then on the same connection: {}", r.url));
                        }
                        responses.push(conn.send(&Self::curl_request(r)?).await);
                    }
                }
                Err(e) => responses.push(e),
            }
        }
        if let Some(l) = &step.load {
            let from = self.from(l.from.as_deref())?;
            sr.transcript.push(format!(
                "$ load: {} connections x {} requests: {}",
                l.connections, l.requests, l.url
            ));
            let req = Self::curl_request(&RequestSpec {
                url: l.url.clone(),
                ..Default::default()
            })?;
            let mut tasks = Vec::new();
            for _ in 0..l.connections {
                let (mesh, from, req, n) =
                    (self.mesh.clone(), from.clone(), req.clone(), l.requests);
                tasks.push(tokio::spawn(async move {
                    let mut v = Vec::new();
                    for _ in 0..n {
                        v.push(mesh.curl(&from, &req).await);
                    }
                    v
                }));
            }
            for t in tasks {
                responses.extend(t.await.unwrap_or_default());
            }
        }
        if let Some(p) = &step.process {
            sr.transcript.push(format!(
                "$ ulimit -n {} && meshsim proxy {}   # then {} concurrent connections",
                p.fd_limit, p.proxy, p.connections
            ));
            let outcome =
                crate::process::run_under_load(&self.mesh, &self.files, &self.settings, p).await?;
            for l in outcome
                .stderr
                .lines()
                .filter(|l| l.contains("critical"))
                .take(3)
            {
                sr.transcript.push(format!("  {l}"));
            }
            sr.transcript.push(format!(
                "  process: {}; {} of {} requests answered 200",
                outcome.exit, outcome.ok, p.connections
            ));
            crashed = Some((outcome.crashed, outcome.stderr));
            answered = Some(outcome.ok as u64);
        }
        let logs = self.settle(before).await;
        self.transcribe(&responses, &logs, sr);
        if let (Some(rule), Some(n)) = (&step.expect.answered, answered) {
            sr.verdicts.push(Verdict::new(
                "requests answered 200",
                count_matches(rule, n),
                rule.clone(),
                n.to_string(),
            ));
        }
        self.check(&step.expect, &responses, &logs, crashed, sr);
        Ok(())
    }

    fn transcribe(&self, responses: &[CurlResponse], logs: &[LogLine], sr: &mut StepReport) {
        if responses.len() <= 3 {
            for r in responses {
                sr.transcript.push(format!("< {}", describe(r)));
            }
        } else {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for r in responses {
                let k = match (&r.error, r.status) {
                    (Some(e), _) => e.clone(),
                    (None, Some(s)) => {
                        let b = expect::body(r);
                        let first = b.lines().next().unwrap_or("").to_string();
                        format!("{s} {first}")
                    }
                    _ => "none".into(),
                };
                *by.entry(k).or_default() += 1;
            }
            for (k, n) in by {
                sr.transcript.push(format!("< {n:>4} x {k}"));
            }
        }
        let shown = if logs.len() > 8 { &logs[..6] } else { logs };
        for l in shown {
            sr.transcript.push(format!("  {}", prefixed(l)));
        }
        if logs.len() > shown.len() {
            sr.transcript.push(format!(
                "  ... and {} more access-log lines",
                logs.len() - shown.len()
            ));
        }
    }
}

mod check;
