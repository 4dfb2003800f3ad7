//! What an Istio install adds to the input: istiod's behaviour switches
//! (version, compatibility profile, the istiod Deployment's env) and the
//! profiles' own gateways.

use super::build::PodDecl;
use super::*;

/// istiod's switches: the version's defaults, the compatibility
/// profile, then the env of an istiod Deployment in the input (its
/// `discovery` container).
pub(super) fn istiod_features(
    resources: &[Resource],
    settings: &Settings,
    diags: &mut Vec<Diagnostic>,
) -> crate::features::PilotFeatures {
    let mut f =
        crate::features::PilotFeatures::new(settings.istio_version, settings.compatibility_version);
    for r in resources {
        let Resource::Deployment(o) = r else {
            continue;
        };
        if !o.meta.name.starts_with("istiod") {
            continue;
        }
        for c in o
            .spec
            .template
            .spec
            .containers
            .iter()
            .filter(|c| c.name == "discovery")
        {
            for e in &c.env {
                let Some(value) = &e.value else {
                    continue;
                };
                let note = |m: String, error: bool| {
                    let path = format!("spec.template.spec.containers[discovery].env[{}]", e.name);
                    if error {
                        Diagnostic::error(&o.meta.origin.file, o.meta.origin.line, 0, path, m)
                    } else {
                        Diagnostic::warning(&o.meta.origin.file, o.meta.origin.line, 0, path, m)
                    }
                };
                match f.set_env(&e.name, value) {
                    Ok(None) => {}
                    Ok(Some(m)) => diags.push(note(m, false)),
                    Err(m) => diags.push(note(m, true)),
                }
            }
        }
    }
    f
}

/// Whether the input has Istio's `istio-<kind>` gateway: a workload
/// labelled `istio: <kind>` or the Service `istio-<kind>.istio-system`.
pub(super) fn declares_istio_gateway(
    decls: &[PodDecl],
    services: &[Object<meshsim_model::k8s::ServiceSpec>],
    kind: &str,
) -> bool {
    decls
        .iter()
        .any(|d| d.labels.get("istio").is_some_and(|v| v == kind))
        || services
            .iter()
            .any(|s| s.meta.name == format!("istio-{kind}") && s.meta.ns() == "istio-system")
}

/// Whether a Gateway selects `istio: egressgateway` or a route or
/// DestinationRule names `istio-egressgateway` (istio.io's egress tasks,
/// written for the demo profile).
pub(super) fn uses_egress_gateway(w: &World) -> bool {
    const HOST: &str = "istio-egressgateway.istio-system";
    w.gateways.iter().any(|g| {
        g.spec
            .selector
            .get("istio")
            .is_some_and(|v| v == "egressgateway")
    }) || w
        .destination_rules
        .iter()
        .any(|d| d.spec.host.starts_with(HOST))
        || w.virtual_services.iter().any(|v| {
            v.spec
                .destination_hosts()
                .any(|h| h.starts_with(HOST) || h == "istio-egressgateway")
        })
}

/// Istio's `istio-<kind>` gateway in `istio-system` as its profiles
/// install it (`ingressgateway`: default profile, a LoadBalancer;
/// `egressgateway`: demo profile, a ClusterIP Service).
pub(super) fn add_default_gateway(
    decls: &mut Vec<PodDecl>,
    services: &mut Vec<Object<meshsim_model::k8s::ServiceSpec>>,
    kind: &str,
) {
    let name = format!("istio-{kind}");
    let ingress = kind == "ingressgateway";
    let labels: BTreeMap<String, String> = [("app", name.as_str()), ("istio", kind)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let origin = Origin {
        file: if ingress {
            "<built-in: Istio default profile>".into()
        } else {
            "<built-in: Istio demo profile>".into()
        },
        line: 0,
    };
    let spec = PodSpec {
        containers: vec![meshsim_model::k8s::Container {
            name: "istio-proxy".into(),
            image: Some("docker.io/istio/proxyv2".into()),
            ..Default::default()
        }],
        service_account_name: Some(format!("{name}-service-account")),
        ..Default::default()
    };
    decls.push(PodDecl {
        name: format!("{name}-0"),
        namespace: "istio-system".into(),
        labels: labels.clone(),
        annotations: BTreeMap::new(),
        spec,
        pinned_ip: None,
        owner: format!("Deployment/{name}"),
        observed: false,
        ready: true,
        origin: origin.clone(),
    });
    let port = |name: &str, port: u16, target: u32| meshsim_model::k8s::ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some(L4Protocol::Tcp),
        app_protocol: None,
        node_port: None,
    };
    services.push(Object {
        meta: Meta {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: name.clone(),
            namespace: Some("istio-system".into()),
            labels: labels.clone(),
            origin,
            ..Default::default()
        },
        spec: meshsim_model::k8s::ServiceSpec {
            ports: vec![
                port("status-port", 15021, 15021),
                port("http2", 80, 8080),
                port("https", 443, 8443),
            ],
            selector: Some(labels),
            type_: Some(if ingress { "LoadBalancer" } else { "ClusterIP" }.into()),
            ..Default::default()
        },
    });
}
