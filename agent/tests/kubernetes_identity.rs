//! Kubernetes identity: from a pod list in the API's own format, served to
//! the agent over HTTP in the test. A small HTTP server on 127.0.0.1 plays
//! the API server: it answers `GET /api/v1/pods` with a `PodList` and
//! `GET /apis/batch/v1/namespaces/<ns>/jobs/<name>` with a `Job` as the
//! real API writes them, and records every request. The containers looked up
//! come from cgroup paths, as the agent gets them.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use batchwatch::{
    attribution::container::Container,
    kubernetes::{ApiFailures, ContainerPod, KubernetesError, PodDirectory, RefreshPolicy, Workload, WorkloadKind},
};
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const NODE: &str = "node-a";

/// A container id: 64 hex digits.
fn id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A pod uid.
fn uid(n: u8) -> String {
    format!("{n:08x}-1111-4222-8333-{n:012x}")
}

/// A container of pod `pod` as its containerd cgroup path (systemd driver) names it.
fn containerd(container: &str, pod: &str) -> Container {
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{container}.scope",
        pod.replace('-', "_")
    );
    Container::from_cgroup_path(&path).expect("a containerd cgroup path")
}

/// A container as dockershim's cgroupfs path names it.
fn docker(container: &str, pod: &str) -> Container {
    Container::from_cgroup_path(&format!("/kubepods/besteffort/pod{pod}/{container}")).expect("a docker cgroup path")
}

/// A container as cri-o's cgroup path names it.
fn crio(container: &str, pod: &str) -> Container {
    let path = format!("/kubepods.slice/kubepods-pod{}.slice/crio-{container}.scope", pod.replace('-', "_"));
    Container::from_cgroup_path(&path).expect("a cri-o cgroup path")
}

/// One pod of the list, in the API's JSON. `containers` are (name, containerID).
fn pod(
    name: &str,
    namespace: &str,
    uid: &str,
    labels: Value,
    owner: Option<(&str, &str)>,
    containers: &[(&str, &str)],
) -> Value {
    let owner_references: Vec<Value> = owner
        .map(|(kind, owner)| {
            json!({
                "apiVersion": if kind == "Job" { "batch/v1" } else { "apps/v1" },
                "kind": kind,
                "name": owner,
                "uid": owner_uid(owner),
                "controller": true,
                "blockOwnerDeletion": true
            })
        })
        .into_iter()
        .collect();
    let specs: Vec<Value> = containers
        .iter()
        .map(|(name, _)| json!({"name": name, "image": format!("registry.example/{name}:1.0"), "resources": {}}))
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, container_id)| {
            json!({
                "name": name,
                "state": {"running": {"startedAt": "2026-05-04T10:00:02Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": format!("registry.example/{name}:1.0"),
                "imageID": format!("registry.example/{name}@sha256:{}", "ab".repeat(32)),
                "containerID": container_id,
                "started": true
            })
        })
        .collect();
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "48151",
            "creationTimestamp": "2026-05-04T10:00:00Z",
            "labels": labels,
            "ownerReferences": owner_references
        },
        "spec": {
            "nodeName": NODE,
            "containers": specs,
            "restartPolicy": "Always",
            "serviceAccountName": "default"
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.0.2.10",
            "podIP": "198.51.100.7",
            "startTime": "2026-05-04T10:00:00Z",
            "containerStatuses": statuses
        }
    })
}

/// The uid of the workload named `name`.
fn owner_uid(name: &str) -> String {
    let digits: String = name.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("9d5b0c61-3f44-4f6e-9a4b-{:0>12.12}", digits)
}

/// A Job in the API's JSON, owned by the CronJob `cronjob` if there is one.
fn job(namespace: &str, name: &str, cronjob: Option<&str>) -> Value {
    let owner_references: Vec<Value> = cronjob
        .map(|cronjob| {
            json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": cronjob,
                "uid": owner_uid(cronjob),
                "controller": true,
                "blockOwnerDeletion": true
            })
        })
        .into_iter()
        .collect();
    json!({
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": owner_uid(name),
            "resourceVersion": "48160",
            "creationTimestamp": "2026-05-04T10:00:00Z",
            "ownerReferences": owner_references
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "template": {"spec": {"containers": [{"name": "job", "image": "registry.example/job:1.0"}], "restartPolicy": "Never"}}
        },
        "status": {"active": 1, "startTime": "2026-05-04T10:00:00Z"}
    })
}

