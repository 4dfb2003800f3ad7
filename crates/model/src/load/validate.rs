//! What the Kubernetes API server rejects before Istio ever sees it
//! (k8s.io/apimachinery validation, pkg/apis/core/validation), with its
//! wording: object and namespace names, and a Service's ports.

use std::collections::BTreeSet;

use crate::common::IntOrString;
use crate::k8s::{L4Protocol, ServicePort, ServiceSpec};
use crate::{Diagnostic, Meta, Object, Resource};

const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && label_chars(s)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(label_chars)
}

/// Problems the API server would report for `r`, as `(path, message)`.
pub fn check(r: &Resource) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let meta = r.meta();
    let (rule, test): (&str, fn(&str) -> bool) = match r {
        Resource::Service(_) => (DNS1035_LABEL, is_dns1035_label),
        Resource::Namespace(_) => (DNS1123_LABEL, is_dns1123_label),
        _ => (DNS1123_SUBDOMAIN, is_dns1123_subdomain),
    };
    name(&mut out, meta, rule, test);
    if let Some(ns) = &meta.namespace {
        if !is_dns1123_label(ns) {
            out.push((
                "metadata.namespace".into(),
                format!("Invalid value: {ns:?}: {DNS1123_LABEL}"),
            ));
        }
    }
    if let Resource::Service(o) = r {
        service_ports(&mut out, o);
    }
    out
}

fn name(out: &mut Vec<(String, String)>, meta: &Meta, rule: &str, test: fn(&str) -> bool) {
    let n = &meta.name;
    if n.is_empty() {
        return;
    }
    if !test(n) {
        let mut msg = format!("Invalid value: {n:?}: {rule}");
        if n.len() > 63 && rule != DNS1123_SUBDOMAIN {
            msg = format!("Invalid value: {n:?}: must be no more than 63 characters");
        }
        out.push(("metadata.name".into(), msg));
    }
}

/// validation.go `validateServicePort` and the uniqueness checks of
/// `ValidateService`.
fn service_ports(out: &mut Vec<(String, String)>, o: &Object<ServiceSpec>) {
    let ports = &o.spec.ports;
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match p.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => out.push((format!("{path}.name"), "Required value".into())),
            None => {}
            Some(n) => {
                if !is_dns1123_label(n) {
                    out.push((
                        format!("{path}.name"),
                        format!("Invalid value: {n:?}: {DNS1123_LABEL}"),
                    ));
                }
                if !names.insert(n.to_string()) {
                    out.push((format!("{path}.name"), format!("Duplicate value: {n:?}")));
                }
            }
        }
        let protocol = protocol(p);
        if !keys.insert((p.port, protocol)) {
            out.push((path, format!("Duplicate value: {}", go_service_port(p))));
        }
    }
}

fn protocol(p: &ServicePort) -> &'static str {
    match p.protocol {
        Some(L4Protocol::Udp) => "UDP",
        Some(L4Protocol::Sctp) => "SCTP",
        Some(L4Protocol::Tcp) | None => "TCP",
    }
}

/// The port as the API server prints it (Go's `%#v` of core.ServicePort,
/// after defaulting: protocol TCP, targetPort = port).
fn go_service_port(p: &ServicePort) -> String {
    let target = match &p.target_port {
        Some(IntOrString::Str(s)) => {
            format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}")
        }
        Some(IntOrString::Int(n)) => {
            format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}")
        }
        None => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            p.port
        ),
    };
    let app = match &p.app_protocol {
        Some(a) => format!("(*string)({a:?})"),
        None => "(*string)(nil)".into(),
    };
    format!(
        "core.ServicePort{{Name:{:?}, Protocol:{:?}, AppProtocol:{app}, Port:{}, TargetPort:{target}, NodePort:0}}",
        p.name.as_deref().unwrap_or(""),
        protocol(p),
        p.port
    )
}

/// The diagnostics for `r`, at its document.
pub fn diagnostics(r: &Resource) -> Vec<Diagnostic> {
    let m = r.meta();
    check(r)
        .into_iter()
        .map(|(path, msg)| {
            Diagnostic::error(
                &m.origin.file,
                m.origin.line,
                1,
                path,
                format!("The {} {:?} is invalid: {msg}", m.kind, m.name),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(is_dns1035_label("web-1"));
        assert!(!is_dns1035_label("1web"));
        assert!(!is_dns1035_label("Web"));
        assert!(is_dns1123_label("1web"));
        assert!(!is_dns1123_label("-web"));
        assert!(is_dns1123_subdomain("reviews.v1"));
        assert!(!is_dns1123_subdomain("reviews..v1"));
        assert!(!is_dns1123_subdomain("reviews_v1"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
