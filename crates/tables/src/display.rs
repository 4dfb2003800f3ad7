//! What `meshsim proxy-config` prints, as `istioctl proxy-config` prints
//! it for the same proxy: the summaries of [`crate::istioctl`] (from the
//! proxy's config dump and `/clusters?format=json`), or the resources as
//! JSON / YAML — istioctl's protobuf JSON (camelCase, 4-space indent) per
//! kind, and for `all` the dump itself as Envoy's admin prints it.

use serde_json::Value;

use crate::envoy;
use crate::istioctl::{self, Dump, Filters, SecretView};
use crate::{PatchOutcome, ProxyTables};

/// Which part of the configuration to show (istioctl's subcommands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    Secrets,
    Bootstrap,
    All,
    /// meshsim's own: each EnvoyFilter patch and whether it applied.
    Patches,
}

/// `-o short|json|yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Short,
    Json,
    Yaml,
}

impl Kind {
    /// istioctl's default output: JSON for `bootstrap`, else the summary.
    pub fn default_format(self) -> Format {
        match self {
            Kind::Bootstrap => Format::Json,
            _ => Format::Short,
        }
    }
}

/// Filters and the `all` options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub filters: Filters,
    /// `proxy-config all --with-headers`.
    pub with_headers: bool,
    pub secrets: SecretView,
}

/// What istioctl reads from a proxy: `/config_dump?include_eds` and
/// `/clusters?format=json`.
pub struct Sources {
    pub config_dump: Value,
    pub clusters: Value,
    /// EnvoyFilter patch outcomes (not part of Envoy's dump).
    pub patches: Vec<PatchOutcome>,
}

impl Sources {
    /// From compiled tables alone (no secrets, DNS names unresolved).
    pub fn from_tables(t: &ProxyTables) -> Self {
        Self {
            config_dump: envoy::config_dump(t, &envoy::DumpMeta::default()),
            clusters: envoy::admin::clusters_status(t, &|_| None),
            patches: t.envoy_filter_patches.clone(),
        }
    }
}

/// JSON as Envoy's admin prints it (one-space indent).
pub fn envoy_json(v: &Value) -> String {
    indented(v, b" ")
}

fn indented(v: &Value, indent: &[u8]) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = v.serialize(&mut ser);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    s.push('\n');
    s
}

/// A message unpacked from its `Any` (istioctl prints the message).
fn unpacked(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("@type");
    }
    envoy::camel(&v)
}

/// `yaml.JSONToYAML`: the same data, keys in order.
fn yaml(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&o[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_saphyr::to_string(&sorted(v)).unwrap_or_default()
}

fn section(dump: &Value, kind: &str) -> Value {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The resources of `kind` istioctl prints with `-o json|yaml`.
fn resources(src: &Sources, kind: Kind, o: &Options) -> Value {
    let d = Dump::new(&src.config_dump);
    let f = &o.filters;
    match kind {
        Kind::All => src.config_dump.clone(),
        Kind::Clusters => istioctl::sorted_clusters(&d)
            .into_iter()
            .filter(|c| f.cluster.verify(c["name"].as_str().unwrap_or_default()))
            .map(unpacked)
            .collect(),
        Kind::Listeners => d
            .listeners()
            .into_iter()
            .filter(|l| f.listener.verify(l))
            .map(unpacked)
            .collect(),
        Kind::Routes => istioctl::sorted_routes(&d)
            .into_iter()
            .filter(|r| f.route.name.is_empty() || r["name"].as_str() == Some(&f.route.name))
            .map(unpacked)
            .collect(),
        Kind::Endpoints => src.clusters["cluster_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| istioctl::cluster_has_matching_host(c, &f.endpoint))
            .map(envoy::camel)
            .collect(),
        Kind::Secrets => unpacked(&section(&src.config_dump, ".SecretsConfigDump")),
        Kind::Bootstrap => unpacked(&section(&src.config_dump, ".BootstrapConfigDump")),
        Kind::Patches => serde_json::to_value(&src.patches).unwrap_or_default(),
    }
}

/// Renders `kind` in `format`.
pub fn render(src: &Sources, kind: Kind, format: Format, o: &Options) -> String {
    let d = Dump::new(&src.config_dump);
    let f = &o.filters;
    match format {
        Format::Short => match kind {
            Kind::Clusters => istioctl::cluster_summary(&d, &f.cluster, false),
            Kind::Listeners => istioctl::listener_summary(&d, &f.listener, false),
            Kind::Routes => istioctl::route_summary(&d, &f.route, false),
            Kind::Endpoints => istioctl::admin_endpoint_summary(&src.clusters, &f.endpoint),
            Kind::Secrets => istioctl::secret_summary(&d, &o.secrets, false),
            Kind::Bootstrap => istioctl::bootstrap_summary(&d),
            Kind::All => istioctl::all_summary(&src.config_dump, f, &o.secrets, o.with_headers),
            Kind::Patches => patch_table(&src.patches),
        },
        Format::Json if kind == Kind::All => envoy_json(&src.config_dump),
        Format::Json => indented(&resources(src, kind, o), b"    "),
        Format::Yaml => yaml(&resources(src, kind, o)),
    }
}

/// Left-aligned columns separated by two spaces (meshsim's own tables).
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut text = header.join("\t");
    text.push('\n');
    for r in rows {
        text.push_str(&r.join("\t"));
        text.push('\n');
    }
    istioctl::tabwrite(2, &text)
}

/// meshsim's own table: each EnvoyFilter patch and whether it applied.
pub fn patch_table(p: &[PatchOutcome]) -> String {
    let rows = p
        .iter()
        .map(|o| {
            vec![
                o.envoy_filter.clone(),
                o.patch.to_string(),
                o.apply_to.clone(),
                o.operation.clone(),
                if o.applied {
                    "applied".into()
                } else {
                    "NOT APPLIED".into()
                },
                o.detail.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ENVOYFILTER",
            "PATCH",
            "APPLY TO",
            "OPERATION",
            "RESULT",
            "DETAIL",
        ],
        rows,
    )
}