/// What the API answers when the service account may not read a Job.
fn job_forbidden(namespace: &str, name: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("jobs.batch \"{name}\" is forbidden: User \"system:serviceaccount:batchwatch:batchwatch\" cannot get resource \"jobs\" in API group \"batch\" in the namespace \"{namespace}\""),
        "reason": "Forbidden",
        "details": {"name": name, "group": "batch", "kind": "jobs"},
        "code": 403
    })
}

fn job_path(namespace: &str, name: &str) -> String {
    format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48200"}, "items": items})
}

/// What the fake API server answers, and what it was asked.
struct ApiState {
    status: u16,
    body: Value,
    /// The answers to reads of single objects (Jobs), by path.
    objects: HashMap<String, (u16, Value)>,
    requests: Vec<(Instant, String)>,
}

/// The fake API server, on its own runtime; it stops when dropped.
struct FakeApi {
    address: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeApi {
    fn start(status: u16, body: Value) -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ApiState { status, body, objects: HashMap::new(), requests: Vec::new() }));
        let served = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, &request)) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FakeApi { address, state, _runtime: runtime }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn serve(&self, body: Value) {
        self.state.lock().unwrap().body = body;
    }

    /// Answers reads of these objects, all from the same moment on.
    fn serve_objects(&self, objects: impl IntoIterator<Item = (String, u16, Value)>) {
        let mut state = self.state.lock().unwrap();
        state.objects.extend(objects.into_iter().map(|(path, status, body)| (path, (status, body))));
    }

    fn requests(&self) -> Vec<(Instant, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The lists of pods asked for.
    fn lists(&self) -> Vec<(Instant, String)> {
        self.requests().into_iter().filter(|(_, uri)| uri.starts_with("/api/v1/pods")).collect()
    }

    /// The Jobs read, by path.
    fn job_reads(&self) -> Vec<String> {
        self.requests().into_iter().map(|(_, uri)| uri).filter(|uri| uri.starts_with("/apis/batch/")).collect()
    }
}

