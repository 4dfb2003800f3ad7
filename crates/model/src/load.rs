//! Loading: files and directories of multi-document YAML (and `kind: List`)
//! into typed [`Resource`]s, collecting every diagnostic of the load.
//!
//! Documents are split the way `kubectl` splits them (a line starting with
//! `---`), then each is parsed twice: once loosely to learn `apiVersion` and
//! `kind`, once strictly into the kind's type. Parse errors carry the
//! document's line offset so they point into the user's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

use crate::common::{ObjectMeta, Unsimulated};
use crate::diag::{Diagnostic, Origin};
use crate::resource::{Meta, Object, Resource, SecretData};
use crate::{
    destination_rule, envoy_filter, gateway, k8s, mesh, peer_auth, service_entry, sidecar,
    virtual_service,
};

/// Files larger than this are refused rather than parsed.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The result of a load: everything that parsed, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// `kubectl apply -n NS`: objects without a namespace go to `ns`; one
    /// that names another namespace is an error, as kubectl reports it
    /// (`strict`; `istioctl analyze -n` only fills in missing ones).
    pub fn apply_namespace(&mut self, ns: &str, strict: bool) {
        for r in &mut self.resources {
            if !r.is_namespaced() {
                continue;
            }
            let meta = r.meta_mut();
            match meta.namespace.as_deref().filter(|n| !n.is_empty()) {
                None => meta.namespace = Some(ns.to_string()),
                Some(n) if n == ns || !strict => {}
                Some(n) => self.diagnostics.push(Diagnostic::error(
                    &meta.origin.file,
                    meta.origin.line,
                    0,
                    "metadata.namespace",
                    format!(
                        "the namespace from the provided object {n:?} does not match the namespace {ns:?}. You must pass '--namespace={n}' to perform this operation."
                    ),
                )),
            }
        }
    }

    /// Adds another load's resources and diagnostics after these.
    pub fn extend(&mut self, other: Loaded) {
        self.resources.extend(other.resources);
        self.diagnostics.extend(other.diagnostics);
    }
}

/// Loads files and directories (recursively: `*.yaml`, `*.yml`, `*.json`,
/// in name order). I/O problems become diagnostics too.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    let mut out = Loaded::default();
    for p in paths {
        let p = p.as_ref();
        let mut files = Vec::new();
        if let Err(e) = collect_files(p, &mut files) {
            out.diagnostics.push(Diagnostic::error(
                &p.display().to_string(),
                0,
                0,
                "",
                format!("cannot read: {e}"),
            ));
            continue;
        }
        for f in files {
            let name = f.display().to_string();
            match std::fs::metadata(&f) {
                Ok(m) if m.len() as usize > MAX_FILE_BYTES => {
                    out.diagnostics.push(Diagnostic::error(
                        &name,
                        0,
                        0,
                        "",
                        format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", m.len()),
                    ));
                    continue;
                }
                Err(e) => {
                    out.diagnostics.push(Diagnostic::error(
                        &name,
                        0,
                        0,
                        "",
                        format!("cannot read: {e}"),
                    ));
                    continue;
                }
                Ok(_) => {}
            }
            match std::fs::read(&f) {
                Ok(bytes) => out.extend(parse_bytes(&name, &bytes)),
                Err(e) => out.diagnostics.push(Diagnostic::error(
                    &name,
                    0,
                    0,
                    "",
                    format!("cannot read: {e}"),
                )),
            }
        }
    }
    out
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let hidden = e
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if e.is_dir() {
                collect_files(&e, out)?;
            } else if e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            {
                out.push(e);
            }
        }
        Ok(())
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
        Ok(())
    }
}

/// Parses raw bytes: refuses non-UTF-8 and oversized input with an error.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Loaded {
    if bytes.len() > MAX_FILE_BYTES {
        let mut l = Loaded::default();
        l.diagnostics.push(Diagnostic::error(
            file,
            0,
            0,
            "",
            format!(
                "input is {} bytes; the limit is {MAX_FILE_BYTES}",
                bytes.len()
            ),
        ));
        return l;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(file, text),
        Err(e) => {
            let (line, col) = line_col(bytes, e.valid_up_to());
            let mut l = Loaded::default();
            l.diagnostics.push(Diagnostic::error(
                file,
                line,
                col,
                "",
                "not UTF-8 text: expected a YAML or JSON manifest",
            ));
            l
        }
    }
}

