//! The compiler stage's errors: naming a proxy or pod that is not there,
//! and a configuration that did not load.

use meshsim_model::Diagnostics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileError {
    #[error("no proxy {name:?}; proxies: {known}")]
    NoProxy { name: String, known: String },
    #[error("pod {pod}.{namespace} has no sidecar (namespace not labelled istio-injection=enabled, or sidecar.istio.io/inject: \"false\")")]
    NoSidecar { pod: String, namespace: String },
    #[error("unsupported resource type {0:?}: use POD[.NAMESPACE] or deploy/NAME[.NAMESPACE]")]
    UnsupportedKind(String),
    #[error("invalid configuration:\n{0}")]
    Invalid(Diagnostics),
}
