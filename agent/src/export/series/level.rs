//! The aggregation level (`export.aggregation`) and the attribute
//! selection (`export.attributes_include`, `export.attributes_exclude`, and
//! per group of metrics `export.attributes_select`): which of a process's
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

use wildmatch::WildMatch;

use super::Subject;
use crate::{
    config::Aggregation,
    export::{
        attributes::Attr,
        catalog::{
            self, CONTAINER_ID, K8S_CRONJOB_NAME, K8S_DAEMONSET_NAME, K8S_DEPLOYMENT_NAME, K8S_JOB_NAME,
            K8S_NAMESPACE_NAME, K8S_STATEFULSET_NAME, PROCESS_EXECUTABLE_NAME, PROCESS_PID, SERVICE_NAME,
        },
    },
};

/// The attributes of a workload.
const WORKLOAD: [&str; 7] = [
    K8S_NAMESPACE_NAME.key,
    SERVICE_NAME.key,
    K8S_DEPLOYMENT_NAME.key,
    K8S_STATEFULSET_NAME.key,
    K8S_DAEMONSET_NAME.key,
    K8S_JOB_NAME.key,
    K8S_CRONJOB_NAME.key,
];

/// Which process attributes the series keep, by key: those that match an
/// `include` pattern and no `exclude` one (`*` matches any characters).
#[derive(Debug, Clone)]
pub struct Selection {
    include: Vec<WildMatch>,
    exclude: Vec<WildMatch>,
    /// It keeps every attribute.
    all: bool,
}

impl Selection {
    /// Every attribute.
    pub fn all() -> Selection {
        Selection::of(&["*".to_owned()], &[])
    }

    pub fn of(include: &[String], exclude: &[String]) -> Selection {
        let compile = |patterns: &[String]| patterns.iter().map(|pattern| WildMatch::new(pattern)).collect();
        let all = include.iter().any(|pattern| pattern == "*") && exclude.is_empty();
        Selection { include: compile(include), exclude: compile(exclude), all }
    }

    /// Whether it keeps every attribute, `process.pid` among them: then
    /// each process is a group of its own.
    pub fn keeps_all(&self) -> bool {
        self.all
    }

    fn keeps(&self, key: &str) -> bool {
        self.include.iter().any(|p| p.matches(key)) && !self.exclude.iter().any(|p| p.matches(key))
    }
}

/// Splits the metrics that have process attributes between `default` and
/// `groups` (metric-name patterns, `*` a wildcard, and their selections):
/// a metric goes to the group with the longest pattern that matches its
/// name (the most specific), else to `default`. Returns each selection
/// that serves a metric, with the names of those it serves; `default`
/// comes first, even when it serves none.
pub fn by_metric(default: &Selection, groups: &[(String, Selection)]) -> Vec<(Selection, Vec<&'static str>)> {
    let patterns: Vec<WildMatch> = groups.iter().map(|(pattern, _)| WildMatch::new(pattern)).collect();
    let mut served: Vec<Vec<&'static str>> = vec![Vec::new(); groups.len() + 1];
    for metric in catalog::ALL.iter().filter(|metric| metric.subject != catalog::Subject::Node) {
        let group = (0..groups.len())
            .filter(|&i| patterns[i].matches(metric.name))
            .max_by_key(|&i| (groups[i].0.len(), std::cmp::Reverse(i)))
            .map_or(0, |i| i + 1);
        served[group].push(metric.name);
    }
    let selections = std::iter::once(default).chain(groups.iter().map(|(_, selection)| selection));
    (selections.zip(served).enumerate())
        .filter(|(i, (_, names))| *i == 0 || !names.is_empty())
        .map(|(_, (selection, names))| (selection.clone(), names))
        .collect()
}

