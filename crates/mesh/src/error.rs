//! The mesh's errors: starting pieces (sockets, certificates, TLS
//! contexts) and changes the control plane rejects.

use meshsim_model::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A localhost socket could not be bound or configured.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused to issue a certificate.
    #[error("certificate authority: {0}")]
    Ca(#[from] rcgen::Error),
    /// A TLS context could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The change has errors; nothing was applied.
    #[error("the change was rejected, nothing was applied:\n{0}")]
    Rejected(Diagnostics),
    /// A pod, proxy or port that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A proxy run as its own process failed.
    #[error("{0}")]
    Process(String),
}

impl MeshError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        MeshError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<rustls::Error> for MeshError {
    fn from(e: rustls::Error) -> Self {
        MeshError::Tls(e.to_string())
    }
}

impl From<rustls::server::VerifierBuilderError> for MeshError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        MeshError::Tls(e.to_string())
    }
}

pub type Result<T, E = MeshError> = std::result::Result<T, E>;