fn line_col(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
    (line, col)
}

/// Parses one file's text (which may hold many documents).
pub fn parse_str(file: &str, text: &str) -> Loaded {
    let mut out = Loaded::default();
    if text.contains('\0') {
        let (line, col) = line_col(text.as_bytes(), text.find('\0').unwrap_or(0));
        out.diagnostics.push(Diagnostic::error(
            file,
            line,
            col,
            "",
            "binary data (NUL byte): expected a YAML or JSON manifest",
        ));
        return out;
    }
    for doc in split_documents(text) {
        let ctx = DocCtx {
            file,
            line_offset: doc.line_offset,
            col_offset: 0,
        };
        parse_document(&ctx, doc.text, &mut out);
    }
    out
}

struct DocText<'a> {
    text: &'a str,
    line_offset: u64,
}

/// Splits like kubectl's YAML reader: a line beginning with `---` followed by
/// nothing but white space or a comment starts a new document.
fn split_documents(text: &str) -> Vec<DocText<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0u64;
    let mut pos = 0usize;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push(DocText {
                    text: &text[start..pos],
                    line_offset: start_line,
                });
                start = pos + line.len();
                start_line = idx as u64 + 1;
            }
        }
        pos += line.len();
    }
    docs.push(DocText {
        text: &text[start..],
        line_offset: start_line,
    });
    docs.retain(|d| {
        d.text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        })
    });
    docs
}

/// Where a document sits in its file, for translating parser positions.
struct DocCtx<'a> {
    file: &'a str,
    line_offset: u64,
    col_offset: u64,
}

impl DocCtx<'_> {
    fn at(&self, line: u64, col: u64) -> (u64, u64) {
        if line == 0 {
            return (self.line_offset + 1, 0);
        }
        (line + self.line_offset, col + self.col_offset)
    }

    fn error(&self, line: u64, col: u64, path: &str, msg: impl Into<String>) -> Diagnostic {
        let (l, c) = self.at(line, col);
        Diagnostic::error(self.file, l, c, path, msg)
    }

    fn warning(&self, line: u64, col: u64, path: &str, msg: impl Into<String>) -> Diagnostic {
        let (l, c) = self.at(line, col);
        Diagnostic::warning(self.file, l, c, path, msg)
    }
}

fn options() -> Options {
    let mut o = Options::default();
    let mut b = Budget::default();
    b.max_depth = 128;
    b.max_aliases = 1_000;
    b.max_anchors = 1_000;
    b.max_events = 4_000_000;
    b.max_nodes = 2_000_000;
    b.max_documents = 1;
    o.budget = Some(b);
    o.with_snippet = false;
    o.duplicate_keys = DuplicateKeyPolicy::Error;
    o
}

/// Strictly deserializes `text` into `T`, turning failures into a diagnostic
/// that names the position, the field path and what was expected.
fn parse_typed<T: DeserializeOwned>(ctx: &DocCtx<'_>, text: &str) -> Result<T, Diagnostic> {
    let mut path = String::new();
    let r = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    r.map_err(|e| {
        let path = if path == "." { "" } else { path.as_str() };
        saphyr_diag(ctx, &e, path)
    })
}

fn saphyr_diag(ctx: &DocCtx<'_>, e: &serde_saphyr::Error, path: &str) -> Diagnostic {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let msg = clean_message(&e.without_snippet().to_string());
    ctx.error(line, col, path, msg)
}

/// serde-saphyr appends " at line X column Y"; we print the position ourselves.
fn clean_message(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    if let Some(i) = m.find(" at line ") {
        m.truncate(i);
    }
    if let Some(rest) = m.strip_prefix("error: ") {
        m = rest.to_string();
    }
    m
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
}

