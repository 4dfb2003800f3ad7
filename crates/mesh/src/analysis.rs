//! `istioctl analyze`'s command line on meshsim's analyzers: output
//! formats (`-o log|json|yaml`, istioctl `util/formatting`), thresholds,
//! suppressions, scope, the closing lines and the exit code
//! (istioctl `pkg/analyze/analyze.go`).

use std::fmt::Write as _;

use meshsim_compiler::analyze::{analyze, level_of, Level, Message, Suppression};
use serde::{Deserialize, Serialize};

use crate::remote::Reply;

/// istioctl's exit code when analyzers report at the failure threshold.
pub const FOUND_ISSUES: u8 = 79;

/// `istioctl analyze [-n NS | -A] [-o FMT] [--suppress ...]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeRequest {
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    /// `log` (default), `json`, `yaml`.
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub failure_threshold: Option<String>,
    #[serde(default)]
    pub output_threshold: Option<String>,
    #[serde(default)]
    pub suppress: Vec<String>,
    /// The files analyzed (istioctl names them in its success line).
    #[serde(default)]
    pub files: Vec<String>,
}

/// One message as `-o json|yaml` prints it (diag.Message.Unstructured:
/// keys in Go's sorted map order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Unstructured<'a> {
    code: &'a str,
    documentation_url: String,
    level: &'a str,
    message: &'a str,
    origin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
}

fn threshold(v: Option<&str>, default: Level, flag: &str) -> Result<Level, String> {
    match v {
        None => Ok(default),
        Some(s) => Level::parse(s).ok_or_else(|| {
            format!("invalid argument {s:?} for \"--{flag}\" flag: valid options are [Info Warning Error]")
        }),
    }
}

/// istioctl analyze's stdout, stderr and exit code for `world`.
pub fn analyze_report(world: &meshsim_compiler::World, req: &AnalyzeRequest) -> Reply {
    let mut r = Reply::default();
    let fail = |msg: String| Reply {
        code: 1,
        stderr: format!("Error: {msg}\n"),
        ..Default::default()
    };
    let failure = match threshold(
        req.failure_threshold.as_deref(),
        Level::Error,
        "failure-threshold",
    ) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let output = match threshold(
        req.output_threshold.as_deref(),
        Level::Info,
        "output-threshold",
    ) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let format = req.output.as_deref().unwrap_or("log");
    if !["log", "json", "yaml"].contains(&format) {
        return fail(format!(
            "invalid format, expected one of [log json yaml] but got {format:?}"
        ));
    }
    let mut suppress = Vec::new();
    for s in &req.suppress {
        match Suppression::parse(s) {
            Ok(s) => {
                if level_of(&s.code).is_none() {
                    let _ = writeln!(
                        r.stderr,
                        "Warning: Supplied message code '{}' is an unknown message code and will not have any effect.",
                        s.code
                    );
                }
                suppress.push(s);
            }
            Err(e) => return fail(e),
        }
    }
    let ns = req.namespace.as_deref().unwrap_or("default");
    let scope = (!req.all_namespaces).then_some(ns);
    let target = match scope {
        Some(ns) => format!("namespace: {ns}"),
        None => "all namespaces".to_string(),
    };
    let all = analyze(world, scope, &suppress);
    let shown: Vec<&Message> = all.iter().filter(|m| m.level.at_least(output)).collect();
    let v = world.settings.istio_version;
    let docs = format!(
        "https://istio.io/v{}.{}/docs/reference/config/analysis",
        v.major, v.minor
    );
    let body = match format {
        "json" | "yaml" => {
            let items: Vec<Unstructured> = shown
                .iter()
                .map(|m| Unstructured {
                    code: m.code,
                    documentation_url: doc_url(&docs, m.code),
                    level: m.level.name(),
                    message: &m.text,
                    origin: m.origin(),
                    reference: (!m.reference.is_empty()).then_some(m.reference.as_str()),
                })
                .collect();
            if format == "json" {
                go_json(&items)
            } else {
                serde_saphyr::to_string(&items).unwrap_or_default()
            }
        }
        _ => shown
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    // fmt.Fprintln(stdout, output)
    r.stdout = format!("{body}\n");
    if shown.is_empty() {
        match req.files.as_slice() {
            [] => {
                let _ = writeln!(
                    r.stderr,
                    "\u{2714} No validation issues found when analyzing {target}."
                );
            }
            [one] => {
                let _ = writeln!(
                    r.stderr,
                    "\u{2714} No validation issues found when analyzing {one}."
                );
            }
            many => {
                let _ = writeln!(
                    r.stderr,
                    "\u{2714} No validation issues found when analyzing:\n  - {}",
                    many.join("\n  - ")
                );
            }
        }
    }
    // The exit code reads the unfiltered list, and only in log format.
    if format == "log" && all.iter().any(|m| m.level.at_least(failure)) {
        let _ = writeln!(
            r.stderr,
            "Error: Analyzers found issues when analyzing {target}.\nSee {docs} for more information about causes and resolutions."
        );
        r.code = FOUND_ISSUES;
    }
    r
}

/// istioctl's documentationUrl; meshsim's own codes point at the page
/// they come from.
fn doc_url(docs: &str, code: &str) -> String {
    if code.starts_with("MS") {
        "https://istio.io/latest/docs/ops/common-problems/network-issues/".into()
    } else {
        format!("{docs}/{}/?ref=istioctl-analyze", code.to_ascii_lowercase())
    }
}

/// `json.MarshalIndent(v, "", "\t")`, with Go's HTML escaping of `<`, `>`
/// and `&`.
fn go_json<T: Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}
