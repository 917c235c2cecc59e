//! The CronJob behind a pod's Job. A pod's owner references stop at its
//! Job; the Job's own name its CronJob. So the Jobs that own pods of the
//! node are read (`GET /apis/batch/v1/namespaces/<ns>/jobs/<name>`), each
//! once: a Job's owner never changes, and what it says is kept by the
//! Job's uid while a pod of it is in the list.
//!
//! A Job that cannot be read (no RBAC rule, the API failing) gives no
//! `k8s.cronjob.name`: its name is never guessed from the Job's (a CronJob
//! names its Jobs `<cronjob>-<minutes since the epoch>`, but so may anyone).
//! Those reads are counted, and retried at the next list.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{Api, Client};

/// A pod's Job, from its controller owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JobRef {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
}

/// The Job that controls `pod`, if a Job does.
pub(super) fn job_of(pod: &Pod) -> Option<JobRef> {
    let owners = pod.metadata.owner_references.as_deref()?;
    let owner = owners.iter().find(|owner| owner.controller == Some(true)).or_else(|| owners.first())?;
    (owner.kind == "Job" && owner.api_version.starts_with("batch/")).then(|| JobRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    })
}

/// The CronJob that controls `job`, if one does.
pub(super) fn cronjob_of(job: &Job) -> Option<String> {
    let owners = job.metadata.owner_references.as_deref()?;
    let owner = owners.iter().find(|owner| owner.controller == Some(true))?;
    (owner.kind == "CronJob" && !owner.name.is_empty()).then(|| owner.name.clone())
}

/// What the Jobs read so far said, by Job uid.
#[derive(Debug, Default)]
pub(super) struct JobOwners {
    /// A Job read (or gone: a 404), and its CronJob if it has one.
    known: HashMap<String, Option<String>>,
}

/// How the reads of one list went.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct JobReads {
    /// Jobs not read: the first failure, and every Job after it, which
    /// wait for the next list (a missing RBAC rule would fail them all,
    /// each after its own timeout).
    pub(super) failed: u64,
    /// Why the first one failed.
    pub(super) error: Option<String>,
}

impl JobOwners {
    /// The CronJob of the Job with `uid`, if it was read and has one.
    pub(super) fn cronjob(&self, uid: &str) -> Option<&str> {
        self.known.get(uid)?.as_deref()
    }

    /// Reads the Jobs of `pods` not read yet, and forgets those no pod
    /// names any more.
    pub(super) async fn refresh(&mut self, client: &Client, pods: &[Pod], timeout: std::time::Duration) -> JobReads {
        let jobs: Vec<JobRef> = pods.iter().filter_map(job_of).collect();
        let listed: HashSet<&str> = jobs.iter().map(|job| job.uid.as_str()).collect();
        self.known.retain(|uid, _| listed.contains(uid.as_str()));
        let mut reads = JobReads::default();
        let mut seen = HashSet::new();
        let unread: Vec<&JobRef> =
            jobs.iter().filter(|job| !self.known.contains_key(&job.uid) && seen.insert(&job.uid)).collect();
        for job in unread {
            if reads.error.is_some() {
                reads.failed += 1;
                continue;
            }
            let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace);
            match tokio::time::timeout(timeout, api.get_opt(&job.name)).await {
                // A Job deleted since (or one of the same name, made anew): no CronJob to name.
                Ok(Ok(found)) => {
                    let same = found.filter(|found| found.metadata.uid.as_deref() == Some(job.uid.as_str()));
                    self.known.insert(job.uid.clone(), same.as_ref().and_then(cronjob_of));
                }
                Ok(Err(error)) => {
                    reads.error = Some(format!("reading job {}/{}: {error}", job.namespace, job.name));
                    reads.failed += 1;
                }
                Err(_) => {
                    reads.error =
                        Some(format!("reading job {}/{}: no answer within {timeout:?}", job.namespace, job.name));
                    reads.failed += 1;
                }
            }
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-of-{name}"),
            controller: Some(controller),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_names_its_job_and_a_job_its_cronjob() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("ops".to_owned());
        pod.metadata.owner_references = Some(vec![owner("batch/v1", "Job", "backup-29416320", true)]);
        let job = JobRef {
            namespace: "ops".to_owned(),
            name: "backup-29416320".to_owned(),
            uid: "uid-of-backup-29416320".to_owned(),
        };
        assert_eq!(job_of(&pod), Some(job));
        // A custom resource called Job is not one.
        pod.metadata.owner_references = Some(vec![owner("example.com/v1", "Job", "x", true)]);
        assert_eq!(job_of(&pod), None);

        let mut made = Job::default();
        assert_eq!(cronjob_of(&made), None, "a Job made by hand");
        made.metadata.owner_references = Some(vec![owner("batch/v1", "CronJob", "backup", true)]);
        assert_eq!(cronjob_of(&made).as_deref(), Some("backup"));
        // An owner that does not control it is not its CronJob.
        made.metadata.owner_references = Some(vec![owner("batch/v1", "CronJob", "backup", false)]);
        assert_eq!(cronjob_of(&made), None);
    }
}
