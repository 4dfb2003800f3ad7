//! TLS with rustls (ring provider, passed explicitly): server contexts for
//! filter chains (gateway termination, inbound mTLS) and client contexts for
//! clusters (SIMPLE, MUTUAL, ISTIO_MUTUAL), with Envoy's subject-alt-name
//! matching — SPIFFE URIs for Istio mTLS, DNS names otherwise.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use meshsim_tables::{DownstreamTlsContext, UpstreamTlsContext};

use crate::env::Environment;
use crate::error::ProxyError;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: Vec<CertificateDer<'static>>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for c in certs {
        let _ = store.add(c);
    }
    store
}

/// ALPN a server context accepts: the configured list plus Istio's in-mesh
/// protocols, so clients offering only `istio-http/1.1` still negotiate
/// (Envoy ignores an ALPN mismatch; rustls would reject it).
fn server_alpn(configured: &[String]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = configured.iter().map(|s| s.as_bytes().to_vec()).collect();
    for extra in [
        "istio-h2",
        "istio-http/1.1",
        "istio-http/1.0",
        "istio-peer-exchange",
        "istio",
        "h2",
        "http/1.1",
    ] {
        if !v.iter().any(|p| p == extra.as_bytes()) {
            v.push(extra.as_bytes().to_vec());
        }
    }
    v
}

/// A filter chain's server TLS context and the URI SANs of the certificate
/// it presents (`By=` in `x-forwarded-client-cert`).
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub local_uris: Vec<String>,
}

/// Builds the server side of a filter chain's `transport_socket`.
pub fn server_config(
    ctx: &DownstreamTlsContext,
    env: &dyn Environment,
) -> Result<ServerTls, ProxyError> {
    let common = &ctx.common_tls_context;
    let cert_name = common
        .tls_certificate_sds_secret_configs
        .first()
        .map(|s| s.name.clone())
        .ok_or(ProxyError::NoCertificate)?;
    let ck = env
        .certificate(&cert_name)
        .ok_or_else(|| ProxyError::SecretNotFound(cert_name.clone()))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &common.validation_context {
        Some(v) if ctx.require_client_certificate || v.trusted_ca_sds.is_some() => {
            let store = roots(env.trust_roots(v.trusted_ca_sds.as_deref()));
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
            let verifier = if ctx.require_client_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
        _ => builder.with_no_client_auth(),
    };
    let local_uris = ck
        .chain
        .first()
        .map(|c| cert_details(c).uris)
        .unwrap_or_default();
    let mut cfg = builder.with_single_cert(ck.chain, ck.key)?;
    cfg.alpn_protocols = server_alpn(&common.alpn_protocols);
    Ok(ServerTls {
        config: Arc::new(cfg),
        local_uris,
    })
}

/// Builds a cluster's client TLS context. `alpn_override` replaces the
/// configured ALPN (Istio's `istio.alpn` filter sets `istio-http/1.1` for
/// HTTP over mTLS).
pub fn client_config(
    ctx: &UpstreamTlsContext,
    env: &dyn Environment,
    alpn_override: Option<&[&str]>,
    auto_san: bool,
) -> Result<Arc<ClientConfig>, ProxyError> {
    let common = &ctx.common_tls_context;
    let v = common.validation_context.clone().unwrap_or_default();
    let store = Arc::new(roots(env.trust_roots(v.trusted_ca_sds.as_deref())));
    let verifier = Arc::new(SanVerifier {
        roots: store,
        sans: v.match_subject_alt_names.clone(),
        insecure: v.insecure_skip_verify,
        auto_san,
        provider: provider(),
    });
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match common.tls_certificate_sds_secret_configs.first() {
        Some(s) => {
            let ck = env
                .certificate(&s.name)
                .ok_or_else(|| ProxyError::SecretNotFound(s.name.clone()))?;
            builder.with_client_auth_cert(ck.chain, ck.key)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = match alpn_override {
        Some(a) => a.iter().map(|s| s.as_bytes().to_vec()).collect(),
        None => common
            .alpn_protocols
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
    };
    Ok(Arc::new(cfg))
}

/// URI and DNS subject alternative names of a certificate.
pub fn subject_alt_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) => Some(u.to_string()),
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// What Envoy's `x-forwarded-client-cert` reports of a peer certificate.
#[derive(Debug, Clone, Default)]
pub struct CertDetails {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    /// RFC 2253 subject; empty for Istio workload certificates.
    pub subject: String,
    /// Hex SHA-256 of the DER certificate.
    pub sha256: String,
}

pub fn cert_details(der: &CertificateDer<'_>) -> CertDetails {
    use x509_parser::extensions::GeneralName;
    let sha256 = ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut d = CertDetails {
        sha256,
        ..Default::default()
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return d;
    };
    // x509-parser prints RDNs in certificate order; RFC 2253 reverses them.
    let mut rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let key = x509_parser::objects::oid2abbrev(
                        a.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                    format!("{key}={}", a.as_str().unwrap_or(""))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    d.subject = rdns.join(",");
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for g in &san.value.general_names {
            match g {
                GeneralName::URI(u) => d.uris.push(u.to_string()),
                GeneralName::DNSName(n) => d.dns.push(n.to_string()),
                _ => {}
            }
        }
    }
    d
}

/// Exact match, or a wildcard certificate name (`*.test.com`) covering one label.
fn san_matches(have: &str, want: &str) -> bool {
    if have.eq_ignore_ascii_case(want) {
        return true;
    }
    match (have.strip_prefix("*."), want.split_once('.')) {
        (Some(suffix), Some((_, rest))) => rest.eq_ignore_ascii_case(suffix),
        _ => false,
    }
}

/// Verifies the chain against the configured roots, then Envoy's
/// `match_subject_alt_names` (any listed SAN present) — or, with no SANs
/// configured, nothing more (Envoy does not check the SNI hostname unless
/// told to).
#[derive(Debug)]
struct SanVerifier {
    roots: Arc<RootCertStore>,
    sans: Vec<String>,
    insecure: bool,
    /// Envoy's `auto_san_validation`: without SANs, the certificate must
    /// name the SNI the connection was opened with.
    auto_san: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let by_name = match server_name {
            ServerName::DnsName(d) if self.auto_san && self.sans.is_empty() => {
                vec![d.as_ref().to_string()]
            }
            _ => vec![],
        };
        let wanted = if by_name.is_empty() {
            &self.sans
        } else {
            &by_name
        };
        if wanted.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let present = subject_alt_names(end_entity);
        if wanted
            .iter()
            .any(|want| present.iter().any(|have| san_matches(have, want)))
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
