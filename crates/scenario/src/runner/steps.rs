//! Executing a scenario's steps on one running mesh: each step's change
//! goes through the mesh's control plane (pushes with the scenario's
//! delay; only changed workloads restart), then its wait, then its
//! traffic; the access-log lines it caused and the expectations follow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_mesh::curl::{CurlRequest, CurlResponse, From, HttpVersion};
use meshsim_mesh::logs::{prefixed, LogLine};
use meshsim_mesh::process::ProcessLoad;
use meshsim_mesh::{Change, Mesh, MeshOptions};
use meshsim_model::common::Duration as YamlDuration;

use super::{ScenarioReport, StepReport};
use crate::expect::{self, count_matches, describe, Verdict};
use crate::format::{
    ChangeSpec, LoadSpec, ProcessSpec, RequestSpec, Scenario, SessionSpec, Step, Traffic, Wait,
};

/// How long `waitSynced` waits at most.
const SYNC_WAIT: Duration = Duration::from_secs(30);

pub(super) struct Runner {
    dir: PathBuf,
    /// Files applied so far (a proxy process loads them itself).
    files: Vec<PathBuf>,
    settings: Settings,
    pub(super) mesh: Arc<Mesh>,
    /// The scenario declares its `analyze` messages: they are checked.
    checks_analyze: bool,
}

/// What a step's traffic saw.
#[derive(Default)]
pub(super) struct Observed {
    pub responses: Vec<CurlResponse>,
    /// The process step: whether it crashed, and its stderr.
    pub crashed: Option<(bool, String)>,
    /// The process step: how many requests got a 200.
    pub answered: Option<u64>,
    /// `meshsim explain`'s prediction for each request sent, made from the
    /// tables the proxies held just before it was sent; `true` when the
    /// requests were concurrent load (a pool's overflow is allowed).
    pub predictions: Vec<(meshsim_mesh::explain::Prediction, bool)>,
}

fn parse_dur(s: &str) -> Result<Duration> {
    YamlDuration::parse(s)
        .map(|d| Duration::from_millis(d.millis))
        .map_err(|e| anyhow!(e))
}

impl Runner {
    pub(super) async fn run(sc: &Scenario, dir: &Path, report: &mut ScenarioReport) -> Result<()> {
        let version = match &sc.istio_version {
            Some(v) => IstioVersion::parse(v)
                .ok_or_else(|| anyhow!("istioVersion {v:?}: expected MAJOR.MINOR[.PATCH]"))?,
            None => IstioVersion::DEFAULT,
        };
        let compatibility_version = match &sc.compatibility_version {
            Some(c) => Some(
                meshsim_compiler::features::parse_compatibility_version(c)
                    .ok_or_else(|| anyhow!("compatibilityVersion {c:?}: expected 1.MINOR"))?,
            ),
            None => None,
        };
        let settings = Settings {
            istio_version: version,
            compatibility_version,
            ..Settings::default()
        };
        let files: Vec<PathBuf> = sc.resources.iter().map(|f| dir.join(f)).collect();
        let (world, diags) = World::load(&files, settings.clone(), &NamespaceFlag::Unset);
        if diags.has_errors() {
            bail!("invalid resources:\n{}", diags.error_text());
        }
        let opts = MeshOptions {
            seed: sc.seed.unwrap_or(1),
            push_delay: sc
                .push_delay
                .as_deref()
                .map(parse_dur)
                .transpose()?
                .unwrap_or_default(),
            ..MeshOptions::default()
        };
        let mesh = Arc::new(Mesh::start(world, opts).await?);
        let mut r = Runner {
            dir: dir.to_path_buf(),
            files,
            settings,
            mesh,
            checks_analyze: sc.analyze.is_some(),
        };
        let mut setup = StepReport {
            name: "start the mesh".into(),
            transcript: vec![format!("$ kubectl apply -f {}", sc.resources.join(" -f "))],
            verdicts: vec![],
        };
        setup.transcript.push(format!(
            "  istio {version}; proxies: {}",
            r.mesh.proxy_ids().join(", ")
        ));
        for w in r.mesh.warnings() {
            setup.transcript.push(format!("  warning: {w}"));
        }
        for d in diags.warnings() {
            setup.transcript.push(format!("  {d}"));
        }
        r.analyze(sc.analyze.as_deref(), &mut setup);
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
        r.mesh.shutdown().await;
        Ok(())
    }

