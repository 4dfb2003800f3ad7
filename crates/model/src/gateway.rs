//! `networking.istio.io` Gateway.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{de_port, NotSimulated, Unsimulated};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub selector: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub servers: Vec<Server>,
}

impl Unsimulated for GatewaySpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        for (i, s) in self.servers.iter().enumerate() {
            let p = format!("{path}.servers[{i}]");
            report_unsimulated!(s, p, out; default_endpoint => "defaultEndpoint", bind => "bind");
            if let Some(tls) = &s.tls {
                report_unsimulated!(tls, p, out; cipher_suites => "tls.cipherSuites",
                    min_protocol_version => "tls.minProtocolVersion", max_protocol_version => "tls.maxProtocolVersion",
                    verify_certificate_spki => "tls.verifyCertificateSpki", verify_certificate_hash => "tls.verifyCertificateHash",
                    ca_crl => "tls.caCrl", credential_names => "tls.credentialNames");
            }
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    pub port: GatewayPort,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub bind: NotSimulated,
    #[serde(default)]
    pub default_endpoint: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayPort {
    #[serde(deserialize_with = "de_port")]
    pub number: u16,
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    #[serde(default)]
    pub https_redirect: bool,
    #[serde(default)]
    pub mode: ServerTlsMode,
    #[serde(default)]
    pub server_certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub ca_certificates: Option<String>,
    #[serde(default)]
    pub credential_name: Option<String>,
    #[serde(default)]
    pub credential_names: NotSimulated,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub subject_alt_names: Vec<String>,
    #[serde(default)]
    pub verify_certificate_spki: NotSimulated,
    #[serde(default)]
    pub verify_certificate_hash: NotSimulated,
    #[serde(default)]
    pub min_protocol_version: NotSimulated,
    #[serde(default)]
    pub max_protocol_version: NotSimulated,
    #[serde(default)]
    pub cipher_suites: NotSimulated,
    #[serde(default)]
    pub ca_crl: NotSimulated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    #[default]
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}
