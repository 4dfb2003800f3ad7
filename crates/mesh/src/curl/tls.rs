//! curl's TLS: the trust store (`--cacert`, else the fake public CA as the
//! system store), `-k`, client certificates, SNI (none for an IP literal)
//! and ALPN, and OpenSSL's words for failures.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{CurlRequest, CurlResponse, HttpVersion, Target};
use crate::mesh::Mesh;

impl Mesh {
    pub(super) async fn tls_connect(
        &self,
        stream: TcpStream,
        t: &Target,
        req: &CurlRequest,
    ) -> Result<(Box<dyn meshsim_proxy::io::Io>, bool), CurlResponse> {
        let roots: Vec<rustls::pki_types::CertificateDer<'static>> = match &req.cacert {
            Some(pem) => {
                use rustls::pki_types::pem::PemObject;
                rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                    .filter_map(|c| c.ok())
                    .collect()
            }
            None => vec![self.sds.public_ca.root()],
        };
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            let _ = store.add(r);
        }
        let builder =
            match rustls::ClientConfig::builder_with_provider(meshsim_proxy::tls::provider())
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b,
                Err(e) => return Err(CurlResponse::fail(35, e.to_string())),
            };
        let mut cfg = match (req.insecure, &req.client_cert) {
            (true, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    NoVerify(meshsim_proxy::tls::provider()),
                ))
                .with_no_client_auth(),
            (true, Some(ck)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    NoVerify(meshsim_proxy::tls::provider()),
                ))
                .with_client_auth_cert(ck.chain.clone(), ck.key.clone_key())
                .map_err(|e| {
                    CurlResponse::fail(58, format!("could not load client certificate: {e}"))
                })?,
            (false, None) => builder.with_root_certificates(store).with_no_client_auth(),
            (false, Some(ck)) => builder
                .with_root_certificates(store)
                .with_client_auth_cert(ck.chain.clone(), ck.key.clone_key())
                .map_err(|e| {
                    CurlResponse::fail(58, format!("could not load client certificate: {e}"))
                })?,
        };
        // curl sends no SNI for an IP literal.
        let is_ip = t.host.parse::<IpAddr>().is_ok();
        cfg.enable_sni = !is_ip;
        cfg.alpn_protocols = match req.version {
            HttpVersion::Http11 | HttpVersion::Http10 => vec![b"http/1.1".to_vec()],
            _ => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let name = ServerName::try_from(t.host.clone())
            .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        match tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, stream)
            .await
        {
            Ok(s) => {
                let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                Ok((Box::new(s), h2))
            }
            Err(e) => {
                let m = e.to_string();
                let msg = if m.contains("InvalidContentType") || m.contains("corrupt message") {
                    "OpenSSL/3.0.19: error:0A00010B:SSL routines::wrong version number".to_string()
                } else if m.contains("invalid peer certificate") {
                    format!("SSL certificate problem: unable to get local issuer certificate ({m})")
                } else {
                    format!(
                        "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {}:{} ",
                        t.host, t.port
                    )
                };
                let code = if m.contains("invalid peer certificate") {
                    60
                } else {
                    35
                };
                Err(CurlResponse::fail(code, msg))
            }
        }
    }
}

/// `-k`: accept any certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