    async fn step(&mut self, step: &Step, sr: &mut StepReport) -> Result<()> {
        let before = self.mesh.logs().len();
        if let Some(c) = &step.change {
            self.change(c, sr).await?;
        }
        match (&step.change, &step.expect.analyze) {
            (_, Some(expected)) => self.analyze(Some(expected), sr),
            (Some(_), None) => self.analyze(self.checks_analyze.then_some(&[]), sr),
            (None, None) => {}
        }
        match &step.wait {
            Some(Wait::For(w)) => {
                sr.transcript.push(format!("$ sleep {w}"));
                tokio::time::sleep(parse_dur(w)?).await;
            }
            Some(Wait::Synced) => {
                let t0 = tokio::time::Instant::now();
                self.mesh.wait_synced(SYNC_WAIT).await;
                sr.transcript.push(format!(
                    "$ istioctl proxy-status   (all SYNCED after {:.1}s)",
                    t0.elapsed().as_secs_f64()
                ));
            }
            None => {}
        }
        let observed = match &step.traffic {
            Some(t) => self.traffic(t, sr).await?,
            None => Observed::default(),
        };
        let logs = self.mesh.logs().settle(before).await;
        self.transcribe(&observed.responses, &logs, sr);
        if let (Some(rule), Some(n)) = (&step.expect.answered, observed.answered) {
            sr.verdicts.push(Verdict::new(
                "requests answered 200",
                count_matches(rule, n),
                rule.clone(),
                n.to_string(),
            ));
        }
        self.check(&step.expect, &observed, &logs, sr);
        if !observed.predictions.is_empty() {
            sr.verdicts.push(super::check::explain_verdict(
                &observed.predictions,
                &observed.responses,
                &logs,
            ));
        }
        Ok(())
    }

    /// `meshsim analyze -A` on the configuration as it now stands: the
    /// messages (`CODE Kind namespace/name`) must be exactly `expected`
    /// when it is given.
    fn analyze(&self, expected: Option<&[String]>, sr: &mut StepReport) {
        let world = self.mesh.world();
        let msgs = meshsim_compiler::analyze::analyze(&world, None, &[]);
        sr.transcript.push("$ meshsim analyze -A".into());
        for m in &msgs {
            sr.transcript.push(format!("  {m}"));
        }
        let got: std::collections::BTreeSet<String> = msgs
            .iter()
            .map(|m| format!("{} {}", m.code, m.origin()))
            .collect();
        let Some(expected) = expected else { return };
        let want: std::collections::BTreeSet<String> = expected.iter().cloned().collect();
        let show = |s: &std::collections::BTreeSet<String>| {
            if s.is_empty() {
                "no messages".to_string()
            } else {
                s.iter().cloned().collect::<Vec<_>>().join("; ")
            }
        };
        sr.verdicts.push(Verdict::new(
            "analyze",
            got == want,
            show(&want),
            show(&got),
        ));
    }

    /// `istioctl upgrade`, `kubectl delete`, then `kubectl apply` (a step
    /// that replaces objects deletes the old file's first), as one change
    /// through the mesh's control plane.
    async fn change(&mut self, c: &ChangeSpec, sr: &mut StepReport) -> Result<()> {
        let mut changes = Vec::new();
        if let Some(v) = &c.upgrade {
            let version = IstioVersion::parse(v)
                .ok_or_else(|| anyhow!("upgrade {v:?}: expected MAJOR.MINOR[.PATCH]"))?;
            self.settings.istio_version = version;
            sr.transcript.push(format!(
                "$ istioctl upgrade --set tag={v}   (proxies restart on {v})"
            ));
            changes.push(Change::Upgrade(version));
        }
        let path = |f: &String| self.dir.join(f);
        if !c.delete.is_empty() {
            let paths: Vec<PathBuf> = c.delete.iter().map(path).collect();
            sr.transcript
                .push(format!("$ kubectl delete -f {}", c.delete.join(" -f ")));
            changes.push(Change::delete_files(&paths, &NamespaceFlag::Unset));
            self.files.retain(|f| !paths.contains(f));
        }
        if !c.apply.is_empty() {
            let paths: Vec<PathBuf> = c.apply.iter().map(path).collect();
            sr.transcript
                .push(format!("$ kubectl apply -f {}", c.apply.join(" -f ")));
            changes.push(Change::apply_files(&paths, &NamespaceFlag::Unset));
            self.files.retain(|f| !paths.contains(f));
            self.files.extend(paths);
        }
        let report = self.mesh.apply(changes).await?;
        if !c.delete.is_empty() && report.nothing_found() {
            bail!(
                "delete {}: nothing it names was applied",
                c.delete.join(", ")
            );
        }
        for o in &report.objects {
            sr.transcript.push(format!("  {o}"));
        }
        for w in report.warnings.warnings() {
            sr.transcript.push(format!("  {w}"));
        }
        let r = &report.restarts;
        for (what, list) in [
            ("started", &r.started),
            ("restarted", &r.restarted),
            ("stopped", &r.stopped),
        ] {
            if !list.is_empty() {
                sr.transcript
                    .push(format!("  ({what}: {})", list.join(", ")));
            }
        }
        if !report.pushed.is_empty() {
            sr.transcript.push(if report.push_delay.is_zero() {
                "  pushed to every proxy".to_string()
            } else {
                format!(
                    "  istiod pushes to each proxy after {:?}",
                    report.push_delay
                )
            });
        }
        Ok(())
    }

    async fn traffic(&mut self, t: &Traffic, sr: &mut StepReport) -> Result<Observed> {
        let mut o = Observed::default();
        match t {
            Traffic::Request(r) => o.responses = self.request(r, sr, &mut o.predictions).await?,
            Traffic::Session(s) => o.responses = self.session(s, sr, &mut o.predictions).await?,
            Traffic::Load(l) => o.responses = self.load(l, sr, &mut o.predictions).await?,
            Traffic::Process(p) => self.process(p, sr, &mut o).await?,
        }
        Ok(o)
    }

