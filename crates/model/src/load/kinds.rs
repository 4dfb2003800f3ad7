//! The kinds meshsim reads, as one table: each kind's API versions and
//! how its document parses into a [`Resource`]. Dispatch, the apiVersion
//! check and the "unknown kind" messages all read the table.

use std::collections::BTreeMap;

use base64::Engine;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::config_map::parse_config_map;
use super::list::parse_list;
use super::{parse_typed, DocCtx, Loaded};
use crate::common::{ObjectMeta, Unsimulated};
use crate::diag::Origin;
use crate::resource::{Meta, Object, Resource, SecretData};
use crate::{
    destination_rule, envoy_filter, gateway, k8s, mesh, peer_auth, service_entry, sidecar,
    virtual_service,
};

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
    #[serde(default)]
    status: Option<crate::common::ObservedStatus>,
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
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
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
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    data: BTreeMap<String, Spanned<String>>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    string_data: BTreeMap<String, String>,
    #[serde(rename = "immutable", default)]
    _immutable: Option<IgnoredAny>,
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

/// A document's `apiVersion` and `kind`, checked against the table.
pub(super) struct Header<'a> {
    api_version: &'a str,
    kind: &'a str,
}

impl Header<'_> {
    fn meta(&self, ctx: &DocCtx<'_>, m: ObjectMeta) -> Meta {
        Meta {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            owner: m
                .owner_references
                .iter()
                .find(|o| o.controller != Some(false))
                .map(|o| (o.kind.clone(), o.name.clone())),
            status: None,
            origin: Origin {
                file: ctx.file.to_string(),
                line: ctx.line_offset + 1,
            },
        }
    }
}

type Parse = fn(&DocCtx<'_>, &str, &Header<'_>, &mut Loaded);

/// One kind meshsim reads.
struct KindDef {
    kind: &'static str,
    api_versions: &'static [&'static str],
    parse: Parse,
}

/// A kind whose document is `metadata` plus a typed `spec`.
macro_rules! spec_kind {
    ($kind:literal, $apis:expr, $variant:ident, $ty:ty) => {
        KindDef {
            kind: $kind,
            api_versions: $apis,
            parse: |c, t, h, o| spec::<$ty>(c, t, h, o, |x| Resource::$variant(x.into())),
        }
    };
}

/// Every kind meshsim reads.
#[rustfmt::skip]
const KINDS: &[KindDef] = &[
    spec_kind!("VirtualService", ISTIO_NETWORKING, VirtualService, virtual_service::VirtualServiceSpec),
    spec_kind!("DestinationRule", ISTIO_NETWORKING, DestinationRule, destination_rule::DestinationRuleSpec),
    spec_kind!("Gateway", ISTIO_NETWORKING, Gateway, gateway::GatewaySpec),
    spec_kind!("ServiceEntry", ISTIO_NETWORKING, ServiceEntry, service_entry::ServiceEntrySpec),
    spec_kind!("EnvoyFilter", ISTIO_NETWORKING, EnvoyFilter, envoy_filter::EnvoyFilterSpec),
    spec_kind!("Sidecar", ISTIO_NETWORKING, Sidecar, sidecar::SidecarSpec),
    spec_kind!("PeerAuthentication", ISTIO_SECURITY, PeerAuthentication, peer_auth::PeerAuthenticationSpec),
    KindDef { kind: "IstioOperator", api_versions: &["install.istio.io/v1alpha1"], parse: istio_operator },
    spec_kind!("Service", CORE, Service, k8s::ServiceSpec),
    spec_kind!("Pod", CORE, Pod, k8s::PodSpec),
    KindDef { kind: "Namespace", api_versions: CORE, parse: |c, t, h, o| bare(c, t, h, o, Resource::Namespace) },
    KindDef { kind: "ServiceAccount", api_versions: CORE, parse: |c, t, h, o| bare(c, t, h, o, Resource::ServiceAccount) },
    KindDef { kind: "ConfigMap", api_versions: CORE, parse: config_map },
    KindDef { kind: "Secret", api_versions: CORE, parse: secret },
    spec_kind!("Deployment", APPS, Deployment, k8s::DeploymentSpec),
    spec_kind!("StatefulSet", APPS, StatefulSet, k8s::StatefulSetSpec),
    KindDef { kind: "EndpointSlice", api_versions: &["discovery.k8s.io/v1"], parse: endpoint_slice },
];