fn answer(state: &Mutex<ApiState>, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    state.requests.push((Instant::now(), request.uri().to_string()));
    let path = request.uri().path();
    let object = state.objects.get(path).cloned();
    let (status, body) = match (request.method() == hyper::Method::GET, path == "/api/v1/pods", object) {
        (true, true, _) => (state.status, state.body.to_string()),
        (true, false, Some((status, body))) => (status, body.to_string()),
        _ => (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}).to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Asserts that every list of pods was of this node's, and no others.
fn assert_node_filtered(requests: &[(Instant, String)]) {
    for (_, uri) in requests {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        assert_eq!(path, "/api/v1/pods", "{uri}");
        let selectors: Vec<&str> = query.split('&').filter(|pair| pair.starts_with("fieldSelector=")).collect();
        assert_eq!(selectors, [format!("fieldSelector=spec.nodeName%3D{NODE}")], "{uri}");
    }
}

fn quick_policy() -> RefreshPolicy {
    RefreshPolicy {
        interval: Duration::from_secs(3600),
        min_gap: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
    }
}

fn expected(namespace: &str, pod_name: &str, pod_uid: &str, container_name: &str, service_name: &str) -> ContainerPod {
    ContainerPod {
        namespace: namespace.to_owned(),
        pod_name: pod_name.to_owned(),
        pod_uid: pod_uid.to_owned(),
        container_name: container_name.to_owned(),
        service_name: service_name.to_owned(),
        workload: None,
        cronjob: None,
    }
}

/// `pod`, owned by the workload `kind` named `name`.
fn owned(pod: ContainerPod, kind: WorkloadKind, name: &str) -> ContainerPod {
    ContainerPod { workload: Some(Workload { kind, name: name.to_owned() }), ..pod }
}

/// Polls `lookup` until it finds the container, for up to 10 s.
fn eventually(directory: &PodDirectory, container: &Container) -> Option<ContainerPod> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pod) = directory.lookup(container) {
            return Some(pod);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kubernetes_identity_from_the_nodes_pod_list() {
    let items = vec![
        // A Deployment's pod (containerd): service = the Deployment's name.
        pod(
            "web-frontend-5d8f7c9b4-x2x9k",
            "shop",
            &uid(1),
            json!({"pod-template-hash": "5d8f7c9b4", "tier": "web"}),
            Some(("ReplicaSet", "web-frontend-5d8f7c9b4")),
            &[("web", &format!("containerd://{}", id(1)))],
        ),
        // A DaemonSet's pod on a docker node.
        pod(
            "log-shipper-7xk2p",
            "observability",
            &uid(2),
            json!({"controller-revision-hash": "6b9f8d7c5d", "pod-template-generation": "3"}),
            Some(("DaemonSet", "log-shipper")),
            &[("shipper", &format!("docker://{}", id(2)))],
        ),
        // The recommended label wins over `app` and the owner (cri-o).
        pod(
            "checkout-6c9d4b7f8-q8w2e",
            "shop",
            &uid(3),
            json!({"app.kubernetes.io/name": "checkout", "app": "checkout-legacy", "pod-template-hash": "6c9d4b7f8"}),
            Some(("ReplicaSet", "checkout-6c9d4b7f8")),
            &[("checkout", &format!("cri-o://{}", id(3)))],
        ),
        // Only `app`, and no owner.
        pod(
            "orders-api",
            "shop",
            &uid(4),
            json!({"app": "orders"}),
            None,
            &[("api", &format!("containerd://{}", id(4)))],
        ),
        // A StatefulSet's pod with two containers.
        pod(
            "postgres-0",
            "data",
            &uid(5),
            json!({"statefulset.kubernetes.io/pod-name": "postgres-0"}),
            Some(("StatefulSet", "postgres")),
            &[("postgres", &format!("containerd://{}", id(5))), ("metrics", &format!("containerd://{}", id(6)))],
        ),
        // A bare pod without labels.
        pod("debug-shell", "default", &uid(7), json!({}), None, &[("shell", &format!("containerd://{}", id(7)))]),
    ];
    let api = FakeApi::start(200, pod_list(items));
    let directory = PodDirectory::with_api_url(&api.url(), NODE, quick_policy()).expect("directory");
    assert_eq!(directory.wait_for_list(Duration::from_secs(10)).expect("first list"), 6);

    let web = directory.lookup(&containerd(&id(1), &uid(1)));
    assert_eq!(
        web,
        Some(owned(
            expected("shop", "web-frontend-5d8f7c9b4-x2x9k", &uid(1), "web", "web-frontend"),
            WorkloadKind::Deployment,
            "web-frontend",
        ))
    );
    let shipper = directory.lookup(&docker(&id(2), &uid(2)));
    assert_eq!(
        shipper,
        Some(owned(
            expected("observability", "log-shipper-7xk2p", &uid(2), "shipper", "log-shipper"),
            WorkloadKind::DaemonSet,
            "log-shipper",
        ))
    );
    let checkout = directory.lookup(&crio(&id(3), &uid(3)));
    assert_eq!(
        checkout,
        Some(owned(
            expected("shop", "checkout-6c9d4b7f8-q8w2e", &uid(3), "checkout", "checkout"),
            WorkloadKind::Deployment,
            "checkout",
        ))
    );
    let orders = directory.lookup(&containerd(&id(4), &uid(4)));
    assert_eq!(orders, Some(expected("shop", "orders-api", &uid(4), "api", "orders")));
    let metrics = directory.lookup(&containerd(&id(6), &uid(5)));
    assert_eq!(
        metrics,
        Some(owned(
            expected("data", "postgres-0", &uid(5), "metrics", "postgres"),
            WorkloadKind::StatefulSet,
            "postgres"
        ))
    );
    let shell = directory.lookup(&containerd(&id(7), &uid(7)));
    assert_eq!(shell, Some(expected("default", "debug-shell", &uid(7), "shell", "debug-shell")));

    // Matched on the id alone, whatever the cgroup says of the pod.
    let no_pod_uid = Container { id: id(5), runtime: "containerd", pod_uid: None };
    assert_eq!(
        directory.lookup(&no_pod_uid),
        Some(owned(
            expected("data", "postgres-0", &uid(5), "postgres", "postgres"),
            WorkloadKind::StatefulSet,
            "postgres"
        ))
    );

    // An id not in the statuses yet (a container just started): found by its
    // pod uid; the pod has two containers, so the container name is empty.
    let starting = directory.lookup(&containerd(&id(8), &uid(5)));
    assert_eq!(
        starting,
        Some(owned(expected("data", "postgres-0", &uid(5), "", "postgres"), WorkloadKind::StatefulSet, "postgres"))
    );

    // Misses: an unknown id in an unknown pod; a container outside any pod.
    assert_eq!(directory.lookup(&containerd(&id(9), &uid(9))), None);
    assert_eq!(directory.lookup(&Container { id: id(10), runtime: "docker", pod_uid: None }), None);

    drop(directory);
    let requests = api.lists();
    assert!(!requests.is_empty());
    assert_node_filtered(&requests);
    let cached = requests.iter().all(|(_, uri)| uri.contains("resourceVersion=0"));
    assert!(cached, "lists may come from the API server's cache: {requests:?}");
}

#[test]
fn kubernetes_miss_lists_again_at_most_once_per_gap() {
    let first =
        pod("web-1", "shop", &uid(1), json!({"app": "web"}), None, &[("web", &format!("containerd://{}", id(1)))]);
    let api = FakeApi::start(200, pod_list(vec![first.clone()]));
    let policy = quick_policy();
    let directory = PodDirectory::with_api_url(&api.url(), NODE, policy).expect("directory");
    assert_eq!(directory.wait_for_list(Duration::from_secs(10)).expect("first list"), 1);
    assert_eq!(api.lists().len(), 1);

    // Two pods start; the agent sees their processes before any new list.
    let second =
        pod("web-2", "shop", &uid(2), json!({"app": "web"}), None, &[("web", &format!("containerd://{}", id(2)))]);
    let third = pod(
        "worker-1",
        "jobs",
        &uid(3),
        json!({}),
        Some(("Job", "reindex-29160")),
        &[("worker", &format!("docker://{}", id(3)))],
    );
    api.serve(pod_list(vec![first, second, third]));
    let web_2 = containerd(&id(2), &uid(2));
    let worker = docker(&id(3), &uid(3));
    assert_eq!(directory.lookup(&web_2), None, "not listed yet");
    assert_eq!(directory.lookup(&worker), None, "not listed yet");
    for _ in 0..50 {
        directory.lookup(&web_2);
        directory.lookup(&worker);
    }
    assert_eq!(eventually(&directory, &web_2), Some(expected("shop", "web-2", &uid(2), "web", "web")));
    assert_eq!(
        directory.lookup(&worker),
        Some(owned(
            expected("jobs", "worker-1", &uid(3), "worker", "reindex-29160"),
            WorkloadKind::Job,
            "reindex-29160"
        ))
    );
    let requests = api.lists();
    assert_eq!(requests.len(), 2, "many misses, one list: {requests:?}");
    let gap = requests[1].0 - requests[0].0;
    assert!(gap >= policy.min_gap - Duration::from_millis(100), "lists {gap:?} apart");

    // A container no list will ever have (outside Kubernetes) asks once...
    let foreign = Container { id: id(20), runtime: "docker", pod_uid: None };
    assert_eq!(directory.lookup(&foreign), None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.lists().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let requests = api.lists();
    assert_eq!(requests.len(), 3, "the miss asked for a list");
    let gap = requests[2].0 - requests[1].0;
    assert!(gap >= policy.min_gap - Duration::from_millis(100), "lists {gap:?} apart");
    // ...and then no more until the next periodic list.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..20 {
        assert_eq!(directory.lookup(&foreign), None);
        std::thread::sleep(policy.min_gap / 10);
    }
    assert_eq!(api.lists().len(), 3, "an unknown container does not make the agent list every gap");
    assert_node_filtered(&api.lists());
}

#[test]
fn kubernetes_refused_list_says_why() {
    let forbidden = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "pods is forbidden: User \"system:serviceaccount:monitoring:batchwatch\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
        "reason": "Forbidden",
        "details": {"kind": "pods"},
        "code": 403
    });
    let api = FakeApi::start(403, forbidden);
    let directory = PodDirectory::with_api_url(&api.url(), NODE, quick_policy()).expect("directory");
    let error = directory.wait_for_list(Duration::from_secs(10)).expect_err("a 403");
    assert!(matches!(error, KubernetesError::List { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("listing the pods of node node-a: "), "{message}");
    assert!(message.contains("cannot list resource \"pods\""), "{message}");
    assert_eq!(directory.lookup(&containerd(&id(1), &uid(1))), None);
    assert_eq!(directory.failures(), ApiFailures { pod_lists: 1, job_reads: 0 }, "counted");
}

#[test]
fn outside_kubernetes_there_is_no_directory() {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        println!("skipped: this test runs in a Kubernetes pod");
        return;
    }
    let error = PodDirectory::from_environment(NODE).expect_err("not in a cluster");
    assert!(matches!(error, KubernetesError::NotInCluster { .. }), "{error:?}");
    assert_eq!(error.to_string(), "not running in Kubernetes: KUBERNETES_SERVICE_HOST is not set");
}