/// `apiVersion` + `kind` + strictly typed `metadata`/`spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(rename = "status", default)]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BareDoc {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(rename = "spec", default)]
    _spec: Option<IgnoredAny>,
    #[serde(rename = "status", default)]
    _status: Option<IgnoredAny>,
    #[serde(rename = "secrets", default)]
    _secrets: Option<IgnoredAny>,
    #[serde(rename = "imagePullSecrets", default)]
    _image_pull_secrets: Option<IgnoredAny>,
    #[serde(rename = "automountServiceAccountToken", default)]
    _automount_service_account_token: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigMapDoc {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, Spanned<String>>,
    #[serde(rename = "binaryData", default)]
    _binary_data: Option<IgnoredAny>,
    #[serde(rename = "immutable", default)]
    _immutable: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretDoc {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(rename = "immutable", default)]
    _immutable: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDoc {
    #[serde(default)]
    items: Vec<Spanned<IgnoredAny>>,
}

const ISTIO_NETWORKING: &[&str] = &[
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
];
const ISTIO_SECURITY: &[&str] = &["security.istio.io/v1beta1", "security.istio.io/v1"];
const CORE: &[&str] = &["v1"];
const APPS: &[&str] = &["apps/v1"];

/// Istio kinds we know exist but do not simulate: accepted with a warning.
const KNOWN_UNSIMULATED_ISTIO: &[&str] = &[
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
    "WorkloadEntry",
    "WorkloadGroup",
    "ProxyConfig",
    "WasmPlugin",
];

fn parse_document(ctx: &DocCtx<'_>, text: &str, out: &mut Loaded) {
    let env: Envelope = match parse_typed(ctx, text) {
        Ok(e) => e,
        Err(d) => {
            out.diagnostics.push(d);
            return;
        }
    };
    let Some(kind) = env.kind else {
        out.diagnostics.push(ctx.error(
            1,
            1,
            "kind",
            "missing field `kind`: expected a Kubernetes or Istio object",
        ));
        return;
    };
    let Some(api) = env.api_version else {
        out.diagnostics.push(ctx.error(
            kind.referenced.line(),
            kind.referenced.column(),
            "apiVersion",
            "missing field `apiVersion`",
        ));
        return;
    };
    let (kl, kc) = (kind.referenced.line(), kind.referenced.column());
    let api_v = api.value.as_str();
    let kind_v = kind.value.as_str();

    if kind_v == "List" || (kind_v.ends_with("List") && api_v == "v1") {
        parse_list(ctx, text, out);
        return;
    }

    let expected: &[&str] = match kind_v {
        "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry" | "EnvoyFilter"
        | "Sidecar" => ISTIO_NETWORKING,
        "PeerAuthentication" => ISTIO_SECURITY,
        "IstioOperator" => &["install.istio.io/v1alpha1"],
        "Namespace" | "Service" | "ServiceAccount" | "Pod" | "ConfigMap" | "Secret" => CORE,
        "Deployment" | "StatefulSet" => APPS,
        other => {
            let group = api_v.split('/').next().unwrap_or("");
            if KNOWN_UNSIMULATED_ISTIO.contains(&other) {
                out.diagnostics.push(ctx.warning(
                    kl,
                    kc,
                    "kind",
                    format!("{other} is not simulated by meshsim; this object is ignored"),
                ));
            } else if group.ends_with("istio.io") {
                out.diagnostics.push(ctx.error(kl, kc, "kind", format!(
                    "unknown Istio kind {other:?} in {api_v}: expected one of VirtualService, DestinationRule, Gateway, ServiceEntry, EnvoyFilter, Sidecar, PeerAuthentication"
                )));
            } else {
                out.diagnostics.push(ctx.warning(
                    kl,
                    kc,
                    "kind",
                    format!("{api_v} {other} is not simulated by meshsim; this object is ignored"),
                ));
            }
            return;
        }
    };
    if !expected.contains(&api_v) {
        let (al, ac) = (api.referenced.line(), api.referenced.column());
        out.diagnostics.push(ctx.error(
            al,
            ac,
            "apiVersion",
            format!(
                "{kind_v} does not exist in {api_v:?}: expected one of {}",
                expected.join(", ")
            ),
        ));
        return;
    }

    let mk_meta = |m: ObjectMeta| Meta {
        api_version: api_v.to_string(),
        kind: kind_v.to_string(),
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        origin: Origin {
            file: ctx.file.to_string(),
            line: ctx.line_offset + 1,
        },
    };

    macro_rules! spec_kind {
        ($variant:ident, $ty:ty) => {{
            match parse_typed::<Doc<$ty>>(ctx, text) {
                Ok(d) => {
                    let meta = mk_meta(d.metadata);
                    if meta.name.is_empty() {
                        out.diagnostics.push(ctx.error(
                            1,
                            1,
                            "metadata.name",
                            "missing: every object needs a name",
                        ));
                    }
                    report_unsimulated_fields(ctx, &d.spec, out);
                    out.resources
                        .push(Resource::$variant(Object { meta, spec: d.spec }));
                }
                Err(e) => out.diagnostics.push(e),
            }
        }};
    }

    match kind_v {
        "VirtualService" => spec_kind!(VirtualService, virtual_service::VirtualServiceSpec),
        "DestinationRule" => spec_kind!(DestinationRule, destination_rule::DestinationRuleSpec),
        "Gateway" => spec_kind!(Gateway, gateway::GatewaySpec),
        "ServiceEntry" => spec_kind!(ServiceEntry, service_entry::ServiceEntrySpec),
        "EnvoyFilter" => spec_kind!(EnvoyFilter, envoy_filter::EnvoyFilterSpec),
        "Sidecar" => spec_kind!(Sidecar, sidecar::SidecarSpec),
        "PeerAuthentication" => spec_kind!(PeerAuthentication, peer_auth::PeerAuthenticationSpec),
        "IstioOperator" => match parse_typed::<Doc<mesh::IstioOperatorSpec>>(ctx, text) {
            Ok(d) => {
                report_unsimulated_fields(ctx, &d.spec, out);
                if let Some(mc) = d.spec.mesh_config {
                    out.resources.push(Resource::MeshConfig(Object {
                        meta: mk_meta(d.metadata),
                        spec: mc,
                    }));
                }
            }
            Err(e) => out.diagnostics.push(e),
        },
        "Service" => spec_kind!(Service, k8s::ServiceSpec),
        "Deployment" => spec_kind!(Deployment, k8s::DeploymentSpec),
        "StatefulSet" => spec_kind!(StatefulSet, k8s::StatefulSetSpec),
        "Pod" => spec_kind!(Pod, k8s::PodSpec),
        "Namespace" | "ServiceAccount" => match parse_typed::<BareDoc>(ctx, text) {
            Ok(d) => {
                let o = Object {
                    meta: mk_meta(d.metadata),
                    spec: (),
                };
                out.resources.push(if kind_v == "Namespace" {
                    Resource::Namespace(o)
                } else {
                    Resource::ServiceAccount(o)
                });
            }
            Err(e) => out.diagnostics.push(e),
        },
        "ConfigMap" => match parse_typed::<ConfigMapDoc>(ctx, text) {
            Ok(d) => parse_config_map(ctx, text, mk_meta(d.metadata), d.data, out),
            Err(e) => out.diagnostics.push(e),
        },
        "Secret" => match parse_typed::<SecretDoc>(ctx, text) {
            Ok(d) => {
                let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (k, v) in d.data {
                    let cleaned: String = v.value.split_whitespace().collect();
                    match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
                        Ok(bytes) => {
                            data.insert(k, bytes);
                        }
                        Err(e) => out.diagnostics.push(ctx.error(
                            v.referenced.line(),
                            v.referenced.column(),
                            &format!("data.{k}"),
                            format!("invalid base64: {e}"),
                        )),
                    }
                }
                for (k, v) in d.string_data {
                    data.insert(k, v.into_bytes());
                }
                out.resources.push(Resource::Secret(Object {
                    meta: mk_meta(d.metadata),
                    spec: SecretData {
                        type_: d.type_,
                        data,
                    },
                }));
            }
            Err(e) => out.diagnostics.push(e),
        },
        _ => {}
    }
}