/// Parses one document: its kind from the table, or a diagnostic.
pub(super) fn parse_document(ctx: &DocCtx<'_>, text: &str, out: &mut Loaded) {
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
    let h = Header {
        api_version: api.value.as_str(),
        kind: kind.value.as_str(),
    };
    if h.kind == "List" || (h.kind.ends_with("List") && h.api_version == "v1") {
        parse_list(ctx, text, out);
        return;
    }
    let group = h.api_version.split('/').next().unwrap_or("");
    let foreign = |def: &KindDef| {
        // A kind of the same name from another API group (the Gateway
        // API's `Gateway`) is that group's kind, not a misspelt version.
        let known_group = |a: &&str| a.split('/').next() == Some(group) || !a.contains('/');
        h.api_version.contains('/')
            && !group.ends_with("istio.io")
            && !def.api_versions.iter().any(known_group)
    };
    let Some(def) = KINDS.iter().find(|k| k.kind == h.kind && !foreign(k)) else {
        out.diagnostics.push(unknown_kind(ctx, &h, (kl, kc)));
        return;
    };
    if !def.api_versions.contains(&h.api_version) {
        let (al, ac) = (api.referenced.line(), api.referenced.column());
        out.diagnostics.push(ctx.error(
            al,
            ac,
            "apiVersion",
            format!(
                "{} does not exist in {:?}: expected one of {}",
                h.kind,
                h.api_version,
                def.api_versions.join(", ")
            ),
        ));
        return;
    }
    let before = out.resources.len();
    (def.parse)(ctx, text, &h, out);
    // What the API server would reject is not applied.
    let mut i = before;
    while i < out.resources.len() {
        let d = super::validate::diagnostics(&out.resources[i]);
        if d.is_empty() {
            i += 1;
        } else {
            out.diagnostics.extend(d);
            out.resources.remove(i);
        }
    }
}

/// A kind not in the table: Istio's unsimulated kinds and other groups'
/// kinds are accepted with a warning; an unknown Istio kind is an error.
fn unknown_kind(ctx: &DocCtx<'_>, h: &Header<'_>, (l, c): (u64, u64)) -> crate::Diagnostic {
    let (kind, api) = (h.kind, h.api_version);
    let group = api.split('/').next().unwrap_or("");
    if KNOWN_UNSIMULATED_ISTIO.contains(&kind) {
        ctx.warning(
            l,
            c,
            "kind",
            format!("{kind} is not simulated by meshsim; this object is ignored"),
        )
    } else if group.ends_with("istio.io") {
        let known: Vec<&str> = KINDS
            .iter()
            .filter(|k| k.api_versions == ISTIO_NETWORKING || k.api_versions == ISTIO_SECURITY)
            .map(|k| k.kind)
            .collect();
        ctx.error(
            l,
            c,
            "kind",
            format!(
                "unknown Istio kind {kind:?} in {api}: expected one of {}",
                known.join(", ")
            ),
        )
    } else if group == "gateway.networking.k8s.io" {
        ctx.warning(
            l,
            c,
            "kind",
            format!(
                "{api} {kind}: the Kubernetes Gateway API is not simulated by meshsim yet; \
                 this object is ignored (istiod would turn it into gateways and routes; \
                 write the Istio Gateway and VirtualService to simulate them)"
            ),
        )
    } else {
        ctx.warning(
            l,
            c,
            "kind",
            format!("{api} {kind} is not simulated by meshsim; this object is ignored"),
        )
    }
}

