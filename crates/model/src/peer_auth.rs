//! `security.istio.io` PeerAuthentication.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::MatchLabelsSelector;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<MatchLabelsSelector>,
    #[serde(default)]
    pub mtls: Option<MutualTls>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub port_level_mtls: BTreeMap<u16, MutualTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    #[serde(default)]
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}
