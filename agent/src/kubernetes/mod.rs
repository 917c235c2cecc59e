//! Which Kubernetes pod and container a process runs in, and the service it
//! belongs to, from the Kubernetes API.
//!
//! The agent runs on every node (a DaemonSet with `hostPID`). A process's
//! [`Container`] (from its cgroup path) gives the container id and the pod
//! uid; the API gives the rest. [`PodDirectory`] lists the pods of this node
//! only (`GET /api/v1/pods?fieldSelector=spec.nodeName=<node>`) and keeps
//! them indexed by container id and pod uid.
//!
//! The collector is synchronous, so the directory never makes it wait:
//! lists run on a thread of the directory's own (a single-threaded tokio
//! runtime, which kube's client needs), and [`PodDirectory::lookup`] only
//! reads the last list. A lookup that misses asks for a new list, which runs
//! no sooner than [`RefreshPolicy::min_gap`] after the previous one; the
//! miss is answered by a later lookup. Lists also run every
//! [`RefreshPolicy::interval`]. Outside Kubernetes there is no directory, and
//! processes carry no pod attributes.
//!
//! See docs/kubernetes-identity.md for the attributes and the RBAC rules.

mod jobs;
mod pods;
mod refresh;

use std::{
    path::Path,
    sync::{Arc, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};
use tokio::sync::oneshot;

use self::{pods::Found, refresh::Shared};
use crate::attribution::container::Container;

/// Where a pod's service account token is mounted.
const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The pod attributes of one container, for OpenTelemetry's `k8s.*` and
/// `service.name` resource attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPod {
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name`.
    pub pod_name: String,
    /// `k8s.pod.uid`.
    pub pod_uid: String,
    /// `k8s.container.name`; empty when unknown: the container was found by
    /// its pod uid alone (its id is not in the pod's statuses yet) and the
    /// pod has more than one container. Leave the attribute out then.
    pub container_name: String,
    /// `service.name`: the pod's `app.kubernetes.io/name` label, else its
    /// `app` label, else its workload's name (the Deployment of a
    /// ReplicaSet's pod; a StatefulSet, DaemonSet or Job), else the pod's name.
    pub service_name: String,
    /// The workload that owns the pod, where its owner references tell it.
    pub workload: Option<Workload>,
    /// `k8s.cronjob.name`: the CronJob that owns the pod's Job, from the
    /// Job's owner references (the Job read from the API).
    pub cronjob: Option<String>,
}

/// Requests to the API server that failed, by kind, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiFailures {
    /// Lists of the node's pods: lookups answer from the last list that
    /// succeeded.
    pub pod_lists: u64,
    /// Reads of a pod's Job, and those put off after one failed in the same
    /// list: the pods of those Jobs go without `k8s.cronjob.name` until a
    /// read succeeds.
    pub job_reads: u64,
}

/// A pod's workload, from its owner references: the semantic conventions'
/// `k8s.deployment.name`, `k8s.statefulset.name`, `k8s.daemonset.name`,
/// `k8s.job.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

/// How often the directory lists the node's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Time between periodic lists (60 s by default).
    pub interval: Duration,
    /// The least time from one list to a list that a lookup's miss asked for
    /// (5 s by default): however many misses, at most one list per gap.
    pub min_gap: Duration,
    /// How long one list may take (30 s by default).
    pub request_timeout: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            interval: Duration::from_secs(60),
            min_gap: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RefreshPolicy {
    /// The time from a list to the next periodic one: the interval, or after
    /// `failures` failed lists in a row, the gap doubled each time, up to
    /// the interval.
    fn next_periodic(&self, failures: u32) -> Duration {
        match failures {
            0 => self.interval,
            n => self.min_gap.saturating_mul(2u32.saturating_pow(n - 1)).min(self.interval),
        }
    }
}

/// Errors of the pod directory.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// The agent does not run in a Kubernetes pod: not an error for the
    /// agent, which then goes on without pod attributes.
    #[error("not running in Kubernetes: {reason}")]
    NotInCluster {
        /// What is missing, in one line.
        reason: &'static str,
    },
    /// The pod has no service account token to read the API with.
    #[error("no service account token at {path}: the agent's pod needs automountServiceAccountToken")]
    NoToken {
        /// Where the token should be.
        path: &'static str,
    },
    /// No node name was given.
    #[error("no node name: pass the pod's spec.nodeName (downward API), e.g. in K8S_NODE_NAME")]
    NoNodeName,
    /// The in-cluster configuration (API address, CA certificate) is unusable.
    #[error("reading the in-cluster Kubernetes configuration")]
    InClusterConfig {
        /// What kube found wrong.
        #[source]
        source: kube::config::InClusterError,
    },
    /// An API URL that does not parse.
    #[error("invalid Kubernetes API URL {url:?}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The API client could not be built (TLS set-up, credentials).
    #[error("building the Kubernetes API client")]
    Client {
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// The directory's thread or runtime could not start.
    #[error("starting the pod directory's thread")]
    Thread {
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Listing the node's pods failed.
    #[error("listing the pods of node {node}: {reason}")]
    List {
        /// The node whose pods were listed.
        node: String,
        /// The API's or the connection's error, as text.
        reason: String,
    },
    /// No list has come back yet.
    #[error("no list of the pods of node {node} after {waited:?}")]
    NotListedYet {
        /// The node whose pods are listed.
        node: String,
        /// How long the caller waited.
        waited: Duration,
    },
}

/// The pods of this node, for looking up containers without waiting.
///
/// Dropping it stops its thread.
#[derive(Debug)]
pub struct PodDirectory {
    shared: Arc<Shared>,
    node_name: String,
    /// Dropped to stop the refresh loop.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PodDirectory {
    /// The directory of an agent running in a pod: the API server from
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's token and CA
    /// certificate, and the default [`RefreshPolicy`]. Fails with
    /// [`KubernetesError::NotInCluster`] outside Kubernetes.
    pub fn from_environment(node_name: &str) -> Result<PodDirectory, KubernetesError> {
        PodDirectory::with_config(in_cluster_config()?, node_name, RefreshPolicy::default())
    }

    /// The directory of an API server at `api_url`, without credentials:
    /// `kubectl proxy` (`http://127.0.0.1:8001`) or a test server.
    pub fn with_api_url(
        api_url: &str,
        node_name: &str,
        policy: RefreshPolicy,
    ) -> Result<PodDirectory, KubernetesError> {
        let uri = api_url.parse().map_err(|source| KubernetesError::InvalidUrl { url: api_url.to_owned(), source })?;
        PodDirectory::with_config(kube::Config::new(uri), node_name, policy)
    }

    /// The directory of any kube configuration, such as one read from a
    /// kubeconfig file with [`kube::Config::from_kubeconfig`].
    pub fn with_config(
        config: kube::Config,
        node_name: &str,
        policy: RefreshPolicy,
    ) -> Result<PodDirectory, KubernetesError> {
        if node_name.is_empty() {
            return Err(KubernetesError::NoNodeName);
        }
        // rustls needs one crypto provider for the process; if another crate
        // already chose one, that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| KubernetesError::Thread { source })?;
        // The client spawns its connection task on the current runtime.
        let client = {
            let _entered = runtime.enter();
            Client::try_from(config).map_err(|source| KubernetesError::Client { source })?
        };
        let pods: Api<Pod> = Api::all(client.clone());
        // resourceVersion=0: the API server may answer from its cache, which
        // is far cheaper than a read from etcd for every node's agent.
        let params = ListParams::default().fields(&format!("spec.nodeName={node_name}")).match_any();
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = oneshot::channel();
        let refresher = refresh::Refresher {
            client,
            pods,
            params,
            policy,
            node: node_name.to_owned(),
            shared: shared.clone(),
            jobs: jobs::JobOwners::default(),
        };
        let thread = std::thread::Builder::new()
            .name("k8s-pods".to_owned())
            .spawn(move || {
                runtime.block_on(refresher.run(stopped));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|source| KubernetesError::Thread { source })?;
        Ok(PodDirectory { shared, node_name: node_name.to_owned(), stop: Some(stop), thread: Some(thread) })
    }

    /// The pod of `container`, from the last list; never waits. `None` when
    /// the container is not in it, which asks for a new list.
    pub fn lookup(&self, container: &Container) -> Option<ContainerPod> {
        let mut state = self.shared.lock();
        let (pod, complete) = match state.index.find(container) {
            Found::Container(pod) => (Some(pod), true),
            Found::Pod(pod) => {
                let named = !pod.container_name.is_empty();
                (Some(pod), named)
            }
            Found::Nothing => (None, false),
        };
        // A container seen for the first time may be newer than the list.
        if !complete && state.ask(&container.id) {
            drop(state);
            self.shared.wake.notify_one();
        }
        pod
    }

    /// Waits up to `timeout` for the first list to come back, and says how
    /// many pods it had, or why it failed. For the agent's start-up, so that
    /// the first lookups find the pods that already run.
    pub fn wait_for_list(&self, timeout: Duration) -> Result<usize, KubernetesError> {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .listed
            .wait_timeout_while(state, timeout, |state| state.lists_finished == 0)
            .unwrap_or_else(PoisonError::into_inner);
        if state.listed_since > 0 {
            return Ok(state.index.pods());
        }
        match &state.last_error {
            Some(reason) => Err(KubernetesError::List { node: self.node_name.clone(), reason: reason.clone() }),
            None => Err(KubernetesError::NotListedYet { node: self.node_name.clone(), waited: timeout }),
        }
    }

    /// The requests to the API server that failed so far (each logged
    /// when its reason changes).
    pub fn failures(&self) -> ApiFailures {
        let state = self.shared.lock();
        ApiFailures { pod_lists: state.lists_failed, job_reads: state.job_reads_failed }
    }

    /// The node whose pods the directory lists.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }
}

impl Drop for PodDirectory {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The kube configuration of a pod's service account, or why there is none.
pub fn in_cluster_config() -> Result<kube::Config, KubernetesError> {
    check_environment(std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(), Path::new(TOKEN_FILE).exists())?;
    kube::Config::incluster().map_err(|source| KubernetesError::InClusterConfig { source })
}

/// Whether the environment is a pod's, with the one-line reason when not.
fn check_environment(service_host: bool, token: bool) -> Result<(), KubernetesError> {
    match (service_host, token) {
        (false, _) => Err(KubernetesError::NotInCluster { reason: "KUBERNETES_SERVICE_HOST is not set" }),
        (true, false) => Err(KubernetesError::NoToken { path: TOKEN_FILE }),
        (true, true) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_lists_back_off_up_to_the_interval() {
        let policy = RefreshPolicy::default();
        let seconds = |failures| policy.next_periodic(failures).as_secs();
        assert_eq!([0, 1, 2, 3, 4, 5, 40].map(seconds), [60, 5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn environment_reasons_are_one_line() {
        let outside = check_environment(false, false).unwrap_err();
        assert!(matches!(outside, KubernetesError::NotInCluster { .. }));
        assert_eq!(outside.to_string(), "not running in Kubernetes: KUBERNETES_SERVICE_HOST is not set");
        let tokenless = check_environment(true, false).unwrap_err();
        assert_eq!(
            tokenless.to_string(),
            "no service account token at /var/run/secrets/kubernetes.io/serviceaccount/token: \
             the agent's pod needs automountServiceAccountToken"
        );
        assert!(check_environment(true, true).is_ok());
    }

    #[test]
    fn a_node_name_is_required() {
        let error = PodDirectory::with_api_url("http://127.0.0.1:1", "", RefreshPolicy::default()).unwrap_err();
        assert!(matches!(error, KubernetesError::NoNodeName));
        let error = PodDirectory::with_api_url("not a url", "node-a", RefreshPolicy::default()).unwrap_err();
        assert!(matches!(error, KubernetesError::InvalidUrl { .. }), "{error:?}");
    }
}