/// What a process of `attributes` is at `level`, with the attributes
/// `selection` keeps.
pub fn subject(level: Aggregation, selection: &Selection, attributes: &[Attr]) -> Subject {
    let at_level = |(key, _): &&Attr| match level {
        Aggregation::Process => true,
        Aggregation::Executable => *key != PROCESS_PID.key,
        Aggregation::Workload if attributes.iter().any(|(key, _)| *key == SERVICE_NAME.key) => WORKLOAD.contains(key),
        Aggregation::Workload => [PROCESS_EXECUTABLE_NAME.key, CONTAINER_ID.key].contains(key),
    };
    attributes.iter().filter(at_level).filter(|(key, _)| selection.keeps(key)).cloned().collect()
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
        assert_ne!(
            subject(Aggregation::Process, &Selection::all(), &first),
            subject(Aggregation::Process, &Selection::all(), &restarted)
        );
        assert_eq!(
            subject(Aggregation::Executable, &Selection::all(), &first),
            subject(Aggregation::Executable, &Selection::all(), &restarted)
        );
        assert!(!keys(&subject(Aggregation::Executable, &Selection::all(), &first)).contains(&"process.pid"));

        let other_pod = pod_process(12, "web-2");
        assert_ne!(
            subject(Aggregation::Executable, &Selection::all(), &first),
            subject(Aggregation::Executable, &Selection::all(), &other_pod)
        );
        let workload = subject(Aggregation::Workload, &Selection::all(), &first);
        assert_eq!(workload, subject(Aggregation::Workload, &Selection::all(), &other_pod));
        assert_eq!(keys(&workload), ["k8s.namespace.name", "service.name", "k8s.deployment.name"]);
    }

    #[test]
    fn a_host_process_is_its_executable_at_the_workload_level() {
        let host = [attr(&PROCESS_PID, 10), attr(&PROCESS_EXECUTABLE_NAME, "postgres")];
        assert_eq!(keys(&subject(Aggregation::Workload, &Selection::all(), &host)), ["process.executable.name"]);
    }

    #[test]
    fn selection_keeps_what_include_matches_and_exclude_does_not() {
        let selection =
            Selection::of(&["k8s.*".to_owned(), "process.executable.name".to_owned()], &["k8s.pod.*".to_owned()]);
        let kept = subject(Aggregation::Process, &selection, &pod_process(10, "web-1"));
        assert_eq!(keys(&kept), ["process.executable.name", "k8s.namespace.name", "k8s.deployment.name"]);
        // Excluding the pid is the executable level.
        let no_pid = Selection::of(&["*".to_owned()], &["process.pid".to_owned()]);
        assert_eq!(
            subject(Aggregation::Process, &no_pid, &pod_process(10, "web-1")),
            subject(Aggregation::Executable, &Selection::all(), &pod_process(11, "web-1"))
        );
    }

    #[test]
    fn a_metric_takes_the_selection_of_its_most_specific_group() {
        let only = |key: &str| Selection::of(&[key.to_owned()], &[]);
        let groups = [
            ("batchwatch.sync.*".to_owned(), only("process.pid")),
            ("batchwatch.sync.calls".to_owned(), only("container.id")),
            ("batchwatch.write.batch.*".to_owned(), only("k8s.*")),
            // Every metric it matches has a longer pattern: it serves none.
            ("batchwatch.sync*".to_owned(), only("process.command")),
        ];
        let parts = by_metric(&Selection::all(), &groups);
        let served: Vec<&[&str]> = parts.iter().map(|(_, names)| names.as_slice()).collect();
        assert_eq!(parts.len(), 4);
        assert!(served[0].contains(&"batchwatch.write.calls") && !served[0].contains(&"batchwatch.sync.drops"));
        assert!(!served[0].contains(&"batchwatch.agent.degraded"), "node metrics have no process attributes");
        assert_eq!(
            served[1],
            [
                "batchwatch.sync.batch.writes",
                "batchwatch.sync.batch.size",
                "batchwatch.sync.duration",
                "batchwatch.sync.drops"
            ]
        );
        assert_eq!(served[2], ["batchwatch.sync.calls"]);
        assert_eq!(
            served[3],
            ["batchwatch.write.batch.size", "batchwatch.write.batch.records", "batchwatch.write.batch.wait"]
        );
        let keys_of =
            |part: usize| keys(&subject(Aggregation::Process, &parts[part].0, &pod_process(10, "web-1"))).join(",");
        assert_eq!(keys_of(2), "container.id");
        assert_eq!(keys_of(3), "k8s.namespace.name,k8s.pod.name,k8s.deployment.name");
    }
}
