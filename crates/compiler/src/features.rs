//! istiod's behaviour switches (pilot/pkg/features): each defaults by the
//! Istio version being simulated, a `compatibilityVersion` profile
//! (manifests/helm-profiles/compatibility-version-X.Y.yaml) sets the older
//! defaults back, and the istiod Deployment's own environment (the
//! `discovery` container, as a `kubectl get deploy -n istio-system -o
//! yaml` dump carries it, or `--set pilot.env...`) has the last word.

use crate::version::IstioVersion;

/// One switch: its environment name, the release whose default turned it
/// on, and whether meshsim simulates what it changes.
struct Switch {
    env: &'static str,
    since: (u32, u32),
    simulated: bool,
    get: fn(&mut PilotFeatures) -> &mut bool,
}

const SWITCHES: &[Switch] = &[
    // retry.go: the default retry policy's `retriable_status_codes: [503]`
    // goes (istio/istio#50506, #52111).
    Switch {
        env: "EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY",
        since: (1, 24),
        simulated: true,
        get: |f| &mut f.exclude_unsafe_503_from_default_retry,
    },
    // Inbound routes retry `reset-before-request` twice.
    Switch {
        env: "ENABLE_INBOUND_RETRY_POLICY",
        since: (1, 24),
        simulated: true,
        get: |f| &mut f.enable_inbound_retry_policy,
    },
    // cluster_tls.go: SIMPLE/MUTUAL origination without `sni` sends the
    // request's host as SNI (`auto_sni`) ...
    Switch {
        env: "ENABLE_AUTO_SNI",
        since: (1, 21),
        simulated: true,
        get: |f| &mut f.enable_auto_sni,
    },
    // ... and without `caCertificates` verifies the server against the
    // system roots (before 1.21 it did not verify at all).
    Switch {
        env: "VERIFY_CERTIFICATE_AT_CLIENT",
        since: (1, 21),
        simulated: true,
        get: |f| &mut f.verify_certificate_at_client,
    },
    // route.go: mirrored requests keep their Host (no `-shadow` suffix).
    Switch {
        env: "DISABLE_SHADOW_HOST_SUFFIX",
        since: (1, 28),
        simulated: true,
        get: |f| &mut f.disable_shadow_host_suffix,
    },
    // The ServiceEntry IP allocator (pilot/pkg/controllers/ipallocate):
    // hosts without addresses get 240.240.0.0/16 ones, which sidecars with
    // DNS capture answer and route by.
    Switch {
        env: "PILOT_ENABLE_IP_AUTOALLOCATE",
        since: (1, 25),
        simulated: true,
        get: |f| &mut f.enable_ip_autoallocate,
    },
    Switch {
        env: "PREFER_DESTINATIONRULE_TLS_FOR_EXTERNAL_SERVICES",
        since: (1, 24),
        simulated: false,
        get: |f| &mut f.prefer_destinationrule_tls_for_external_services,
    },
    Switch {
        env: "ENABLE_ENHANCED_DESTINATIONRULE_MERGE",
        since: (1, 24),
        simulated: false,
        get: |f| &mut f.enable_enhanced_destinationrule_merge,
    },
    Switch {
        env: "PILOT_UNIFIED_SIDECAR_SCOPE",
        since: (1, 24),
        simulated: false,
        get: |f| &mut f.unified_sidecar_scope,
    },
    Switch {
        env: "ENABLE_NATIVE_SIDECARS",
        since: (1, 27),
        simulated: false,
        get: |f| &mut f.native_sidecars,
    },
];

/// The switches a scenario can observe, as this istiod has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PilotFeatures {
    pub exclude_unsafe_503_from_default_retry: bool,
    pub enable_inbound_retry_policy: bool,
    pub enable_auto_sni: bool,
    pub verify_certificate_at_client: bool,
    pub disable_shadow_host_suffix: bool,
    pub enable_ip_autoallocate: bool,
    pub prefer_destinationrule_tls_for_external_services: bool,
    pub enable_enhanced_destinationrule_merge: bool,
    pub unified_sidecar_scope: bool,
    pub native_sidecars: bool,
}

impl PilotFeatures {
    /// The defaults of `version`, with `compatibility` (a
    /// `compatibilityVersion` profile) setting back what changed after it.
    pub fn new(version: IstioVersion, compatibility: Option<IstioVersion>) -> Self {
        let effective = match compatibility {
            Some(c) if c < version => c,
            _ => version,
        };
        let mut f = PilotFeatures::default();
        for s in SWITCHES {
            *(s.get)(&mut f) = effective.at_least(s.since.0, s.since.1);
        }
        f
    }

    /// Applies one istiod environment variable. `Ok(None)` when it is not
    /// a switch meshsim knows; `Ok(Some(note))` when it is one meshsim
    /// accepts but does not simulate; `Err` when the value is not a bool.
    pub fn set_env(&mut self, name: &str, value: &str) -> Result<Option<String>, String> {
        let Some(s) = SWITCHES.iter().find(|s| s.env == name) else {
            return Ok(None);
        };
        let v = match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => true,
            "false" | "0" | "f" => false,
            _ => return Err(format!("{name}={value:?} is not a boolean")),
        };
        *(s.get)(self) = v;
        Ok((!s.simulated).then(|| format!("{name}={v}: accepted but not simulated")))
    }
}

/// Compatibility versions istiod's charts offer: `1.X` with X at least 21.
pub fn parse_compatibility_version(s: &str) -> Option<IstioVersion> {
    let v = IstioVersion::parse(s)?;
    (v.major == 1 && v.minor >= 20).then_some(IstioVersion { patch: 0, ..v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> IstioVersion {
        IstioVersion::parse(s).expect("version")
    }

    // manifests/helm-profiles/compatibility-version-1.23.yaml sets the
    // 1.24 switches back to false.
    #[test]
    fn compatibility_profile_sets_later_defaults_back() {
        let f = PilotFeatures::new(v("1.28.0"), None);
        assert!(f.exclude_unsafe_503_from_default_retry && f.disable_shadow_host_suffix);
        let f = PilotFeatures::new(v("1.28.0"), Some(v("1.23")));
        assert!(!f.exclude_unsafe_503_from_default_retry && !f.enable_inbound_retry_policy);
        assert!(f.enable_auto_sni, "1.21 switch stays on for a 1.23 profile");
        let f = PilotFeatures::new(v("1.28.0"), Some(v("1.27")));
        assert!(f.exclude_unsafe_503_from_default_retry && !f.disable_shadow_host_suffix);
        let f = PilotFeatures::new(v("1.20.3"), None);
        assert!(!f.enable_auto_sni && !f.verify_certificate_at_client);
    }

    #[test]
    fn env_overrides_and_reports_what_is_not_simulated() {
        let mut f = PilotFeatures::new(v("1.28.0"), None);
        assert_eq!(
            f.set_env("EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY", "false"),
            Ok(None)
        );
        assert!(!f.exclude_unsafe_503_from_default_retry);
        assert!(f
            .set_env("PILOT_UNIFIED_SIDECAR_SCOPE", "false")
            .expect("bool")
            .is_some_and(|n| n.contains("not simulated")));
        assert_eq!(f.set_env("PILOT_TRACE_SAMPLING", "1"), Ok(None));
        assert!(f.set_env("ENABLE_AUTO_SNI", "maybe").is_err());
    }
}
