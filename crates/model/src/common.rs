//! Types shared by every resource kind: object metadata, durations, label
//! selectors, and the marker for fields we accept but do not simulate.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;

/// Kubernetes `metadata`. Fields that do not change mesh behaviour are
/// accepted (so `kubectl get -o yaml` output loads) but not kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// `labels:` with nothing after it is an empty map, as kubectl reads it.
    #[serde(default, deserialize_with = "null_is_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339; orders EnvoyFilters the way istiod does.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub generate_name: Option<IgnoredAny>,
    #[serde(default)]
    pub uid: Option<IgnoredAny>,
    #[serde(default)]
    pub resource_version: Option<IgnoredAny>,
    #[serde(default)]
    pub generation: Option<IgnoredAny>,
    #[serde(default)]
    pub managed_fields: Option<IgnoredAny>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default)]
    pub finalizers: Option<IgnoredAny>,
    #[serde(default)]
    pub self_link: Option<IgnoredAny>,
    #[serde(default)]
    pub deletion_timestamp: Option<IgnoredAny>,
}

/// `metadata.ownerReferences[]`: who created the object (a dumped Pod's
/// ReplicaSet or StatefulSet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub controller: Option<bool>,
}

/// What a `status` says that shapes the mesh (the rest of a dumped
/// object's status is accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedStatus {
    /// A Pod's address.
    #[serde(rename = "podIP", default)]
    pub pod_ip: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub conditions: Vec<Condition>,
}

impl ObservedStatus {
    /// A Pod's `Ready` condition, when the status has one.
    pub fn ready(&self) -> Option<bool> {
        self.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status == "True")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Condition {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub status: String,
}

/// A list or map that may be written as `null` (an empty `key:`): the API
/// server reads a null field as absent, so kubectl applies it.
pub(crate) fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A protobuf-style duration (`"10s"`, `"1.5s"`, `"250ms"`, `"1m"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    pub millis: u64,
}

impl Duration {
    pub fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// Parses Go/protobuf duration text. Returns what was wrong on failure.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let units: [(&str, f64); 6] = [
            ("ms", 1.0),
            ("us", 0.001),
            ("ns", 0.000_001),
            ("s", 1000.0),
            ("m", 60_000.0),
            ("h", 3_600_000.0),
        ];
        for (suffix, factor) in units {
            if let Some(num) = s.strip_suffix(suffix) {
                if num.is_empty() || num.ends_with(['m', 'u', 'n']) {
                    continue;
                }
                let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}: expected a number followed by h, m, s or ms (e.g. \"10s\")"))?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("invalid duration {s:?}: must be non-negative"));
                }
                return Ok(Self {
                    millis: (v * factor).round() as u64,
                });
            }
        }
        Err(format!(
            "invalid duration {s:?}: expected a number followed by h, m, s or ms (e.g. \"10s\")"
        ))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis.is_multiple_of(1000) {
            write!(f, "{}s", self.millis / 1000)
        } else {
            write!(f, "{}.{:03}s", self.millis / 1000, self.millis % 1000)
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(de::Error::custom)
    }
}

/// A field that Istio defines and we accept, but whose effect meshsim does
/// not simulate. Loading reports each one present as a warning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotSimulated {
    /// Line and column of the value, when known.
    pub at: Option<(u64, u64)>,
}

impl NotSimulated {
    pub fn is_present(&self) -> bool {
        self.at.is_some()
    }
}

impl<'de> Deserialize<'de> for NotSimulated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sp = serde_saphyr::Spanned::<IgnoredAny>::deserialize(d)?;
        let loc = sp.referenced;
        Ok(Self {
            at: Some((loc.line(), loc.column())),
        })
    }
}

/// Collects the not-simulated fields present in a resource, with their paths.
pub trait Unsimulated {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>);
}

/// Records each listed field of `self` that is present.
#[macro_export]
macro_rules! report_unsimulated {
    ($self:ident, $path:ident, $out:ident; $($field:ident => $name:literal),* $(,)?) => {
        $(
            if let Some(at) = $self.$field.at {
                $out.push((format!("{}.{}", $path, $name), at));
            }
        )*
    };
}

impl<T: Unsimulated> Unsimulated for Vec<T> {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        for (i, item) in self.iter().enumerate() {
            item.unsimulated(&format!("{path}[{i}]"), out);
        }
    }
}

impl<T: Unsimulated> Unsimulated for Option<T> {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        if let Some(v) = self {
            v.unsimulated(path, out);
        }
    }
}

/// `matchLabels` / `matchExpressions` selector (Deployment, StatefulSet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        labels_match(&self.match_labels, labels)
            && self.match_expressions.iter().all(|r| {
                let v = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => v.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => v.is_some(),
                    SelectorOperator::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// Kubernetes equality selector: every selector label is present with the same value.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `networking.istio.io` `WorkloadSelector` (Sidecar, EnvoyFilter,
/// ServiceEntry `workloadSelector`): `labels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub labels: BTreeMap<String, String>,
}

impl WorkloadSelector {
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// `istio.type.v1beta1.WorkloadSelector` (DestinationRule
/// `workloadSelector`, the security kinds' `selector`): `matchLabels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchLabelsSelector {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub match_labels: BTreeMap<String, String>,
}

impl MatchLabelsSelector {
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.match_labels
    }
}

/// A port given either as a number or as a name (`targetPort`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(u32),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("port number out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("port number out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(match v.parse::<u32>() {
                    Ok(n) => IntOrString::Int(n),
                    Err(_) => IntOrString::Str(v.to_string()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a port number field, rejecting 0 and values above 65535.
pub fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u64::deserialize(d)?;
    match u16::try_from(v) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(de::Error::custom(format!(
            "invalid port {v}: expected 1..=65535"
        ))),
    }
}

/// Optional variant of [`de_port`].
pub fn de_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_port(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_protobuf() {
        assert_eq!(Duration::parse("10s").map(|d| d.millis), Ok(10_000));
        assert_eq!(Duration::parse("1.5s").map(|d| d.millis), Ok(1_500));
        assert_eq!(Duration::parse("250ms").map(|d| d.millis), Ok(250));
        assert_eq!(Duration::parse("2m").map(|d| d.millis), Ok(120_000));
        assert_eq!(Duration::parse("1h").map(|d| d.millis), Ok(3_600_000));
        assert!(Duration::parse("10").is_err());
        assert!(Duration::parse("fast").is_err());
        assert!(Duration::parse("-1s").is_err());
    }

    #[test]
    fn selector_expressions() {
        let sel = LabelSelector {
            match_labels: [("app".to_string(), "a".to_string())].into(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "v".into(),
                operator: SelectorOperator::In,
                values: vec!["1".into()],
            }],
        };
        let mut l: BTreeMap<String, String> = [("app".to_string(), "a".to_string())].into();
        assert!(!sel.matches(&l));
        l.insert("v".into(), "1".into());
        assert!(sel.matches(&l));
    }
}
