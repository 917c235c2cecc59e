//! The pure part: from a list of pods to an index by container id and by
//! pod uid, with each container's attributes worked out once per list.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{
    api::core::v1::{ContainerStatus, Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};

use super::{ContainerPod, Workload, WorkloadKind, jobs::JobOwners};
use crate::attribution::container::Container;

/// The pods of one list, indexed for lookups.
#[derive(Debug, Default)]
pub(super) struct PodIndex {
    /// By container id: the hex part of a status' `containerID`, lowercase.
    containers: HashMap<String, ContainerPod>,
    /// By pod uid, for containers whose id is not (yet) in a status. The
    /// container name is known only when the pod has a single container.
    pods: HashMap<String, ContainerPod>,
}

/// What the index knows about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// Its id is in a container status: everything is known.
    Container(ContainerPod),
    /// Only its pod is known, from the pod uid in its cgroup path.
    Pod(ContainerPod),
    /// Neither its id nor its pod uid is in the list.
    Nothing,
}

impl PodIndex {
    /// Indexes `pods`, with the CronJobs of their Jobs from `jobs`; pods
    /// without a name, namespace or uid are skipped (the API server always
    /// sets them).
    pub(super) fn new(pods: &[Pod], jobs: &JobOwners) -> PodIndex {
        let mut index = PodIndex::default();
        for pod in pods {
            let meta = &pod.metadata;
            let (Some(name), Some(namespace), Some(uid)) = (&meta.name, &meta.namespace, &meta.uid) else {
                continue;
            };
            let empty = BTreeMap::new();
            let labels = meta.labels.as_ref().unwrap_or(&empty);
            let owners = meta.owner_references.as_deref().unwrap_or_default();
            let cronjob = super::jobs::job_of(pod).and_then(|job| jobs.cronjob(&job.uid).map(str::to_owned));
            let attributes = |container_name: &str| ContainerPod {
                namespace: namespace.clone(),
                pod_name: name.clone(),
                pod_uid: uid.clone(),
                container_name: container_name.to_owned(),
                service_name: service_name(name, labels, owners),
                workload: workload(labels, owners),
                cronjob: cronjob.clone(),
            };
            index.pods.insert(uid.clone(), attributes(only_container(pod).unwrap_or_default()));
            for status in statuses(pod) {
                if let Some(id) = status.container_id.as_deref().and_then(container_id) {
                    index.containers.insert(id.to_ascii_lowercase(), attributes(&status.name));
                }
            }
        }
        index
    }

    /// Finds `container`: by its id first, else by its pod uid.
    pub(super) fn find(&self, container: &Container) -> Found {
        if let Some(pod) = self.containers.get(&container.id.to_ascii_lowercase()) {
            return Found::Container(pod.clone());
        }
        match container.pod_uid.as_ref().and_then(|uid| self.pods.get(uid)) {
            Some(pod) => Found::Pod(pod.clone()),
            None => Found::Nothing,
        }
    }

    /// How many pods the list had.
    pub(super) fn pods(&self) -> usize {
        self.pods.len()
    }
}

/// The statuses of all a pod's containers: regular, init (sidecars run
/// as init containers) and ephemeral (`kubectl debug`).
fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    [
        status.and_then(|s| s.container_statuses.as_ref()),
        status.and_then(|s| s.init_container_statuses.as_ref()),
        status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
    ]
    .into_iter()
    .flatten()
    .flatten()
}

/// The name of the pod's only container, when the spec has exactly one
/// (counting init and ephemeral containers): then any process of the pod
/// runs in it.
fn only_container(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    let others =
        spec.init_containers.as_ref().map_or(0, Vec::len) + spec.ephemeral_containers.as_ref().map_or(0, Vec::len);
    match spec.containers.as_slice() {
        [only] if others == 0 => Some(&only.name),
        _ => None,
    }
}

/// The container id in a status' `containerID`, `<runtime>://<hex id>`
/// (`containerd://…`, `docker://…`, `cri-o://…`), or `None` for an empty or
/// malformed one (a container that has not started has none).
pub(super) fn container_id(status_id: &str) -> Option<&str> {
    let (runtime, id) = status_id.split_once("://")?;
    let valid = !runtime.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(id)
}

