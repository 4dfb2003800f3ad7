//! Checking a step's expectations against what was observed; each check
//! is a verdict with the expected and observed values.

use std::collections::BTreeMap;

use meshsim_mesh::curl::CurlResponse;
use meshsim_mesh::logs::LogLine;

use super::steps::{Observed, Runner};
use super::StepReport;
use crate::expect::{self, count_matches, describe, Verdict};
use crate::format::Expect;

impl Runner {
    pub(super) fn check(&self, e: &Expect, o: &Observed, logs: &[LogLine], sr: &mut StepReport) {
        let responses = &o.responses;
        let crashed = o.crashed.clone();
        let StepReport {
            verdicts: v,
            transcript,
            ..
        } = sr;
        if let Some(s) = e.status {
            let observed: Vec<String> = responses
                .iter()
                .map(|r| {
                    r.status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| r.error.clone().unwrap_or_default())
                })
                .collect();
            let ok = !responses.is_empty() && responses.iter().all(|r| r.status == Some(s));
            v.push(Verdict::new(
                "status",
                ok,
                s.to_string(),
                summarize(&observed),
            ));
        }
        for (i, re) in e.responses.iter().enumerate() {
            let r = responses.get(i);
            if let Some(s) = re.status {
                v.push(Verdict::new(
                    format!("response {} status", i + 1),
                    r.and_then(|r| r.status) == Some(s),
                    s.to_string(),
                    r.map(describe).unwrap_or_else(|| "no response".into()),
                ));
            }
            if let Some(b) = &re.body_contains {
                v.push(Verdict::new(
                    format!("response {} body", i + 1),
                    r.is_some_and(|r| expect::body(r).contains(b.as_str())),
                    format!("containing {b:?}"),
                    r.map(describe).unwrap_or_default(),
                ));
            }
            if let Some(c) = &re.client_error {
                v.push(Verdict::new(
                    format!("response {} client error", i + 1),
                    r.and_then(|r| r.error.as_ref())
                        .is_some_and(|x| x.contains(c.as_str())),
                    format!("containing {c:?}"),
                    r.map(describe).unwrap_or_default(),
                ));
            }
        }
        for (k, want) in &e.header {
            let got: Vec<String> = responses
                .iter()
                .map(|r| r.header(k).unwrap_or("-").to_string())
                .collect();
            v.push(Verdict::new(
                format!("header {k}"),
                !got.is_empty() && got.iter().all(|g| g == want),
                want.clone(),
                summarize(&got),
            ));
        }
        if let Some(b) = &e.body_contains {
            let ok = !responses.is_empty()
                && responses
                    .iter()
                    .all(|r| expect::body(r).contains(b.as_str()));
            v.push(Verdict::new(
                "body",
                ok,
                format!("containing {b:?}"),
                responses.first().map(describe).unwrap_or_default(),
            ));
        }
        if let Some(b) = &e.body_not_contains {
            let ok = responses
                .iter()
                .all(|r| !expect::body(r).contains(b.as_str()));
            v.push(Verdict::new(
                "body",
                ok,
                format!("not containing {b:?}"),
                responses.first().map(describe).unwrap_or_default(),
            ));
        }
        if let Some(c) = &e.client_error {
            let errs: Vec<String> = responses
                .iter()
                .map(|r| {
                    r.error
                        .clone()
                        .unwrap_or_else(|| format!("HTTP {}", r.status.unwrap_or(0)))
                })
                .collect();
            let ok = !responses.is_empty()
                && responses
                    .iter()
                    .all(|r| r.error.as_ref().is_some_and(|x| x.contains(c.as_str())));
            v.push(Verdict::new(
                "client error",
                ok,
                format!("containing {c:?}"),
                summarize(&errs),
            ));
        }
        for le in &e.logs {
            let matching = logs.iter().filter(|l| expect::log_matches(l, le)).count();
            let of_proxy: Vec<String> = logs
                .iter()
                .filter(|l| l.proxy.starts_with(&le.proxy))
                .map(|l| l.line.trim_end().to_string())
                .collect();
            let observed = if of_proxy.is_empty() {
                format!("no line from {}", le.proxy)
            } else {
                of_proxy.last().cloned().unwrap_or_default()
            };
            if le.absent {
                v.push(Verdict::new(
                    format!("log {} (absent)", le.proxy),
                    matching == 0,
                    format!("no {}", expect::describe_log_expect(le)),
                    if matching == 0 {
                        "none".into()
                    } else {
                        observed
                    },
                ));
            } else {
                v.push(Verdict::new(
                    format!("log {}", le.proxy),
                    matching > 0,
                    expect::describe_log_expect(le),
                    observed,
                ));
            }
        }
        for (status, rule) in &e.status_counts {
            let n = responses
                .iter()
                .filter(|r| r.status.map(|s| s.to_string()).as_deref() == Some(status.as_str()))
                .count() as u64;
            v.push(Verdict::new(
                format!("count of {status}"),
                count_matches(rule, n),
                rule.clone(),
                format!("{n} of {}", responses.len()),
            ));
        }
        for (flag, rule) in &e.flag_counts {
            let n = logs
                .iter()
                .filter(|l| l.entry.flags_string().split(',').any(|f| f == flag))
                .count() as u64;
            v.push(Verdict::new(
                format!("log lines flagged {flag}"),
                count_matches(rule, n),
                rule.clone(),
                n.to_string(),
            ));
        }
        if !e.split.is_empty() {
            let tol = e.tolerance.unwrap_or(0.1);
            let total = responses.len().max(1) as f64;
            let mut worst = 0.0f64;
            let mut shares = Vec::new();
            for (needle, want) in &e.split {
                let share = responses
                    .iter()
                    .filter(|r| expect::body(r).contains(needle.as_str()))
                    .count() as f64
                    / total;
                worst = worst.max((share - want).abs());
                shares.push(format!("{needle:?} {share:.2} (weight {want:.2})"));
                if e.split_deviates_at_least.is_none() {
                    v.push(Verdict::new(
                        format!("share of {needle:?}"),
                        (share - want).abs() <= tol,
                        format!("{want:.2} ± {tol:.2}"),
                        format!("{share:.2} of {}", responses.len()),
                    ));
                }
            }
            transcript.push(format!(
                "  observed split over {} requests: {}",
                responses.len(),
                shares.join(", ")
            ));
            if let Some(d) = e.split_deviates_at_least {
                v.push(Verdict::new(
                    "split far from the weights",
                    worst >= d,
                    format!("some share off by >= {d:.2}"),
                    format!("largest deviation {worst:.2}"),
                ));
            }
        }
        if !e.bodies_include_all.is_empty() {
            for needle in &e.bodies_include_all {
                let n = responses
                    .iter()
                    .filter(|r| expect::body(r).contains(needle.as_str()))
                    .count();
                v.push(Verdict::new(
                    format!("some responses contain {needle:?}"),
                    n > 0,
                    "at least one",
                    format!("{n} of {}", responses.len()),
                ));
            }
        }
        if !e.proxy_status.is_empty() {
            let rows = self.mesh.status();
            transcript.push("$ istioctl proxy-status".into());
            for l in meshsim_mesh::status::table(&rows).lines() {
                transcript.push(format!("  {l}"));
            }
            for (id, want) in &e.proxy_status {
                let got = rows
                    .iter()
                    .find(|r| &r.id == id)
                    .map(|r| if r.synced { "SYNCED" } else { "STALE" })
                    .unwrap_or("unknown proxy");
                v.push(Verdict::new(
                    format!("proxy-status {id}"),
                    got == want,
                    want.clone(),
                    got,
                ));
            }
        }
        for (id, counters) in &e.stats {
            let stats = self.mesh.proxy(id).map(|p| p.stats()).unwrap_or_default();
            for (name, rule) in counters {
                let n: u64 = stats
                    .iter()
                    .filter(|(k, _)| k == name || k.ends_with(name.as_str()))
                    .map(|(_, v)| *v)
                    .sum();
                v.push(Verdict::new(
                    format!("{id} stat {name}"),
                    count_matches(rule, n),
                    rule.clone(),
                    n.to_string(),
                ));
            }
        }
        for (id, patches) in &e.patches {
            let outcomes = self
                .mesh
                .proxy(id)
                .map(|p| p.tables().envoy_filter_patches)
                .unwrap_or_default();
            for (ef, want) in patches {
                let got: Vec<&meshsim_tables::PatchOutcome> =
                    outcomes.iter().filter(|o| &o.envoy_filter == ef).collect();
                let applied = got.iter().any(|o| o.applied);
                let detail = got
                    .iter()
                    .map(|o| o.detail.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                v.push(Verdict::new(
                    format!("EnvoyFilter {ef} on {id}"),
                    !got.is_empty() && applied == *want,
                    if *want { "applied" } else { "not applied" },
                    format!(
                        "{} ({detail})",
                        if applied { "applied" } else { "not applied" }
                    ),
                ));
            }
        }
        for c in &e.config {
            use meshsim_tables::display::{self, Kind};
            let kind = match c.kind.as_str() {
                "listeners" => Kind::Listeners,
                "routes" => Kind::Routes,
                "clusters" => Kind::Clusters,
                "endpoints" => Kind::Endpoints,
                "secrets" => Kind::Secrets,
                _ => Kind::All,
            };
            let text = self
                .mesh
                .proxy(&c.proxy)
                .map(|p| {
                    display::render(
                        &p.display_sources(),
                        kind,
                        display::Format::Short,
                        &Default::default(),
                    )
                })
                .unwrap_or_default();
            if let Some(s) = &c.contains {
                v.push(Verdict::new(
                    format!("proxy-config {} {}", c.kind, c.proxy),
                    text.contains(s.as_str()),
                    format!("containing {s:?}"),
                    first_lines(&text),
                ));
            }
            if let Some(s) = &c.not_contains {
                v.push(Verdict::new(
                    format!("proxy-config {} {}", c.kind, c.proxy),
                    !text.contains(s.as_str()),
                    format!("not containing {s:?}"),
                    first_lines(&text),
                ));
            }
        }
        if let Some(want) = e.crashed {
            let (got, stderr) = crashed.clone().unwrap_or((false, String::new()));
            v.push(Verdict::new(
                "proxy process crashed",
                got == want,
                want.to_string(),
                got.to_string(),
            ));
            if let Some(s) = &e.stderr_contains {
                v.push(Verdict::new(
                    "proxy process stderr",
                    stderr.contains(s.as_str()),
                    format!("containing {s:?}"),
                    stderr
                        .lines()
                        .find(|l| l.contains("critical"))
                        .unwrap_or("(no critical line)")
                        .to_string(),
                ));
            }
        }
    }
}

