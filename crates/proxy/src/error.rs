//! The data plane's errors when tables are loaded: a TLS context that
//! cannot be built (a missing secret, a key rustls refuses). Envoy would
//! not warm such a listener or cluster; meshsim reports it and fails the
//! connections that need it the way Envoy's would.

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("no certificate configured")]
    NoCertificate,
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("{0}")]
    Tls(String),
}

impl From<rustls::Error> for ProxyError {
    fn from(e: rustls::Error) -> Self {
        ProxyError::Tls(e.to_string())
    }
}

impl From<rustls::server::VerifierBuilderError> for ProxyError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        ProxyError::Tls(e.to_string())
    }
}