/// A kind with `metadata` and a typed `spec`.
fn spec<T: DeserializeOwned + Default + AnyUnsimulated>(
    ctx: &DocCtx<'_>,
    text: &str,
    h: &Header<'_>,
    out: &mut Loaded,
    wrap: fn(Object<T>) -> Resource,
) {
    match parse_typed::<Doc<T>>(ctx, text) {
        Ok(d) => {
            let mut meta = h.meta(ctx, d.metadata);
            meta.status = d.status;
            if meta.name.is_empty() {
                out.diagnostics.push(ctx.error(
                    1,
                    1,
                    "metadata.name",
                    "missing: every object needs a name",
                ));
            }
            report_unsimulated_fields(ctx, &d.spec, out);
            out.resources.push(wrap(Object { meta, spec: d.spec }));
        }
        Err(e) => out.diagnostics.push(e),
    }
}

/// A kind that is only metadata (Namespace, ServiceAccount).
fn bare(
    ctx: &DocCtx<'_>,
    text: &str,
    h: &Header<'_>,
    out: &mut Loaded,
    wrap: fn(Object<()>) -> Resource,
) {
    match parse_typed::<BareDoc>(ctx, text) {
        Ok(d) => out.resources.push(wrap(Object {
            meta: h.meta(ctx, d.metadata),
            spec: (),
        })),
        Err(e) => out.diagnostics.push(e),
    }
}

/// `IstioOperator`: its `spec.meshConfig` is the mesh config.
fn istio_operator(ctx: &DocCtx<'_>, text: &str, h: &Header<'_>, out: &mut Loaded) {
    match parse_typed::<Doc<mesh::IstioOperatorSpec>>(ctx, text) {
        Ok(d) => {
            report_unsimulated_fields(ctx, &d.spec, out);
            if let Some(mc) = d.spec.mesh_config {
                out.resources.push(Resource::MeshConfig(Box::new(Object {
                    meta: h.meta(ctx, d.metadata),
                    spec: mc,
                })));
            }
        }
        Err(e) => out.diagnostics.push(e),
    }
}

fn config_map(ctx: &DocCtx<'_>, text: &str, h: &Header<'_>, out: &mut Loaded) {
    match parse_typed::<ConfigMapDoc>(ctx, text) {
        Ok(d) => parse_config_map(ctx, text, h.meta(ctx, d.metadata), d.data, out),
        Err(e) => out.diagnostics.push(e),
    }
}

/// An EndpointSlice: its Service (label `kubernetes.io/service-name`),
/// addresses and ports; the rest (topology hints, zones) is ignored.
fn endpoint_slice(ctx: &DocCtx<'_>, text: &str, h: &Header<'_>, out: &mut Loaded) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SliceDoc {
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(flatten)]
        data: k8s::EndpointSliceData,
    }
    let d = match parse_typed::<SliceDoc>(ctx, text) {
        Ok(d) => d,
        Err(e) => return out.diagnostics.push(e),
    };
    let meta = h.meta(ctx, d.metadata);
    let mut data = d.data;
    data.service = meta
        .labels
        .get("kubernetes.io/service-name")
        .cloned()
        .unwrap_or_default();
    out.resources.push(Resource::EndpointSlice(Box::new(Object {
        meta,
        spec: data,
    })));
}

/// A Secret: `data` is base64 (whitespace allowed), `stringData` is text.
fn secret(ctx: &DocCtx<'_>, text: &str, h: &Header<'_>, out: &mut Loaded) {
    let d = match parse_typed::<SecretDoc>(ctx, text) {
        Ok(d) => d,
        Err(e) => return out.diagnostics.push(e),
    };
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
    out.resources.push(Resource::Secret(Box::new(Object {
        meta: h.meta(ctx, d.metadata),
        spec: SecretData {
            type_: d.type_,
            data,
        },
    })));
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