fn summarize(v: &[String]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in v {
        *by.entry(s.as_str()).or_default() += 1;
    }
    if by.len() == 1 && v.len() == 1 {
        return v[0].clone();
    }
    by.iter()
        .map(|(k, n)| format!("{n} x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().take(6).collect();
    format!("{} ...", lines.join(" | "))
}

/// `meshsim explain`'s predictions against what the requests met: each
/// response's status (or curl's error), and the flags the predicted proxy
/// logged. Under load a pool's overflow (503 UO) is allowed besides.
pub(super) fn explain_verdict(
    predictions: &[(meshsim_mesh::explain::Prediction, bool)],
    responses: &[CurlResponse],
    logs: &[LogLine],
) -> Verdict {
    use std::collections::BTreeMap;
    let mut wrong: Vec<String> = Vec::new();
    let mut expected_flags: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let load = predictions.iter().any(|(_, l)| *l);
    for (i, ((p, l), r)) in predictions.iter().zip(responses).enumerate() {
        if let Some(d) = meshsim_mesh::explain::response_disagreement(p, r, *l) {
            wrong.push(format!("request {}: {d}", i + 1));
        }
        if let Some(px) = p.proxy.as_ref().filter(|_| !p.flags_vary) {
            expected_flags
                .entry(px.as_str())
                .or_default()
                .push(p.flags.clone());
        }
    }
    for (px, mut want) in expected_flags {
        let mut got: Vec<String> = logs
            .iter()
            .filter(|l| meshsim_mesh::explain::same_proxy(&l.proxy, px))
            .map(|l| l.entry.flags_string())
            .collect();
        want.sort();
        got.sort();
        let ok = if load {
            got.iter().all(|g| want.contains(g) || g == "UO")
        } else {
            want == got
        };
        if !ok {
            wrong.push(format!("{px} flags: predicted {want:?}, logged {got:?}"));
        }
    }
    let summary = |p: &meshsim_mesh::explain::Prediction| match (&p.client_error, p.status) {
        (Some(e), _) => format!("curl: {e}"),
        (None, Some(s)) => format!("{s} {}", p.flags),
        (None, None) => format!("app's answer {}", p.flags),
    };
    let mut predicted: Vec<String> = predictions.iter().map(|(p, _)| summary(p)).collect();
    predicted.dedup();
    Verdict::new(
        "explain prediction",
        wrong.is_empty(),
        predicted.join("; "),
        if wrong.is_empty() {
            format!("as predicted: {}", predicted.join("; "))
        } else {
            wrong.join("; ")
        },
    )
}
