//! The nightly toolchain and its components: aya-build compiles the kernel
//! programs with `rustup run nightly cargo build --target bpfel-unknown-none
//! -Z build-std=core`, and build-std needs the standard library's source.

use std::process::Command;

use anyhow::Context as _;

use super::step::{Plan, Step};
use crate::cmd;

/// The channel aya-build's `Toolchain::default()` uses. Any recent nightly
/// works (bpf-linker follows its LLVM, see bpf_linker.rs); pin a date here
/// and in agent/build.rs only if a nightly breaks the build.
pub const NIGHTLY: &str = "nightly";

/// rust-src for `-Z build-std=core`; clippy for `cargo xtask test`, which
/// lints the kernel crate for its own target.
const COMPONENTS: &[&str] = &["rust-src", "clippy"];

pub const NIGHTLY_STEP: Step = Step { name: "nightly", plan, by_hand };

fn plan() -> anyhow::Result<Plan> {
    let with = COMPONENTS.join(" and ");
    let Some(version) = nightly_version() else {
        return Ok(Plan::Do(
            format!("installing the {NIGHTLY} toolchain (minimal profile) with {with}"),
            Box::new(|| install(true, COMPONENTS.to_vec())),
        ));
    };
    let installed = installed_components();
    let missing: Vec<&str> = COMPONENTS.iter().copied().filter(|c| !is_listed(c, &installed)).collect();
    if missing.is_empty() {
        return Ok(Plan::Done(format!("{version} with {with}")));
    }
    Ok(Plan::Do(format!("adding {} to {version}", missing.join(" and ")), Box::new(|| install(false, missing))))
}

/// `rustc --version` of the installed nightly, or `None` when there is none.
fn nightly_version() -> Option<String> {
    let version = cmd::probe(rustup_check().args(["run", NIGHTLY, "rustc", "--version"]))?;
    Some(version.trim().to_owned())
}

/// The nightly's installed components, as rustup lists them
/// (`rust-src`, `clippy-x86_64-unknown-linux-gnu`, ...).
fn installed_components() -> Vec<String> {
    let list = cmd::probe(rustup_check().args(["component", "list", "--installed", "--toolchain", NIGHTLY]));
    list.unwrap_or_default().lines().map(|line| line.trim().to_owned()).collect()
}

/// Whether `component` is in rustup's list, with or without its host suffix.
fn is_listed(component: &str, installed: &[String]) -> bool {
    installed.iter().any(|line| line == component || line.starts_with(&format!("{component}-")))
}

fn install(toolchain_too: bool, components: Vec<&str>) -> anyhow::Result<()> {
    if toolchain_too {
        // No self-update: setup must not replace the machine's rustup.
        cmd::run(rustup().args(["toolchain", "install", NIGHTLY, "--profile", "minimal", "--no-self-update"]))
            .context("installing the nightly toolchain")?;
    }
    cmd::run(rustup().args(["component", "add", "--toolchain", NIGHTLY]).args(&components))
        .with_context(|| format!("adding {}", components.join(", ")))
}

fn rustup() -> Command {
    Command::new("rustup")
}

/// `rustup` for looking only: a missing toolchain must not get installed.
fn rustup_check() -> Command {
    let mut rustup = rustup();
    rustup.env("RUSTUP_AUTO_INSTALL", "0");
    rustup
}

fn by_hand() -> String {
    format!(
        "  rustup toolchain install {NIGHTLY} --profile minimal\n  rustup component add {} --toolchain {NIGHTLY}",
        COMPONENTS.join(" ")
    )
}

/// The static (musl) build that goes into the container image (Dockerfile;
/// integration-tests/tests/deploy.rs builds it), on the default toolchain.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

pub const MUSL_STEP: Step = Step { name: "musl target", plan: musl_plan, by_hand: musl_by_hand };

fn musl_plan() -> anyhow::Result<Plan> {
    let installed = cmd::probe(rustup_check().args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == MUSL_TARGET) {
        return Ok(Plan::Done(format!("{MUSL_TARGET} installed")));
    }
    Ok(Plan::Do(
        format!("adding the {MUSL_TARGET} target (the container image's static build)"),
        Box::new(|| cmd::run(rustup().args(["target", "add", MUSL_TARGET])).context("adding the musl target")),
    ))
}

fn musl_by_hand() -> String {
    format!("  rustup target add {MUSL_TARGET}")
}
