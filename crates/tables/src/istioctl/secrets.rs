//! `istioctl proxy-config secret` (writer/compare/sds): each warming and
//! active SDS secret with what its certificate says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::Value;

use super::{tabwrite, Dump};

/// When the certificates are judged (istioctl uses the current time).
#[derive(Debug, Clone, Copy)]
pub struct SecretView {
    pub now: SystemTime,
}

impl Default for SecretView {
    fn default() -> Self {
        Self {
            now: SystemTime::now(),
        }
    }
}

/// One row of the table (sds `SecretItem`).
struct Item {
    name: String,
    state: &'static str,
    kind: String,
    valid: bool,
    serial: String,
    not_after: String,
    not_before: String,
    trust_domain: String,
}

fn rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `secretMetaFromCert`: type, serial (`%032x`), validity window, SPIFFE
/// trust domain; `None` when the PEM does not parse.
fn meta(pem: &[u8], item: &mut Item, now: SystemTime) -> Option<()> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = p.parse_x509().ok()?;
    item.kind = if cert.is_ca() { "CA" } else { "Cert Chain" }.into();
    let serial = cert.tbs_certificate.serial.to_str_radix(16);
    item.serial = format!("{serial:0>32}");
    let (nb, na) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    item.not_before = rfc3339(nb);
    item.not_after = rfc3339(na);
    // Go's time.After with nanoseconds against whole-second bounds.
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = |secs: i64| Duration::from_secs(secs.max(0) as u64);
    item.valid = now > at(nb) && now < at(na);
    if item.trust_domain.is_empty() {
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(u) = n {
                    if let Some(rest) = u.strip_prefix("spiffe://") {
                        item.trust_domain = rest.split('/').next().unwrap_or_default().to_string();
                    }
                }
            }
        }
    }
    Some(())
}

fn inline_bytes(v: &Value) -> Option<Vec<u8>> {
    let s = v["inline_bytes"].as_str()?;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn item(
    name: &str,
    state: &'static str,
    trust_domain: &str,
    pem: Option<Vec<u8>>,
    now: SystemTime,
) -> Item {
    let mut item = Item {
        name: name.to_string(),
        state,
        kind: String::new(),
        valid: false,
        serial: String::new(),
        not_after: String::new(),
        not_before: String::new(),
        trust_domain: trust_domain.to_string(),
    };
    if let Some(pem) = pem {
        if meta(&pem, &mut item, now).is_none() {
            item.valid = false;
        }
    }
    item
}

const SPIFFE_VALIDATOR: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";

/// `parseDynamicSecret`: a certificate chain, a CA, or (SPIFFE validator)
/// one CA per trust domain.
fn items(d: &Dump<'_>, view: &SecretView) -> Vec<Item> {
    let mut out = Vec::new();
    for (name, secret, _version, state) in d.secrets() {
        let data = inline_bytes(&secret["tls_certificate"]["certificate_chain"])
            .or_else(|| inline_bytes(&secret["validation_context"]["trusted_ca"]));
        let custom = &secret["validation_context"]["custom_validator_config"]["typed_config"];
        if data.is_none() && custom["@type"].as_str() == Some(SPIFFE_VALIDATOR) {
            for td in custom["trust_domains"].as_array().into_iter().flatten() {
                let domain = td["name"].as_str().unwrap_or_default();
                out.push(item(
                    name,
                    state,
                    domain,
                    inline_bytes(&td["trust_bundle"]),
                    view.now,
                ));
            }
            continue;
        }
        out.push(item(name, state, "", data, view.now));
    }
    out
}

/// `PrintSecretSummary`; `with_type` adds istioctl `all`'s `secret/` names.
pub fn secret_summary(d: &Dump<'_>, view: &SecretView, with_type: bool) -> String {
    if d.secrets().is_empty() {
        return "No active or warming secrets found.\n".into();
    }
    let items = items(d, view);
    let trust_domains = items.iter().all(|i| !i.trust_domain.is_empty());
    let mut s = String::from(
        "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE",
    );
    if trust_domains {
        s.push_str("\tTRUST DOMAIN");
    }
    s.push('\n');
    for i in items {
        let name = if with_type {
            format!("secret/{}", i.name)
        } else {
            i.name
        };
        s.push_str(&format!(
            "{name}\t{}\t{}\t{}\t{}\t{}\t{}",
            i.kind, i.state, i.valid, i.serial, i.not_after, i.not_before
        ));
        if trust_domains {
            s.push_str(&format!("\t{}", i.trust_domain));
        }
        s.push('\n');
    }
    tabwrite(5, &s)
}