fn report_unsimulated_fields<T: ?Sized + AnyUnsimulated>(
    ctx: &DocCtx<'_>,
    spec: &T,
    out: &mut Loaded,
) {
    let mut found = Vec::new();
    spec.collect("spec", &mut found);
    for (path, (line, col)) in found {
        out.diagnostics.push(ctx.warning(
            line,
            col,
            &path,
            "accepted but not simulated by meshsim: it has no effect on the simulated mesh",
        ));
    }
}

/// Lets kinds without not-simulated fields pass through the same macro.
trait AnyUnsimulated {
    fn collect(&self, path: &str, out: &mut Vec<(String, (u64, u64))>);
}

macro_rules! with_unsim {
    ($($t:ty),*) => { $(impl AnyUnsimulated for $t { fn collect(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) { Unsimulated::unsimulated(self, path, out) } })* };
}
macro_rules! without_unsim {
    ($($t:ty),*) => { $(impl AnyUnsimulated for $t { fn collect(&self, _: &str, _: &mut Vec<(String, (u64, u64))>) {} })* };
}
with_unsim!(
    virtual_service::VirtualServiceSpec,
    destination_rule::DestinationRuleSpec,
    gateway::GatewaySpec,
    service_entry::ServiceEntrySpec,
    sidecar::SidecarSpec,
    envoy_filter::EnvoyFilterSpec,
    mesh::IstioOperatorSpec
);
without_unsim!(
    peer_auth::PeerAuthenticationSpec,
    k8s::ServiceSpec,
    k8s::DeploymentSpec,
    k8s::StatefulSetSpec,
    k8s::PodSpec
);

