//! Kubernetes objects that a mesh configuration points at: Namespaces,
//! Services, ServiceAccounts, Deployments, StatefulSets, Pods, ConfigMaps and
//! Secrets. Only what shapes the mesh is kept; the rest of the Kubernetes API
//! is accepted (so real manifests load) and ignored because it cannot change
//! routing, TLS or endpoints.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::common::{de_port, IntOrString, LabelSelector};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ports: Vec<ServicePort>,
    /// `None` (absent) means the Service selects no pods (manual endpoints).
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// `"None"` makes a headless Service; an address pins the ClusterIP.
    #[serde(rename = "clusterIP", default)]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs", default)]
    pub cluster_ips: Option<Vec<String>>,
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    #[serde(default)]
    pub external_name: Option<String>,
    #[serde(default)]
    pub session_affinity: Option<IgnoredAny>,
    #[serde(default)]
    pub session_affinity_config: Option<IgnoredAny>,
    #[serde(default)]
    pub ip_families: Option<IgnoredAny>,
    #[serde(default)]
    pub ip_family_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub publish_not_ready_addresses: Option<IgnoredAny>,
    #[serde(default)]
    pub external_traffic_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub internal_traffic_policy: Option<IgnoredAny>,
    /// Pins the external address of a gateway's Service (where "outside"
    /// clients reach it).
    #[serde(rename = "loadBalancerIP", default)]
    pub load_balancer_ip: Option<String>,
    #[serde(default)]
    pub load_balancer_source_ranges: Option<IgnoredAny>,
    #[serde(default)]
    pub load_balancer_class: Option<IgnoredAny>,
    #[serde(default)]
    pub allocate_load_balancer_node_ports: Option<IgnoredAny>,
    #[serde(default)]
    pub health_check_node_port: Option<IgnoredAny>,
    #[serde(default)]
    pub external_i_ps: Option<IgnoredAny>,
    #[serde(default)]
    pub traffic_distribution: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub protocol: Option<L4Protocol>,
    #[serde(default)]
    pub app_protocol: Option<String>,
    #[serde(default)]
    pub node_port: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum L4Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// Pod template shared by Deployments and StatefulSets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: crate::common::ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub containers: Vec<Container>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`.
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub host_network: Option<bool>,
    /// Volumes: ConfigMaps mounted into the pod configure built-in apps
    /// (an nginx.conf); other volume types do not shape the mesh.
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub volumes: Vec<Volume>,
    // Scheduling, storage and lifecycle: no effect on the mesh.
    #[serde(default)]
    pub termination_grace_period_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub security_context: Option<IgnoredAny>,
    #[serde(default)]
    pub node_selector: Option<IgnoredAny>,
    #[serde(default)]
    pub node_name: Option<IgnoredAny>,
    #[serde(default)]
    pub affinity: Option<IgnoredAny>,
    #[serde(default)]
    pub tolerations: Option<IgnoredAny>,
    #[serde(default)]
    pub restart_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub dns_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub dns_config: Option<IgnoredAny>,
    #[serde(default)]
    pub image_pull_secrets: Option<IgnoredAny>,
    #[serde(default)]
    pub priority_class_name: Option<IgnoredAny>,
    #[serde(default)]
    pub priority: Option<IgnoredAny>,
    #[serde(default)]
    pub scheduler_name: Option<IgnoredAny>,
    #[serde(default)]
    pub automount_service_account_token: Option<IgnoredAny>,
    #[serde(default)]
    pub enable_service_links: Option<IgnoredAny>,
    #[serde(default)]
    pub topology_spread_constraints: Option<IgnoredAny>,
    #[serde(default)]
    pub share_process_namespace: Option<IgnoredAny>,
    #[serde(default)]
    pub host_aliases: Option<IgnoredAny>,
    #[serde(default)]
    pub host_pid: Option<IgnoredAny>,
    #[serde(default)]
    pub host_ipc: Option<IgnoredAny>,
    #[serde(default)]
    pub runtime_class_name: Option<IgnoredAny>,
    #[serde(default)]
    pub readiness_gates: Option<IgnoredAny>,
    #[serde(default)]
    pub preemption_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub overhead: Option<IgnoredAny>,
    #[serde(default)]
    pub ephemeral_containers: Option<IgnoredAny>,
    #[serde(default)]
    pub os: Option<IgnoredAny>,
    #[serde(default)]
    pub active_deadline_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub set_hostname_as_fqdn: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub args: Vec<String>,
    #[serde(default)]
    pub image_pull_policy: Option<IgnoredAny>,
    /// Read for istiod's own switches (the `discovery` container).
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Option<IgnoredAny>,
    #[serde(default)]
    pub resources: Option<IgnoredAny>,
    #[serde(default)]
    pub volume_mounts: Option<IgnoredAny>,
    #[serde(default)]
    pub volume_devices: Option<IgnoredAny>,
    #[serde(default)]
    pub security_context: Option<IgnoredAny>,
    #[serde(default)]
    pub liveness_probe: Option<IgnoredAny>,
    #[serde(default)]
    pub readiness_probe: Option<IgnoredAny>,
    #[serde(default)]
    pub startup_probe: Option<IgnoredAny>,
    #[serde(default)]
    pub lifecycle: Option<IgnoredAny>,
    #[serde(default)]
    pub working_dir: Option<IgnoredAny>,
    #[serde(default)]
    pub termination_message_path: Option<IgnoredAny>,
    #[serde(default)]
    pub termination_message_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub stdin: Option<IgnoredAny>,
    #[serde(default)]
    pub stdin_once: Option<IgnoredAny>,
    #[serde(default)]
    pub tty: Option<IgnoredAny>,
    #[serde(default)]
    pub restart_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub resize_policy: Option<IgnoredAny>,
}

