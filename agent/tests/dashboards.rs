//! The Grafana dashboards (`dashboards/*.json`) and the alert rules
//! (`alerts/batchwatch-rules.yaml`) against a live agent.
//!
//! `batchwatch run` watches a workload process whose threads exercise
//! every batching metric (support/demo_workload.rs), and exports over OTLP
//! to a receiver too slow for it, so that its own export path queues and
//! drops. Two real Prometheus servers scrape it every second:
//!
//! - `plain`, as a bare Prometheus: no `cluster` label, and no Kubernetes
//!   labels (the agent runs outside Kubernetes here). Every dashboard
//!   variable is then at All (`.*`), as Grafana has it when a label is absent.
//! - `labelled`, whose scrape adds `cluster="test-cluster"` (as
//!   docs/dashboards.md tells deployments to) and gives the workload's
//!   series the Kubernetes labels the agent adds in a pod (namespace,
//!   service, pod), by metric relabelling. Each variable's own query picks
//!   the workload's value.
//!
//! Every query of every panel of every dashboard then has to return data
//! on both (and, but for the few panels whose healthy value is zero, a
//! non-zero value), and the alert rules loaded into both have to be
//! pending or firing for what the workload does. Root only: the agent
//! loads its probes.

#[path = "support/demo_workload.rs"]
mod demo_workload;
#[path = "support/prometheus_server.rs"]
mod prometheus_server;
#[path = "support/promql.rs"]
mod promql;
#[path = "support/slow_otlp_sink.rs"]
mod slow_otlp_sink;
#[expect(dead_code, reason = "the dd workload of the export tests is not used here")]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use self::{
    demo_workload::Demo,
    prometheus_server::{PrometheusServer, Sample},
    promql::{Catalog, repo_root},
    slow_otlp_sink::SlowSink,
};

/// The dashboards, by file name.
const DASHBOARDS: [&str; 3] = ["batchwatch-fleet.json", "batchwatch-service.json", "batchwatch-agent.json"];

/// Panels whose healthy value is zero: for them data is enough (the demo
/// workload makes no request/response).
const ZERO_IS_HEALTHY: [(&str, &str); 2] =
    [("batchwatch-agent", "Degraded mode"), ("batchwatch-service", "Round-trip bound processes")];

/// What Grafana puts for its own variables, with a 1 s scrape interval.
const BUILTINS: [(&str, &str); 5] = [
    ("__rate_interval", "15s"),
    ("__interval", "1s"),
    ("__interval_ms", "1000"),
    ("__range", "5m"),
    ("__range_s", "300"),
];

/// The Kubernetes labels the `labelled` server gives the workload.
const NAMESPACE: &str = "batchwatch-demo";
const CLUSTER: &str = "test-cluster";

#[test]
#[ignore = "the workload process of the dashboards test: it runs only when that test starts it"]
fn demo_workload() {
    if std::env::var_os(demo_workload::ENV).is_some() {
        demo_workload::run();
    }
}