/// The service a pod belongs to: its `app.kubernetes.io/name` label, else
/// its `app` label, else the name of the workload that owns it (a
/// Deployment for a ReplicaSet's pods), else the pod's own name.
pub(super) fn service_name(pod_name: &str, labels: &BTreeMap<String, String>, owners: &[OwnerReference]) -> String {
    let label = |key: &str| labels.get(key).filter(|value| !value.is_empty());
    if let Some(name) = label("app.kubernetes.io/name").or_else(|| label("app")) {
        return name.clone();
    }
    // The managing controller; pods rarely have other owners.
    let Some(owner) = owners.iter().find(|owner| owner.controller == Some(true)).or_else(|| owners.first()) else {
        return pod_name.to_owned();
    };
    match owner.kind.as_str() {
        // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`
        // and gives their pods the hash as a label. A ReplicaSet made by
        // hand has no such label, and is the service itself.
        "ReplicaSet" => label("pod-template-hash")
            .and_then(|hash| owner.name.strip_suffix(hash.as_str())?.strip_suffix('-'))
            .filter(|deployment| !deployment.is_empty())
            .unwrap_or(&owner.name)
            .to_owned(),
        // A static pod's mirror is owned by its node and named
        // `<manifest name>-<node name>`.
        "Node" => pod_name
            .strip_suffix(owner.name.as_str())
            .and_then(|name| name.strip_suffix('-'))
            .filter(|name| !name.is_empty())
            .unwrap_or(pod_name)
            .to_owned(),
        // StatefulSet, DaemonSet, Job, and custom controllers.
        _ => owner.name.clone(),
    }
}

