//! Who the series are about: the node, as the OTLP resource, and each
//! process, as the attributes on its data points.
//!
//! A node agent exports many processes, so the process attributes sit on
//! the points rather than in one resource per process: that way the
//! Prometheus translation keeps them as labels, and one set of queries
//! works for OTLP and Prometheus users alike.
//!
//! In Kubernetes, a [`PodLookup`] (the [`PodDirectory`]) names the pod and
//! container a process runs in; outside, the cgroup path's container id
//! (and pod uid) is all.

use std::{sync::Arc, time::Duration};

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    Resource,
    resource::{EnvResourceDetector, ResourceDetector, TelemetryResourceDetector},
};

use super::{
    attributes::{Attr, attr},
    catalog::{
        CONTAINER_ID, K8S_CONTAINER_NAME, K8S_CRONJOB_NAME, K8S_DAEMONSET_NAME, K8S_DEPLOYMENT_NAME, K8S_JOB_NAME,
        K8S_NAMESPACE_NAME, K8S_POD_NAME, K8S_POD_UID, K8S_STATEFULSET_NAME, PROCESS_COMMAND, PROCESS_EXECUTABLE_NAME,
        PROCESS_PID, PROCESS_RUNTIME_NAME, SERVICE_NAME,
    },
};
use crate::{
    attribution::container::Container,
    attribution::identity::Identity,
    kubernetes::{ApiFailures, ContainerPod, PodDirectory, WorkloadKind},
};

/// The variable a DaemonSet sets from `spec.nodeName` (downward API).
pub const NODE_NAME_VAR: &str = "K8S_NODE_NAME";

/// How long `batchwatch run` waits at start for the first list of pods, so
/// that the first collections name the pods already running.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Finds the pod of a container. Called on the agent's collection thread
/// for every exported process at every export interval: it must answer
/// from memory, without waiting for the API server.
pub trait PodLookup: Send + Sync {
    fn lookup(&self, container: &Container) -> Option<ContainerPod>;

    /// The requests for pods and their owners that failed so far.
    fn failures(&self) -> ApiFailures;
}

impl PodLookup for PodDirectory {
    fn lookup(&self, container: &Container) -> Option<ContainerPod> {
        PodDirectory::lookup(self, container)
    }

    fn failures(&self) -> ApiFailures {
        PodDirectory::failures(self)
    }
}

/// The pods of this node, when the agent runs in Kubernetes with
/// `K8S_NODE_NAME` set; `None` otherwise, logging why when the node name
/// is set but the directory cannot start.
pub fn kubernetes_pods() -> Option<Box<dyn PodLookup>> {
    let node = std::env::var(NODE_NAME_VAR).ok().filter(|name| !name.is_empty())?;
    match PodDirectory::from_environment(&node) {
        Ok(directory) => {
            if let Err(error) = directory.wait_for_list(FIRST_LIST_WAIT) {
                tracing::warn!("{error}; pod attributes come once a list succeeds");
            }
            Some(Box::new(directory))
        }
        Err(error) => {
            tracing::warn!("no pod attributes: {error}");
            None
        }
    }
}