/// A container's environment variable; a `valueFrom` has no value here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(deserialize_with = "de_port")]
    pub container_port: u16,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<L4Protocol>,
    #[serde(default)]
    pub host_port: Option<IgnoredAny>,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default)]
    pub template: PodTemplate,
    #[serde(default)]
    pub strategy: Option<IgnoredAny>,
    #[serde(default)]
    pub revision_history_limit: Option<IgnoredAny>,
    #[serde(default)]
    pub min_ready_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub progress_deadline_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub paused: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSetSpec {
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub template: PodTemplate,
    #[serde(default)]
    pub volume_claim_templates: Option<IgnoredAny>,
    #[serde(default)]
    pub pod_management_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub update_strategy: Option<IgnoredAny>,
    #[serde(default)]
    pub revision_history_limit: Option<IgnoredAny>,
    #[serde(default)]
    pub min_ready_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub persistent_volume_claim_retention_policy: Option<IgnoredAny>,
    #[serde(default)]
    pub ordinals: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(default)]
    pub config_map: Option<ConfigMapVolume>,
    #[serde(default)]
    pub secret: Option<IgnoredAny>,
    #[serde(default)]
    pub empty_dir: Option<IgnoredAny>,
    #[serde(default)]
    pub host_path: Option<IgnoredAny>,
    #[serde(default)]
    pub persistent_volume_claim: Option<IgnoredAny>,
    #[serde(default)]
    pub projected: Option<IgnoredAny>,
    #[serde(default)]
    pub downward_api: Option<IgnoredAny>,
    #[serde(default)]
    pub csi: Option<IgnoredAny>,
    #[serde(default)]
    pub ephemeral: Option<IgnoredAny>,
    #[serde(default)]
    pub nfs: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(default)]
    pub items: Option<IgnoredAny>,
    #[serde(default)]
    pub default_mode: Option<IgnoredAny>,
    #[serde(default)]
    pub optional: Option<bool>,
}

/// An EndpointSlice (discovery.k8s.io/v1): a Service's endpoints as the
/// cluster published them; what a Service without a selector has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceData {
    /// `kubernetes.io/service-name` of the slice.
    #[serde(skip)]
    pub service: String,
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: SliceConditions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceConditions {
    /// Absent means ready.
    #[serde(default)]
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}