/// The workload that owns a pod: its controller, or the Deployment of a
/// ReplicaSet that a Deployment made (the pod carries the
/// `pod-template-hash` its ReplicaSet's name ends with). A CronJob owns
/// its Jobs, not their pods: the pod's owner references stop at
/// `k8s.job.name`, and [`super::jobs`] reads the Job for its CronJob.
pub(super) fn workload(labels: &BTreeMap<String, String>, owners: &[OwnerReference]) -> Option<Workload> {
    let owner = owners.iter().find(|owner| owner.controller == Some(true)).or_else(|| owners.first())?;
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = labels.get("pod-template-hash")?;
            let deployment = owner.name.strip_suffix(hash.as_str())?.strip_suffix('-')?;
            (WorkloadKind::Deployment, deployment)
        }
        "StatefulSet" => (WorkloadKind::StatefulSet, owner.name.as_str()),
        "DaemonSet" => (WorkloadKind::DaemonSet, owner.name.as_str()),
        "Job" => (WorkloadKind::Job, owner.name.as_str()),
        _ => return None,
    };
    (!name.is_empty()).then(|| Workload { kind, name: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    use super::*;

    const ID: &str = "3f8b3b1c0f2a4a6bb1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192";
    const UID: &str = "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(key, value)| (key.to_owned(), value.to_owned())).collect()
    }

    fn owner(kind: &str, name: &str) -> OwnerReference {
        OwnerReference { kind: kind.to_owned(), name: name.to_owned(), controller: Some(true), ..Default::default() }
    }

    #[test]
    fn container_ids_of_every_runtime() {
        assert_eq!(container_id(&format!("containerd://{ID}")), Some(ID));
        assert_eq!(container_id(&format!("docker://{ID}")), Some(ID));
        assert_eq!(container_id(&format!("cri-o://{ID}")), Some(ID));
        assert_eq!(container_id("containerd://ABCdef0123"), Some("ABCdef0123"));
    }

    #[test]
    fn malformed_container_ids_are_none() {
        assert_eq!(container_id(""), None);
        assert_eq!(container_id(ID), None, "no runtime prefix");
        assert_eq!(container_id("containerd://"), None, "not started");
        assert_eq!(container_id(&format!("://{ID}")), None);
        assert_eq!(container_id("docker://not-hex"), None);
    }

    #[test]
    fn service_name_prefers_the_recommended_label() {
        let both = labels(&[("app.kubernetes.io/name", "checkout"), ("app", "legacy")]);
        assert_eq!(service_name("pod", &both, &[owner("StatefulSet", "db")]), "checkout");
        let app = labels(&[("app", "legacy")]);
        assert_eq!(service_name("pod", &app, &[owner("StatefulSet", "db")]), "legacy");
        // An empty label says nothing.
        let empty = labels(&[("app.kubernetes.io/name", ""), ("app", "")]);
        assert_eq!(service_name("pod", &empty, &[owner("StatefulSet", "db")]), "db");
    }

    #[test]
    fn replica_set_pods_belong_to_their_deployment() {
        let hashed = labels(&[("pod-template-hash", "5d8f7c9b4")]);
        let owners = [owner("ReplicaSet", "web-frontend-5d8f7c9b4")];
        assert_eq!(service_name("web-frontend-5d8f7c9b4-x2x9k", &hashed, &owners), "web-frontend");
        // Without the label (a ReplicaSet made by hand) the name stays whole,
        // even when it looks like a hash.
        assert_eq!(service_name("web-frontend-5d8f7c9b4-x2x9k", &labels(&[]), &owners), "web-frontend-5d8f7c9b4");
        // A hash label that is not the suffix is not stripped.
        let other = labels(&[("pod-template-hash", "77aa")]);
        assert_eq!(service_name("p", &other, &owners), "web-frontend-5d8f7c9b4");
    }

    #[test]
    fn other_owners_give_their_own_name() {
        let none = labels(&[]);
        assert_eq!(service_name("db-0", &none, &[owner("StatefulSet", "db")]), "db");
        assert_eq!(service_name("agent-7xk2p", &none, &[owner("DaemonSet", "agent")]), "agent");
        assert_eq!(service_name("backup-28930-abcde", &none, &[owner("Job", "backup-28930")]), "backup-28930");
        assert_eq!(service_name("etcd-node-a", &none, &[owner("Node", "node-a")]), "etcd");
        assert_eq!(service_name("debug", &none, &[]), "debug", "a bare pod is its own service");
    }

    #[test]
    fn the_controller_owner_wins() {
        let not_controller = OwnerReference { controller: None, ..owner("ConfigMap", "settings") };
        let owners = [not_controller, owner("StatefulSet", "db")];
        assert_eq!(service_name("db-0", &labels(&[]), &owners), "db");
    }

    fn pod(containers: &[&str], statuses: &[(&str, &str)]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("db-0".to_owned());
        pod.metadata.namespace = Some("shop".to_owned());
        pod.metadata.uid = Some(UID.to_owned());
        pod.metadata.owner_references = Some(vec![owner("StatefulSet", "db")]);
        let containers = containers
            .iter()
            .map(|&name| k8s_openapi::api::core::v1::Container { name: name.to_owned(), ..Default::default() });
        pod.spec = Some(PodSpec { containers: containers.collect(), ..Default::default() });
        let statuses = statuses.iter().map(|&(name, id)| ContainerStatus {
            name: name.to_owned(),
            container_id: Some(id.to_owned()),
            ..Default::default()
        });
        pod.status = Some(PodStatus { container_statuses: Some(statuses.collect()), ..Default::default() });
        pod
    }

    fn container(id: &str, pod_uid: Option<&str>) -> Container {
        Container { id: id.to_owned(), runtime: "containerd", pod_uid: pod_uid.map(str::to_owned) }
    }

    fn expected(container_name: &str) -> ContainerPod {
        ContainerPod {
            namespace: "shop".to_owned(),
            pod_name: "db-0".to_owned(),
            pod_uid: UID.to_owned(),
            container_name: container_name.to_owned(),
            service_name: "db".to_owned(),
            workload: Some(Workload { kind: WorkloadKind::StatefulSet, name: "db".to_owned() }),
            cronjob: None,
        }
    }

    #[test]
    fn index_finds_by_id_then_by_pod() {
        let upper = format!("containerd://{}", ID.to_ascii_uppercase());
        let index = PodIndex::new(
            &[pod(&["postgres", "exporter"], &[("postgres", &upper), ("exporter", "")])],
            &JobOwners::default(),
        );
        assert_eq!(index.pods(), 1);
        assert_eq!(index.find(&container(ID, None)), Found::Container(expected("postgres")));
        let other = "ab".repeat(32);
        // Two containers: which one a new id belongs to is unknown.
        assert_eq!(index.find(&container(&other, Some(UID))), Found::Pod(expected("")));
        assert_eq!(index.find(&container(&other, None)), Found::Nothing);
        assert_eq!(index.find(&container(&other, Some("00000000-0000-0000-0000-000000000000"))), Found::Nothing);
    }

    #[test]
    fn a_single_container_pod_names_its_container() {
        let index = PodIndex::new(&[pod(&["postgres"], &[])], &JobOwners::default());
        assert_eq!(index.find(&container(ID, Some(UID))), Found::Pod(expected("postgres")));
    }

    #[test]
    fn pods_without_identity_are_skipped() {
        let mut nameless = pod(&["postgres"], &[("postgres", &format!("containerd://{ID}"))]);
        nameless.metadata.name = None;
        let index = PodIndex::new(&[nameless], &JobOwners::default());
        assert_eq!(index.pods(), 0);
        assert_eq!(index.find(&container(ID, Some(UID))), Found::Nothing);
    }

    #[test]
    fn the_workload_comes_from_the_owner_references() {
        let hashed = labels(&[("pod-template-hash", "5d8f7c9b4")]);
        let workload = |labels: &BTreeMap<String, String>, kind, name| workload(labels, &[owner(kind, name)]);
        let named = |kind, name: &str| Some(Workload { kind, name: name.to_owned() });
        assert_eq!(workload(&hashed, "ReplicaSet", "web-5d8f7c9b4"), named(WorkloadKind::Deployment, "web"));
        assert_eq!(workload(&labels(&[]), "ReplicaSet", "by-hand"), None, "a ReplicaSet made by hand");
        assert_eq!(workload(&hashed, "StatefulSet", "db"), named(WorkloadKind::StatefulSet, "db"));
        assert_eq!(workload(&hashed, "DaemonSet", "agent"), named(WorkloadKind::DaemonSet, "agent"));
        assert_eq!(workload(&hashed, "Job", "backup-28930"), named(WorkloadKind::Job, "backup-28930"));
        assert_eq!(workload(&hashed, "Node", "node-a"), None);
    }
}