#[test]
fn every_dashboard_query_and_alert_sees_a_live_workload() {
    if let Some(why) = demo_workload::io_uring_unavailable() {
        eprintln!("skipped: the workload needs io_uring, and {why}");
        return;
    }
    let sink = SlowSink::start(Duration::from_millis(2500));
    let target = format!("127.0.0.1:{}", support::free_port());
    let endpoint = sink.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    ];
    // A queue of 2 collections, one a second, drained every 2.5 s: it fills and drops.
    // Idle pairs evicted after 10 s (the demo's `idle` thread makes them).
    let args = ["--prometheus", &target, "--queue-capacity", "2", "--evict-idle-after", "10s"];
    let mut agent = support::Agent::start(&args, &env);
    let mut demo = Demo::start("demo_workload");
    // A writer below the export's activity floor, folded into `other`, so
    // the folding panels have data whatever else runs on the machine.
    let _quiet = QuietWriter::start();
    let pid = demo.pid().to_string();
    let pod = format!("{}-{pid}", demo_workload::NAME);

    let rules = repo_root().join("alerts/batchwatch-rules.yaml");
    let plain = PrometheusServer::start(
        "plain",
        &free_addr(),
        &prometheus_config(&target, None),
        &[("rules.yaml", &rules)],
        &[],
    );
    let gone = free_addr();
    let labelled = PrometheusServer::start(
        "labelled",
        &free_addr(),
        &prometheus_config(&target, Some(&gone)),
        &[("rules.yaml", &rules)],
        &[],
    );

    // The flags (hot_writer, io_uring_unbatched, sqpoll_trickle,
    // sync_per_write) need 3 s of sustained writing; the rates want 15 s of samples.
    for prometheus in [&plain, &labelled] {
        let flags = format!("batchwatch_process_unbatched{{process_pid=\"{pid}\"}} == 1");
        prometheus.wait_until(&flags, Duration::from_secs(60), |samples| samples.len() == 4);
        let history = format!("count_over_time(batchwatch_write_calls_total{{process_pid=\"{pid}\"}}[1m]) >= 15");
        prometheus.wait_until(&history, Duration::from_secs(60), |samples| !samples.is_empty());
        prometheus.wait_until("batchwatch_export_batch_size_count > 0", Duration::from_secs(30), |s| !s.is_empty());
    }

    let mut checked = 0;
    let mut failures = Vec::new();
    for file in DASHBOARDS {
        let dashboard = load(file);
        for (server, prometheus) in [("plain", &plain), ("labelled", &labelled)] {
            let values = match server {
                "plain" => all_values(&dashboard, prometheus),
                _ => chosen_values(&dashboard, prometheus, &target, &pod),
            };
            for (panel, expr) in targets(&dashboard) {
                let promql = substitute(&expr, &values);
                checked += 1;
                let zero_ok = ZERO_IS_HEALTHY.contains(&(uid(&dashboard), panel.as_str()));
                if let Err(why) = has_data(prometheus, &promql, zero_ok) {
                    failures.push(format!("{file} / {panel} on {server}: {why}\n    {promql}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} panel queries failed:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{checked} panel queries checked ({} dashboards, 2 servers): all return data", DASHBOARDS.len());

    // The alerts, with the same data.
    let workload_alerts = [
        ("BatchwatchUnbatchedHotWriter", "pending"),
        ("BatchwatchDrops", "firing"),
        ("BatchwatchBufferNearlyFull", "pending"),
        ("BatchwatchIoUringCqOverflow", "firing"),
        ("BatchwatchIoUringSetupDenied", "firing"),
        ("BatchwatchSyncPerWrite", "pending"),
        ("BatchwatchSyncFailed", "firing"),
    ];
    for (server, prometheus) in [("plain", &plain), ("labelled", &labelled)] {
        let mut expected: Vec<(&str, &str)> = workload_alerts.to_vec();
        expected.push(("BatchwatchAgentDroppingPoints", "firing"));
        if server == "labelled" {
            expected.push(("BatchwatchAgentDown", "pending"));
        }
        let alerts = wait_for_alerts(prometheus, &expected);
        for (name, _) in workload_alerts {
            // About the workload's executable, not its pid or pod: they hold while pods restart.
            let mine: Vec<&Value> = alerts
                .iter()
                .filter(|a| {
                    a["labels"]["alertname"] == name && a["labels"]["process_executable_name"] == demo_workload::NAME
                })
                .collect();
            assert!(!mine.is_empty(), "{server}: {name} is not about the workload: {alerts:#?}");
            for alert in mine {
                let summary = alert["annotations"]["summary"].as_str().unwrap();
                assert!(summary.contains(demo_workload::NAME), "{server}: {name}: {summary}");
                if server == "labelled" {
                    assert!(summary.contains(&format!("service {}", demo_workload::NAME)), "{name}: {summary}");
                    let description = alert["annotations"]["description"].as_str().unwrap();
                    let subject = format!("(service {}, namespace {NAMESPACE})", demo_workload::NAME);
                    assert!(description.contains(&subject), "{name}: {description}");
                    assert!(alert["labels"]["process_pid"].is_null() && alert["labels"]["k8s_pod_name"].is_null());
                }
            }
        }
        let active: BTreeSet<&str> = alerts.iter().filter_map(|a| a["labels"]["alertname"].as_str()).collect();
        for quiet in ["BatchwatchAgentsAbsent", "BatchwatchAgentDegraded", "BatchwatchAgentMissingOnNode"] {
            assert!(!active.contains(quiet), "{server}: {quiet} is active: {alerts:#?}");
        }
        if server == "plain" {
            assert!(!active.contains("BatchwatchAgentDown"), "{alerts:#?}");
        }
    }

    assert!(demo.is_running(), "the workload died");
    assert!(sink.received() > 0);
    assert!(agent.is_running());
    drop(demo);
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "{stderr}");
}

/// The configuration of a Prometheus scraping `target` every second and
/// evaluating rules.yaml every second. With `gone` (an address where
/// nothing listens, as a second agent that died), the `labelled` variant.
fn prometheus_config(target: &str, gone: Option<&str>) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [rules.yaml]\n\
         scrape_configs:\n  - job_name: batchwatch\n    static_configs:\n      - targets: ['{target}'{}]\n",
        gone.map(|gone| format!(", '{gone}'")).unwrap_or_default()
    );
    if gone.is_some() {
        let name = demo_workload::NAME;
        config.push_str(&format!(
            "    relabel_configs:\n\
             \x20     - target_label: cluster\n        replacement: {CLUSTER}\n\
             \x20   metric_relabel_configs:\n\
             \x20     - source_labels: [process_executable_name]\n        regex: {name}\n        target_label: k8s_namespace_name\n        replacement: {NAMESPACE}\n\
             \x20     - source_labels: [process_executable_name]\n        regex: {name}\n        target_label: service_name\n        replacement: {name}\n\
             \x20     - source_labels: [process_executable_name, process_pid]\n        regex: '({name});(.+)'\n        target_label: k8s_pod_name\n        replacement: '${{1}}-${{2}}'\n"
        ));
    }
    config
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

fn dashboards_dir() -> PathBuf {
    repo_root().join("dashboards")
}

fn load(file: &str) -> Value {
    let path = dashboards_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

fn uid(dashboard: &Value) -> &str {
    dashboard["uid"].as_str().expect("a uid")
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// (panel title, expression) of every query of every panel.
fn targets(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"].as_array().into_iter().flatten().map(move |target| {
                (title.clone(), target["expr"].as_str().expect("every target has an expr").to_owned())
            })
        })
        .collect()
}

