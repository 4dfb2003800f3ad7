//! `x-forwarded-client-cert`, as Envoy's HTTP connection manager writes it
//! under the HCM's `forward_client_cert_details`.

use http::HeaderValue;
use meshsim_tables::HttpConnectionManager;

use crate::listener::ConnInfo;

const XFCC: &str = "x-forwarded-client-cert";

/// Envoy's `ConnectionManagerUtility::mutateXfccRequestHeader`: the header
/// is removed unless the downstream presented a certificate (or the mode
/// says forward as is); otherwise `By` (this proxy's URI SANs), `Hash`, and
/// the configured Subject/URI/DNS are set or appended.
pub(crate) fn mutate(h: &mut http::HeaderMap, hcm: &HttpConnectionManager, info: &ConnInfo) {
    use meshsim_tables::ForwardClientCertDetails as F;
    let mode = hcm.forward_client_cert_details.unwrap_or(F::Sanitize);
    if mode == F::AlwaysForwardOnly {
        return;
    }
    let Some(peer) = info.peer_cert.as_ref().filter(|_| mode != F::Sanitize) else {
        h.remove(XFCC);
        return;
    };
    if mode == F::ForwardOnly {
        return;
    }
    let mut parts: Vec<String> = info.local_uris.iter().map(|u| format!("By={u}")).collect();
    parts.push(format!("Hash={}", peer.sha256));
    let set = hcm.set_current_client_cert_details.unwrap_or_default();
    if set.subject {
        parts.push(format!("Subject=\"{}\"", peer.subject));
    }
    if set.uri {
        parts.extend(peer.uris.iter().map(|u| format!("URI={u}")));
    }
    if set.dns {
        parts.extend(peer.dns.iter().map(|d| format!("DNS={d}")));
    }
    let mine = parts.join(";");
    let value = match (mode, h.get(XFCC).and_then(|v| v.to_str().ok())) {
        (F::AppendForward, Some(prev)) if !prev.is_empty() => format!("{prev},{mine}"),
        _ => mine,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(XFCC, v);
    }
}
