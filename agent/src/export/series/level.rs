//! The aggregation level (`export.aggregation`): which of a process's
//! attributes its series keep, so that the processes that share them share
//! one series.
//!
//! - `process`: all of them, `process.pid` included: a restart is a new series.
//! - `executable`: all but `process.pid`: the processes of one executable
//!   in one container (or on the host) share a series, which outlives
//!   their restarts.
//! - `workload`: the namespace, `service.name` and the workload that owns
//!   the pod (`k8s.deployment.name`, ...): a service's pods share a series,
//!   which outlives their restarts. A process outside any pod keeps its
//!   `process.executable.name` (and `container.id`), the nearest thing to a
//!   workload on a host.

use super::Subject;
use crate::{
    config::Aggregation,
    export::{
        attributes::Attr,
        catalog::{
            CONTAINER_ID, K8S_DAEMONSET_NAME, K8S_DEPLOYMENT_NAME, K8S_JOB_NAME, K8S_NAMESPACE_NAME,
            K8S_STATEFULSET_NAME, PROCESS_EXECUTABLE_NAME, PROCESS_PID, SERVICE_NAME,
        },
    },
};

/// The attributes of a workload.
const WORKLOAD: [&str; 6] = [
    K8S_NAMESPACE_NAME.key,
    SERVICE_NAME.key,
    K8S_DEPLOYMENT_NAME.key,
    K8S_STATEFULSET_NAME.key,
    K8S_DAEMONSET_NAME.key,
    K8S_JOB_NAME.key,
];

/// What a process of `attributes` is at `level`.
pub fn subject(level: Aggregation, attributes: &[Attr]) -> Subject {
    let keep = |keys: &[&str]| attributes.iter().filter(|(key, _)| keys.contains(key)).cloned().collect();
    match level {
        Aggregation::Process => attributes.into(),
        Aggregation::Executable => attributes.iter().filter(|(key, _)| *key != PROCESS_PID.key).cloned().collect(),
        Aggregation::Workload if attributes.iter().any(|(key, _)| *key == SERVICE_NAME.key) => keep(&WORKLOAD),
        Aggregation::Workload => keep(&[PROCESS_EXECUTABLE_NAME.key, CONTAINER_ID.key]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::attributes::attr;

    fn pod_process(pid: i64, pod: &str) -> Vec<Attr> {
        vec![
            attr(&PROCESS_PID, pid),
            attr(&PROCESS_EXECUTABLE_NAME, "nginx"),
            attr(&CONTAINER_ID, format!("id-of-{pod}")),
            attr(&K8S_NAMESPACE_NAME, "shop"),
            attr(&crate::export::catalog::K8S_POD_NAME, pod),
            attr(&SERVICE_NAME, "web"),
            attr(&K8S_DEPLOYMENT_NAME, "web"),
        ]
    }

    fn keys(subject: &Subject) -> Vec<&str> {
        subject.iter().map(|(key, _)| *key).collect()
    }

    #[test]
    fn each_level_keeps_its_attributes() {
        let (first, restarted) = (pod_process(10, "web-1"), pod_process(11, "web-1"));
        assert_ne!(subject(Aggregation::Process, &first), subject(Aggregation::Process, &restarted));
        assert_eq!(subject(Aggregation::Executable, &first), subject(Aggregation::Executable, &restarted));
        assert!(!keys(&subject(Aggregation::Executable, &first)).contains(&"process.pid"));

        let other_pod = pod_process(12, "web-2");
        assert_ne!(subject(Aggregation::Executable, &first), subject(Aggregation::Executable, &other_pod));
        let workload = subject(Aggregation::Workload, &first);
        assert_eq!(workload, subject(Aggregation::Workload, &other_pod));
        assert_eq!(keys(&workload), ["k8s.namespace.name", "service.name", "k8s.deployment.name"]);
    }

    #[test]
    fn a_host_process_is_its_executable_at_the_workload_level() {
        let host = [attr(&PROCESS_PID, 10), attr(&PROCESS_EXECUTABLE_NAME, "postgres")];
        assert_eq!(keys(&subject(Aggregation::Workload, &host)), ["process.executable.name"]);
    }
}