    /// `meshsim explain` for a request about to be sent, in the transcript.
    fn predict(
        &self,
        from: &From,
        req: &CurlRequest,
        sni: Option<&str>,
        sr: &mut StepReport,
    ) -> meshsim_mesh::explain::Prediction {
        let e = meshsim_mesh::explain::explain(&self.mesh, from, req, sni);
        for line in e.render().lines().filter(|l| !l.starts_with(' ')) {
            if line.starts_with("prediction")
                || line.starts_with("risk")
                || line.starts_with("documented")
            {
                sr.transcript.push(format!("  explain {line}"));
            }
        }
        e.prediction
    }

    async fn request(
        &self,
        r: &RequestSpec,
        sr: &mut StepReport,
        predictions: &mut Vec<(meshsim_mesh::explain::Prediction, bool)>,
    ) -> Result<Vec<CurlResponse>> {
        let from = self.from(r.from.as_deref())?;
        let req = curl_request(r)?;
        sr.transcript.push(curl_line(r));
        let mut out = Vec::new();
        for _ in 0..r.count.unwrap_or(1) {
            let p = self.predict(&from, &req, None, sr);
            predictions.push((p, false));
            out.push(self.mesh.curl(&from, &req).await);
        }
        sr.transcript.dedup();
        Ok(out)
    }

    async fn session(
        &self,
        s: &SessionSpec,
        sr: &mut StepReport,
        predictions: &mut Vec<(meshsim_mesh::explain::Prediction, bool)>,
    ) -> Result<Vec<CurlResponse>> {
        let from = self.from(s.from.as_deref())?;
        let (first, rest) = s
            .requests
            .split_first()
            .ok_or_else(|| anyhow!("session needs requests"))?;
        sr.transcript.push(format!(
            "$ (one connection, as a browser reuses it) {}",
            curl_line(first)
        ));
        let first_req = curl_request(first)?;
        predictions.push((self.predict(&from, &first_req, None, sr), false));
        let mut conn = match self.mesh.open(&from, &first_req).await {
            Ok(c) => c,
            Err(e) => return Ok(vec![e]),
        };
        // Later requests ride the first one's TLS session (its SNI).
        let sni = first_req
            .url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| h.parse::<std::net::IpAddr>().is_err())
            .map(str::to_string);
        let mut out = vec![conn.send(&first_req).await];
        for r in rest {
            sr.transcript
                .push(format!("  then on the same connection: {}", r.url));
            let req = curl_request(r)?;
            predictions.push((self.predict(&from, &req, sni.as_deref(), sr), false));
            out.push(conn.send(&req).await);
        }
        Ok(out)
    }

    async fn load(
        &self,
        l: &LoadSpec,
        sr: &mut StepReport,
        predictions: &mut Vec<(meshsim_mesh::explain::Prediction, bool)>,
    ) -> Result<Vec<CurlResponse>> {
        let from = self.from(l.from.as_deref())?;
        sr.transcript.push(format!(
            "$ load: {} connections x {} requests: {}",
            l.connections, l.requests, l.url
        ));
        let req = curl_request(&RequestSpec {
            url: l.url.clone(),
            ..Default::default()
        })?;
        let p = self.predict(&from, &req, None, sr);
        for _ in 0..l.connections * l.requests {
            predictions.push((p.clone(), true));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..l.connections {
            let (mesh, from, req, n) = (self.mesh.clone(), from.clone(), req.clone(), l.requests);
            tasks.spawn(async move {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(mesh.curl(&from, &req).await);
                }
                v
            });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.extend(r.unwrap_or_default());
        }
        Ok(out)
    }

    async fn process(&self, p: &ProcessSpec, sr: &mut StepReport, o: &mut Observed) -> Result<()> {
        sr.transcript.push(format!(
            "$ ulimit -n {} && meshsim proxy {}   # then {} concurrent connections",
            p.fd_limit, p.proxy, p.connections
        ));
        let spec = ProcessLoad {
            proxy: p.proxy.clone(),
            fd_limit: p.fd_limit,
            connections: p.connections,
        };
        let outcome =
            meshsim_mesh::process::run_under_load(&self.mesh, &self.files, &self.settings, &spec)
                .await?;
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
        o.crashed = Some((outcome.crashed, outcome.stderr));
        o.answered = Some(outcome.ok as u64);
        Ok(())
    }

    fn from(&self, spec: Option<&str>) -> Result<From> {
        let s = spec.unwrap_or("deploy/sleep");
        if s == "outside" {
            return Ok(From::Outside);
        }
        let world = self.mesh.world();
        match meshsim_compiler::find_pod(&world, s) {
            Ok(Some(p)) => Ok(From::Pod(p.name.clone(), p.namespace.clone())),
            Ok(None) => bail!("from {s}: no pod {s:?}"),
            Err(e) => bail!("from {s}: {e}"),
        }
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
                        format!("{s} {}", b.lines().next().unwrap_or(""))
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