/// The query variables, in order: (name, label_values query).
fn query_variables(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|var| var["type"] == "query")
        .map(|var| {
            let query = var["query"]["query"].as_str().or(var["query"].as_str()).expect("a variable query");
            (var["name"].as_str().unwrap().to_owned(), query.to_owned())
        })
        .collect()
}

/// `label_values(SELECTOR, LABEL)` split in its selector and label.
fn label_values_query(query: &str) -> (&str, &str) {
    let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values(...)");
    let (selector, label) = inner.rsplit_once(',').expect("label_values(selector, label)");
    (selector.trim(), label.trim())
}

/// Every variable at All, as on a Prometheus without cluster and
/// Kubernetes labels: the cluster variable finds no value there.
fn all_values(dashboard: &Value, prometheus: &PrometheusServer) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (name, query) in query_variables(dashboard) {
        let (selector, label) = label_values_query(&query);
        let found = prometheus.label_values(label, &substitute(selector, &values));
        if name == "cluster" {
            assert!(found.is_empty(), "the plain server has no cluster label: {found:?}");
        }
        values.insert(name, ".*".to_owned());
    }
    values
}

/// The workload's value for each variable, which its query must offer.
fn chosen_values(
    dashboard: &Value,
    prometheus: &PrometheusServer,
    target: &str,
    pod: &str,
) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (name, query) in query_variables(dashboard) {
        let wanted = match name.as_str() {
            "cluster" => CLUSTER,
            "namespace" => NAMESPACE,
            "service" | "process" => demo_workload::NAME,
            "pod" => pod,
            "job" => "batchwatch",
            "instance" => target,
            other => panic!("no value chosen for variable {other}"),
        };
        let (selector, label) = label_values_query(&query);
        let found = prometheus.label_values(label, &substitute(selector, &values));
        assert!(found.iter().any(|v| v == wanted), "{}: ${name} offers {found:?}, not {wanted}", uid(dashboard));
        values.insert(name, regex_escape(wanted));
    }
    values
}