fn parse_config_map(
    ctx: &DocCtx<'_>,
    doc_text: &str,
    meta: Meta,
    data: BTreeMap<String, Spanned<String>>,
    out: &mut Loaded,
) {
    let is_mesh = meta.name == "istio" && meta.ns() == "istio-system";
    if !is_mesh {
        let data = data.into_iter().map(|(k, v)| (k, v.value)).collect();
        out.resources
            .push(Resource::ConfigMap(Object { meta, spec: data }));
        return;
    }
    let Some(mesh_text) = data.get("mesh") else {
        out.diagnostics.push(ctx.warning(
            1,
            1,
            "data",
            "ConfigMap istio/istio-system has no `mesh` key: Istio's defaults apply",
        ));
        return;
    };
    // The mesh text is a YAML document of its own; map its lines back.
    let vline = mesh_text.referenced.line();
    let token_line = doc_text
        .lines()
        .nth(vline.saturating_sub(1) as usize)
        .unwrap_or("");
    let after = token_line
        .chars()
        .skip(mesh_text.referenced.column().saturating_sub(1) as usize)
        .collect::<String>();
    let block = after.trim_start().starts_with('|') || after.trim_start().starts_with('>');
    let indent = if block {
        doc_text
            .lines()
            .nth(vline as usize)
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0) as u64
    } else {
        0
    };
    let inner = DocCtx {
        file: ctx.file,
        line_offset: ctx.line_offset
            + if block {
                vline
            } else {
                vline.saturating_sub(1)
            },
        col_offset: if block {
            indent
        } else {
            mesh_text.referenced.column().saturating_sub(1)
        },
    };
    if mesh_text.value.trim().is_empty() {
        out.resources.push(Resource::MeshConfig(Object {
            meta,
            spec: mesh::MeshConfig::default(),
        }));
        return;
    }
    match parse_typed::<mesh::MeshConfig>(&inner, &mesh_text.value) {
        Ok(mc) => {
            let mut found = Vec::new();
            mc.unsimulated("data.mesh", &mut found);
            for (path, (line, col)) in found {
                out.diagnostics.push(inner.warning(
                    line,
                    col,
                    &path,
                    "accepted but not simulated by meshsim: it has no effect on the simulated mesh",
                ));
            }
            out.resources
                .push(Resource::MeshConfig(Object { meta, spec: mc }));
        }
        Err(mut d) => {
            d.path = if d.path.is_empty() {
                "data.mesh".into()
            } else {
                format!("data.mesh.{}", d.path)
            };
            out.diagnostics.push(d);
        }
    }
}

mod list;

use list::parse_list;

#[cfg(test)]
mod tests;