#[test]
fn kubernetes_directory_is_shared_across_threads() {
    // The exporter's pod lookups must be `Send + Sync`.
    fn shareable<T: Send + Sync>() {}
    shareable::<PodDirectory>();
}

/// The CronJob of a pod's Job comes from the Job, read once; a Job that
/// cannot be read leaves it out, counts, and is read again at the next list.
#[test]
fn kubernetes_cronjob_from_the_pods_job() {
    let backup = pod(
        "backup-29416320-7xk2p",
        "ops",
        &uid(1),
        json!({"batch.kubernetes.io/job-name": "backup-29416320"}),
        Some(("Job", "backup-29416320")),
        &[("backup", &format!("containerd://{}", id(1)))],
    );
    let reindex = pod(
        "reindex-by-hand-q2w3e",
        "ops",
        &uid(2),
        json!({}),
        Some(("Job", "reindex-by-hand")),
        &[("reindex", &format!("containerd://{}", id(2)))],
    );
    let api = FakeApi::start(200, pod_list(vec![backup, reindex]));
    // The service account may not read Jobs yet.
    let refused =
        ["backup-29416320", "reindex-by-hand"].map(|name| (job_path("ops", name), 403, job_forbidden("ops", name)));
    api.serve_objects(refused);
    let policy = RefreshPolicy { interval: Duration::from_millis(700), ..quick_policy() };
    let directory = PodDirectory::with_api_url(&api.url(), NODE, policy).expect("directory");
    assert_eq!(directory.wait_for_list(Duration::from_secs(10)).expect("first list"), 2);

    let backup_pod = expected("ops", "backup-29416320-7xk2p", &uid(1), "backup", "backup-29416320");
    let backup_pod = owned(backup_pod, WorkloadKind::Job, "backup-29416320");
    let reindex_pod = expected("ops", "reindex-by-hand-q2w3e", &uid(2), "reindex", "reindex-by-hand");
    let reindex_pod = owned(reindex_pod, WorkloadKind::Job, "reindex-by-hand");
    let backup_container = containerd(&id(1), &uid(1));
    let reindex_container = containerd(&id(2), &uid(2));
    assert_eq!(directory.lookup(&backup_container), Some(backup_pod.clone()), "no k8s.cronjob.name, the rest stays");
    assert_eq!(directory.lookup(&reindex_container), Some(reindex_pod.clone()));
    let failures = directory.failures();
    assert_eq!(failures, ApiFailures { pod_lists: 0, job_reads: 2 }, "one refused, the other put off");
    assert_eq!(api.job_reads().len(), 1, "no read after the first refusal in a list");

    // The rule is added: the next periodic list reads both Jobs.
    api.serve_objects([
        (job_path("ops", "backup-29416320"), 200, job("ops", "backup-29416320", Some("backup"))),
        (job_path("ops", "reindex-by-hand"), 200, job("ops", "reindex-by-hand", None)),
    ]);
    let with_cronjob = ContainerPod { cronjob: Some("backup".to_owned()), ..backup_pod };
    let deadline = Instant::now() + Duration::from_secs(10);
    while directory.lookup(&backup_container).as_ref() != Some(&with_cronjob) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(directory.lookup(&backup_container), Some(with_cronjob));
    assert_eq!(directory.lookup(&reindex_container), Some(reindex_pod), "a Job made by hand has no CronJob");

    // Later lists read no Job again.
    let reads_then = api.job_reads();
    let lists_then = api.lists().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.lists().len() < lists_then + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(directory);
    assert!(api.lists().len() >= lists_then + 2, "two more lists: {:?}", api.requests());
    let reads = api.job_reads();
    assert_eq!(reads, reads_then, "each Job read once it could be");
    let allowed: Vec<&String> = reads.iter().skip(1).collect();
    assert_eq!(allowed, [&job_path("ops", "backup-29416320"), &job_path("ops", "reindex-by-hand")]);
    assert_node_filtered(&api.lists());
}
