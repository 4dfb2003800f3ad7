//! Certificate authorities built with rcgen: the mesh CA that istiod runs
//! (workload certificates with SPIFFE URI SANs, trusted as `ROOTCA`), and a
//! fake public CA that "the internet" uses (external servers, gateway
//! credentials), trusted by clients as their system store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::error::Result;
use meshsim_proxy::env::CertifiedKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// istiod's self-signed root: ten years (`CITADEL_SELF_SIGNED_CA_CERT_TTL`).
const ROOT_TTL: time::Duration = time::Duration::days(3650);
/// istio-agent asks for 24-hour workload certificates (`SECRET_TTL`); the
/// CA backdates them two minutes for clock skew.
const WORKLOAD_TTL: time::Duration = time::Duration::hours(24);
const BACKDATE: time::Duration = time::Duration::minutes(2);
/// Certificates of "the internet" and gateway credentials: a year.
const SERVER_TTL: time::Duration = time::Duration::days(365);

/// A 128-bit positive serial number, as Istio's CA draws them.
fn serial() -> rcgen::SerialNumber {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // A failure leaves zeros: still a valid (if dull) serial.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[0] |= 0x01;
    b[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&b)
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    issued: Mutex<HashMap<String, CertifiedKey>>,
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshsim");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = now + ROOT_TTL;
        params.serial_number = Some(serial());
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            root: cert.der().clone(),
            issuer: Issuer::new(params, key),
            issued: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    pub fn root_pem(&self) -> String {
        let b64 = base64_encode(self.root.as_ref());
        let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str("-----END CERTIFICATE-----\n");
        s
    }

    /// A workload certificate for a SPIFFE identity (cached per identity).
    /// Like istiod's, its subject is empty: the identity is the URI SAN
    /// (so `x-forwarded-client-cert` shows `Subject=""`).
    pub fn workload(&self, spiffe: &str) -> Result<CertifiedKey> {
        self.issue(spiffe, &[SanType::URI(spiffe.try_into()?)], false)
    }

    /// A server certificate for DNS names (wildcards allowed) and IPs.
    pub fn server(&self, names: &[String]) -> Result<CertifiedKey> {
        let mut sans = Vec::new();
        for n in names {
            match n.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(n.as_str().try_into()?)),
            }
        }
        self.issue(&names.join(","), &sans, true)
    }

    fn issue(&self, key: &str, sans: &[SanType], subject: bool) -> Result<CertifiedKey> {
        if let Some(ck) = self.issued.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(ck);
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let now = time::OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = if subject {
            (now, now + SERVER_TTL)
        } else {
            (now - BACKDATE, now - BACKDATE + WORKLOAD_TTL)
        };
        params.serial_number = Some(serial());
        params.subject_alt_names = sans.to_vec();
        params.distinguished_name = DistinguishedName::new();
        if subject {
            params
                .distinguished_name
                .push(DnType::OrganizationName, "meshsim");
        }
        let leaf_key = KeyPair::generate()?;
        let cert = params.signed_by(&leaf_key, &self.issuer)?;
        let ck = CertifiedKey {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        };
        if let Ok(mut m) = self.issued.lock() {
            m.insert(key.to_string(), ck.clone());
        }
        Ok(ck)
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}
