//! PeerAuthentication resolution (istiod `authn` policy applier): workload
//! selector policy, then namespace policy, then mesh policy (root
//! namespace); `UNSET` inherits; Istio's default is PERMISSIVE.

use meshsim_model::common::labels_match;
use meshsim_model::peer_auth::MtlsMode;

use crate::world::{Pod, World};

/// Effective inbound mTLS mode of `pod` on `port` (a target port).
pub fn inbound_mode(world: &World, pod: &Pod, port: u16) -> MtlsMode {
    let root = &world.mesh.root_namespace;
    let mut mode = MtlsMode::Unset;
    // Most specific first: workload, namespace, mesh.
    let workload = world.peer_authentications.iter().filter(|pa| {
        pa.meta.ns() == pod.namespace
            && pa.spec.selector.as_ref().is_some_and(|s| {
                !s.match_labels.is_empty() && labels_match(&s.match_labels, &pod.labels)
            })
    });
    let namespace = world.peer_authentications.iter().filter(|pa| {
        pa.meta.ns() == pod.namespace
            && pa
                .spec
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.is_empty())
    });
    let mesh = world.peer_authentications.iter().filter(|pa| {
        pa.meta.ns() == root
            && pa
                .spec
                .selector
                .as_ref()
                .is_none_or(|s| s.match_labels.is_empty())
    });
    for pa in workload.chain(namespace).chain(mesh) {
        if mode == MtlsMode::Unset {
            if let Some(m) = pa.spec.port_level_mtls.get(&port) {
                mode = m.mode;
            }
        }
        if mode == MtlsMode::Unset {
            mode = pa
                .spec
                .mtls
                .as_ref()
                .map(|m| m.mode)
                .unwrap_or(MtlsMode::Unset);
        }
        if mode != MtlsMode::Unset {
            break;
        }
    }
    if mode == MtlsMode::Unset {
        MtlsMode::Permissive
    } else {
        mode
    }
}

/// Mode a client should assume for a service's namespace (auto mTLS turns
/// itself off for services whose policy is DISABLE).
pub fn service_mode(world: &World, namespace: &str) -> MtlsMode {
    let root = &world.mesh.root_namespace;
    let find = |ns: &str| {
        world
            .peer_authentications
            .iter()
            .filter(|pa| {
                pa.meta.ns() == ns
                    && pa
                        .spec
                        .selector
                        .as_ref()
                        .is_none_or(|s| s.match_labels.is_empty())
            })
            .find_map(|pa| {
                pa.spec
                    .mtls
                    .as_ref()
                    .map(|m| m.mode)
                    .filter(|m| *m != MtlsMode::Unset)
            })
    };
    find(namespace)
        .or_else(|| find(root))
        .unwrap_or(MtlsMode::Permissive)
}