/// The node's resource: `service.name` (`batchwatch` unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise),
/// `service.version`, `host.name`, `k8s.node.name` (from `K8S_NODE_NAME`)
/// and the SDK's `telemetry.sdk.*`; `OTEL_RESOURCE_ATTRIBUTES` overrides all
/// but `OTEL_SERVICE_NAME`.
pub fn node_resource() -> Resource {
    let mut defaults =
        vec![KeyValue::new("service.name", "batchwatch"), KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    if let Some(host) = read_trimmed("/proc/sys/kernel/hostname") {
        defaults.push(KeyValue::new("host.name", host));
    }
    if let Some(node) = std::env::var(NODE_NAME_VAR).ok().filter(|name| !name.is_empty()) {
        defaults.push(KeyValue::new("k8s.node.name", node));
    }
    let detectors: [Box<dyn ResourceDetector>; 2] =
        [Box::new(TelemetryResourceDetector), Box::new(EnvResourceDetector::new())];
    let builder = Resource::builder_empty().with_attributes(defaults).with_detectors(&detectors);
    match std::env::var("OTEL_SERVICE_NAME").ok().filter(|name| !name.is_empty()) {
        Some(name) => builder.with_service_name(name).build(),
        None => builder.build(),
    }
}

/// The attributes of `identity`'s series, in catalog order; the Kubernetes
/// ones when `pods` finds its container's pod.
pub fn process_attributes(identity: &Identity, pods: Option<&dyn PodLookup>) -> Arc<[Attr]> {
    let mut attributes =
        vec![attr(&PROCESS_PID, i64::from(identity.pid)), attr(&PROCESS_EXECUTABLE_NAME, identity.comm.clone())];
    if let Some(command) = identity.command.split_whitespace().next() {
        attributes.push(attr(&PROCESS_COMMAND, command));
    }
    if let Some(runtime) = &identity.runtime {
        attributes.push(attr(&PROCESS_RUNTIME_NAME, runtime.name.name()));
    }
    if let Some(container) = &identity.container {
        attributes.push(attr(&CONTAINER_ID, container.id.clone()));
        match pods.and_then(|pods| pods.lookup(container)) {
            Some(pod) => attributes.extend(pod_attributes(pod)),
            None => attributes.extend(container.pod_uid.clone().map(|uid| attr(&K8S_POD_UID, uid))),
        }
    }
    attributes.into()
}

/// The pod's attributes, and its workload's; an empty value (a container
/// name not known yet) is left out.
fn pod_attributes(pod: ContainerPod) -> impl Iterator<Item = Attr> {
    let workload = pod.workload.map(|workload| {
        let attribute = match workload.kind {
            WorkloadKind::Deployment => &K8S_DEPLOYMENT_NAME,
            WorkloadKind::StatefulSet => &K8S_STATEFULSET_NAME,
            WorkloadKind::DaemonSet => &K8S_DAEMONSET_NAME,
            WorkloadKind::Job => &K8S_JOB_NAME,
        };
        (attribute, workload.name)
    });
    [
        (&K8S_NAMESPACE_NAME, pod.namespace),
        (&K8S_POD_NAME, pod.pod_name),
        (&K8S_POD_UID, pod.pod_uid),
        (&K8S_CONTAINER_NAME, pod.container_name),
        (&SERVICE_NAME, pod.service_name),
    ]
    .into_iter()
    .chain(workload)
    .chain(pod.cronjob.map(|name| (&K8S_CRONJOB_NAME, name)))
    .filter(|(_, value)| !value.is_empty())
    .map(|(attribute, value)| attr(attribute, value))
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::Workload;

    const ID: &str = "3f8b3b1c0f2a4a6bb1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192";

    fn identity(container: Option<Container>) -> Identity {
        Identity {
            pid: 42,
            start_ticks: 7,
            comm: "nginx".to_owned(),
            command: "/usr/sbin/nginx -g daemon off;".to_owned(),
            container,
            runtime: None,
        }
    }

    fn container(pod_uid: Option<&str>) -> Container {
        Container { id: ID.to_owned(), runtime: "containerd", pod_uid: pod_uid.map(str::to_owned) }
    }

    /// One pod, whose container has this name.
    struct OnePod(&'static str);

    impl PodLookup for OnePod {
        fn lookup(&self, container: &Container) -> Option<ContainerPod> {
            (container.id == ID).then(|| ContainerPod {
                namespace: "shop".to_owned(),
                pod_name: "web-7d9f".to_owned(),
                pod_uid: "uid-from-api".to_owned(),
                container_name: self.0.to_owned(),
                service_name: "web".to_owned(),
                workload: Some(Workload { kind: WorkloadKind::Deployment, name: "web".to_owned() }),
                cronjob: None,
            })
        }

        fn failures(&self) -> ApiFailures {
            ApiFailures::default()
        }
    }

    fn keys_and_values(attributes: &[Attr]) -> Vec<(&str, String)> {
        attributes.iter().map(|(key, value)| (*key, value.to_string())).collect()
    }

    #[test]
    fn a_host_process_has_pid_name_and_command_only() {
        let attributes = process_attributes(&identity(None), Some(&OnePod("nginx")));
        assert_eq!(
            keys_and_values(&attributes),
            [
                ("process.pid", "42".to_owned()),
                ("process.executable.name", "nginx".to_owned()),
                ("process.command", "/usr/sbin/nginx".to_owned()),
            ]
        );
    }

    #[test]
    fn a_container_outside_kubernetes_has_its_id_and_cgroup_pod_uid() {
        let attributes = process_attributes(&identity(Some(container(Some("uid-from-cgroup")))), None);
        let attributes = keys_and_values(&attributes);
        assert_eq!(attributes[3], ("container.id", ID.to_owned()));
        assert_eq!(attributes[4], ("k8s.pod.uid", "uid-from-cgroup".to_owned()));
        assert_eq!(attributes.len(), 5);
    }

    #[test]
    fn a_pod_container_has_the_kubernetes_attributes() {
        let attributes =
            process_attributes(&identity(Some(container(Some("uid-from-cgroup")))), Some(&OnePod("nginx")));
        let keys: Vec<_> = attributes.iter().map(|(key, _)| *key).collect();
        assert_eq!(
            keys,
            [
                "process.pid",
                "process.executable.name",
                "process.command",
                "container.id",
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.pod.uid",
                "k8s.container.name",
                "service.name",
                "k8s.deployment.name"
            ]
        );
        assert_eq!(attributes[6].1.to_string(), "uid-from-api");
    }

    #[test]
    fn an_unknown_container_name_is_left_out() {
        let attributes = process_attributes(&identity(Some(container(None))), Some(&OnePod("")));
        assert!(attributes.iter().all(|(key, _)| *key != "k8s.container.name"));
        assert!(attributes.iter().any(|(key, _)| *key == "k8s.pod.name"));
    }

    #[test]
    fn an_exited_process_has_no_command() {
        let mut exited = identity(None);
        exited.command.clear();
        assert_eq!(process_attributes(&exited, None).len(), 2);
    }
}