/// A value as Grafana writes it into a regex matcher.
fn regex_escape(value: &str) -> String {
    let mut escaped = String::new();
    for c in value.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push_str("\\\\");
        }
        escaped.push(c);
    }
    escaped
}

/// `expr` with Grafana's variables replaced: `$name`, `${name}`, and the builtins.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("${name}");
                (&braced[..end], end + 2)
            }
            None => {
                let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values
            .get(name)
            .map(String::as_str)
            .or_else(|| BUILTINS.iter().find(|(builtin, _)| *builtin == name).map(|(_, value)| *value))
            .unwrap_or_else(|| panic!("${name} is not a variable of this dashboard: {expr}"));
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Whether `promql` returns samples, one of them non-zero unless `zero_ok`.
fn has_data(prometheus: &PrometheusServer, promql: &str, zero_ok: bool) -> Result<(), String> {
    let samples: Vec<Sample> = prometheus.query(promql)?;
    if samples.is_empty() {
        return Err("no data".to_owned());
    }
    if !zero_ok && !samples.iter().any(|s| s.value.is_finite() && s.value != 0.0) {
        let shown: Vec<String> = samples.iter().take(5).map(|s| format!("{} {}", s.labels, s.value)).collect();
        return Err(format!("only zeros: {}", shown.join(", ")));
    }
    Ok(())
}

/// Polls the server's alerts until each of `expected` (name, state) is
/// there in that state (30 s at most); returns them all.
fn wait_for_alerts(prometheus: &PrometheusServer, expected: &[(&str, &str)]) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = prometheus.api("/api/v1/alerts").unwrap()["alerts"].as_array().unwrap().clone();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, state)| !alerts.iter().any(|a| a["labels"]["alertname"] == *name && a["state"] == *state))
            .collect();
        if missing.is_empty() {
            return alerts;
        }
        assert!(std::time::Instant::now() < deadline, "alerts missing: {missing:?}\n{alerts:#?}\n{}", prometheus.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The dashboards' structure: ids, datasource, variables, names.
#[test]
fn dashboards_are_well_formed() {
    let catalog = Catalog::from_docs();
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for file in DASHBOARDS {
        let dashboard = load(file);
        let uid = uid(&dashboard).to_owned();
        assert!(uids.insert(uid.clone()), "{file}: uid {uid} is used twice");
        let mut problem = |what: String| problems.push(format!("{file}: {what}"));
        if dashboard["schemaVersion"].as_u64() != Some(39) {
            problem("schemaVersion is not 39".into());
        }
        if dashboard["id"] != Value::Null {
            problem("a provisioned dashboard has \"id\": null".into());
        }

        // Variables: the datasource first; the others query it, and are All (.*) by default.
        let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
        let names: BTreeSet<&str> = variables.iter().filter_map(|v| v["name"].as_str()).collect();
        let datasource = &variables[0];
        if datasource["name"] != "datasource"
            || datasource["type"] != "datasource"
            || datasource["query"] != "prometheus"
        {
            problem(format!("the first variable is not the Prometheus datasource variable: {datasource}"));
        }
        for var in variables.iter().filter(|v| v["type"] == "query") {
            let name = var["name"].as_str().unwrap();
            if var["datasource"]["uid"] != "${datasource}" {
                problem(format!("variable {name} does not query ${{datasource}}"));
            }
            if var["includeAll"] != true || var["allValue"] != ".*" {
                problem(format!("variable {name} lacks All = .* (needed where its label is absent)"));
            }
            let (selector, label) = label_values_query(var["query"]["query"].as_str().unwrap_or_default());
            check_names(&catalog, &format!("{selector} {{{label}=\"\"}}"), &mut problem);
            for used in variables_in(selector) {
                if !names.contains(used.as_str()) {
                    problem(format!("variable {name} uses ${used}, which is not defined"));
                }
            }
        }
        if uid == "batchwatch-service" {
            for needed in ["cluster", "namespace", "service", "pod"] {
                if !names.contains(needed) {
                    problem(format!("no ${needed} variable"));
                }
            }
        }

        // Panels: unique ids, inside the grid without overlapping, the datasource variable everywhere.
        let mut ids = BTreeSet::new();
        let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{file}: panel {title} has no id"));
            if !ids.insert(id) {
                problem(format!("panel id {id} ({title}) is used twice"));
            }
            let grid = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos"));
            if x + w > 24 || w == 0 || h == 0 {
                problem(format!("panel {title} is outside the 24-column grid: {grid}"));
            }
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                if let Some(other) = cells.insert(cell, title.to_owned()) {
                    problem(format!("panels {other} and {title} overlap"));
                    break;
                }
            }
            if panel["type"] == "row" {
                continue;
            }
            if panel["datasource"]["uid"] != "${datasource}" {
                problem(format!("panel {title} does not use ${{datasource}}"));
            }
            if panel["description"].as_str().is_none_or(str::is_empty) {
                problem(format!("panel {title} has no description"));
            }
            let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
            if targets.is_empty() {
                problem(format!("panel {title} has no query"));
            }
            let mut refs = BTreeSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                if !refs.insert(target["refId"].as_str().unwrap_or_default()) {
                    problem(format!("panel {title}: refId used twice"));
                }
                if target["datasource"]["uid"] != "${datasource}" {
                    problem(format!("panel {title}: a query does not use ${{datasource}}"));
                }
                check_names(&catalog, expr, &mut problem);
                for used in variables_in(expr) {
                    if !names.contains(used.as_str()) && !BUILTINS.iter().any(|(b, _)| *b == used) {
                        problem(format!("panel {title} uses ${used}, which is not defined"));
                    }
                }
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                for label in legend.split("{{").skip(1).filter_map(|part| part.split_once("}}")).map(|(l, _)| l.trim())
                {
                    if let Err(why) = catalog.check_label(label) {
                        problem(format!("panel {title}: legend: {why}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // File provisioning: a provider for this directory's JSON, and a datasource example.
    let provisioning = dashboards_dir().join("provisioning");
    let providers = read(&provisioning.join("dashboards.yaml"));
    assert!(providers.contains("type: file") && providers.contains("path:"), "{providers}");
    let datasources = read(&provisioning.join("datasources.example.yaml"));
    assert!(datasources.contains("type: prometheus") && datasources.contains("timeInterval"), "{datasources}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Names of the metrics and labels in `expr` that docs/metrics.md lacks.
fn check_names(catalog: &Catalog, expr: &str, problem: &mut impl FnMut(String)) {
    let names = promql::names(expr);
    for metric in names.metrics {
        let allowed = ["up", "target_info"].contains(&metric.as_str());
        if let Err(why) = catalog.check_metric(&metric)
            && !allowed
        {
            problem(format!("{why}: {expr}"));
        }
    }
    for label in names.labels {
        let resource = ["host_name", "k8s_node_name", "service_version"].contains(&label.as_str());
        if let Err(why) = catalog.check_label(&label)
            && !resource
        {
            problem(format!("{why}: {expr}"));
        }
    }
}

/// The Grafana variables `text` uses.
fn variables_in(text: &str) -> Vec<String> {
    text.split('$')
        .skip(1)
        .map(|part| {
            let part = part.strip_prefix('{').unwrap_or(part);
            part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

/// A shell writing one line a second to /dev/null until dropped.
struct QuietWriter(std::process::Child);

impl QuietWriter {
    fn start() -> QuietWriter {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do echo quiet > /dev/null; sleep 1; done"])
            .spawn()
            .expect("start sh");
        QuietWriter(child)
    }
}

impl Drop for QuietWriter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
