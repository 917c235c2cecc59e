//! The alert rules (alerts/batchwatch-rules.yaml): promtool checks them and
//! runs their unit tests (alerts/tests/), every alert is tested both firing
//! and quiet, the PrometheusRule holds the same groups, and each alert names
//! its subject and links a runbook section of docs/runbooks.md that exists.
//! The live side (the rules on a real agent's data) is in dashboards.rs.

#[path = "support/prometheus_server.rs"]
#[expect(dead_code, reason = "the queries serve the live test in dashboards.rs; here only the loaded rules")]
mod prometheus_server;
#[path = "support/promql.rs"]
mod promql;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use self::{
    prometheus_server::PrometheusServer,
    promql::{Catalog, repo_root},
};

/// Set to rewrite the PrometheusRule from the rules file.
const BLESS: &str = "BATCHWATCH_BLESS";

fn alerts_dir() -> PathBuf {
    repo_root().join("alerts")
}

fn rules_file() -> PathBuf {
    alerts_dir().join("batchwatch-rules.yaml")
}

fn tests_file() -> PathBuf {
    alerts_dir().join("tests/batchwatch-rules.test.yaml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs promtool; panics with its output unless it succeeds. Returns stdout.
fn promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (apt-get install prometheus; `cargo xtask setup` does)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {}:\n{stdout}\n{stderr}", args.join(" "));
    stdout
}

/// The alert names in the rules file, in order.
fn alert_names() -> Vec<String> {
    read(&rules_file()).lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).map(str::to_owned).collect()
}

#[test]
fn promtool_checks_the_rules() {
    let stdout = promtool(&["check", "rules", "batchwatch-rules.yaml"], &alerts_dir());
    let alerts = alert_names().len();
    assert!(stdout.contains(&format!("SUCCESS: {alerts} rules found")), "{stdout}");
    assert!(alerts >= 7, "{alerts} alerts");
}

#[test]
fn promtool_unit_tests_pass_and_test_every_alert_firing_and_quiet() {
    let stdout = promtool(&["test", "rules", "batchwatch-rules.test.yaml"], &alerts_dir().join("tests"));
    assert!(stdout.contains("SUCCESS"), "{stdout}");

    // For each alert: cases expecting it, and cases expecting silence.
    let tests = read(&tests_file());
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut cases: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            let case = cases.entry(name).or_default();
            match lines.get(i + 1) {
                Some(&"exp_alerts: []") => case.1 += 1,
                Some(&"exp_alerts:") => case.0 += 1,
                other => panic!("alertname {name} is followed by {other:?}, not exp_alerts"),
            }
        }
    }
    for name in alert_names() {
        let (firing, quiet) = cases.get(name.as_str()).copied().unwrap_or_default();
        assert!(firing > 0, "no unit test expects {name} to fire");
        assert!(quiet > 0, "no unit test expects {name} to stay quiet");
    }
}

#[test]
fn the_prometheus_rule_holds_the_same_rules() {
    let rules = read(&rules_file());
    let groups = &rules[rules.find("\ngroups:\n").expect("a groups: key") + 1..];
    let path = alerts_dir().join("batchwatch-prometheusrule.yaml");
    let current = read(&path);
    let header = &current[..current.find("\nspec:\n").expect("a spec: key") + "\nspec:\n".len()];
    let expected: String = std::iter::once(header.to_owned())
        .chain(groups.lines().map(|line| if line.is_empty() { "\n".to_owned() } else { format!("  {line}\n") }))
        .collect();
    if current != expected {
        if std::env::var_os(BLESS).is_some() {
            std::fs::write(&path, &expected).unwrap();
            eprintln!("rewrote {}", path.display());
        } else {
            panic!(
                "{} differs from the rules file: run {BLESS}=1 cargo test -p batchwatch --test alerts",
                path.display()
            );
        }
    }
    assert!(header.contains("kind: PrometheusRule") && header.contains("apiVersion: monitoring.coreos.com/v1"));
}

/// The rules as Prometheus itself parses them: its /api/v1/rules.
fn loaded_rules() -> Vec<Value> {
    let addr =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let config = "global:\n  evaluation_interval: 1m\nrule_files: [rules.yaml]\n";
    let rules = rules_file();
    let prometheus = PrometheusServer::start("rules", &addr, config, &[("rules.yaml", &rules)], &[]);
    let data = prometheus.api("/api/v1/rules").unwrap();
    data["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

/// GitHub's anchors for the headings of a Markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("## ").or_else(|| line.strip_prefix("### ")))
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_names_its_subject_and_links_its_runbook() {
    let catalog = Catalog::from_docs();
    let runbooks = read(&repo_root().join("docs/runbooks.md"));
    let sections = anchors(&runbooks);
    let rules = loaded_rules();
    assert_eq!(rules.len(), alert_names().len(), "Prometheus loaded another number of rules");
    let mut problems = Vec::new();
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        let mut problem = |what: String| problems.push(format!("{name}: {what}"));
        if rule["type"] != "alerting" {
            problem("not an alerting rule".into());
        }
        if !["critical", "warning", "info"].contains(&rule["labels"]["severity"].as_str().unwrap_or_default()) {
            problem(format!("severity {}", rule["labels"]["severity"]));
        }
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            if annotations[key].as_str().is_none_or(str::is_empty) {
                problem(format!("no {key}"));
            }
        }
        match annotations["runbook_url"].as_str().unwrap_or_default().split_once('#') {
            Some(("docs/runbooks.md", anchor)) if sections.contains(anchor) => {}
            _ => problem(format!("runbook_url {} is no section of docs/runbooks.md", annotations["runbook_url"])),
        }
        let query = rule["query"].as_str().unwrap();
        let names = promql::names(query);
        // kube-state-metrics' DaemonSet series, for an agent that never started.
        let outside = |metric: &str| metric == "up" || metric.starts_with("kube_daemonset_status_");
        for metric in names.metrics.iter().filter(|m| !outside(m)) {
            if let Err(why) = catalog.check_metric(metric) {
                problem(why);
            }
        }
        for label in names.labels.iter().filter(|l| !["namespace", "daemonset"].contains(&l.as_str())) {
            if let Err(why) = catalog.check_label(label) {
                problem(why);
            }
        }
        // A batching alert is about an executable of a service, not a pid or
        // pod, so that it holds while the pods restart: its summary names both.
        if names.metrics.iter().any(|m| {
            m.starts_with("batchwatch_write_")
                || m.starts_with("batchwatch_process_")
                || m.starts_with("batchwatch_io_uring_")
        }) {
            let summary = annotations["summary"].as_str().unwrap_or_default();
            for label in ["service_name", "process_executable_name"] {
                if !summary.contains(&format!("$labels.{label}")) || !query.contains(label) {
                    problem(format!("its summary or grouping lacks {label}"));
                }
            }
            for label in ["process_pid", "k8s_pod_name", "instance"] {
                if query.contains(label) {
                    problem(format!("its grouping has {label}, which changes when the pods restart"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The runbooks start from the diagnosis order, in that order.
    let order = runbooks.find("## Diagnosis order").expect("a Diagnosis order section");
    let section = &runbooks[order..];
    let section = section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)].to_lowercase();
    let mut last = 0;
    for step in ["drop", "depth", "wait time", "slow", "backpressure", "window"] {
        let at = section[last..]
            .find(step)
            .unwrap_or_else(|| panic!("the diagnosis order lacks `{step}` after the steps before it"));
        last += at;
    }
}
