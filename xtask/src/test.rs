//! `cargo xtask test [-- ARGS]`: set up, then every check CI runs: formatting,
//! clippy with warnings as errors, and the tests (unit tests and the root-only
//! eBPF integration tests). Every check runs even when an earlier one failed,
//! so one run shows all that is wrong; the task fails if any did.
//!
//! The kernel crate is `no_std` + `no_main` for the BPF target: built for the
//! host it cannot link (and its test harness clashes with its panic handler),
//! so the host checks leave it out and clippy checks it for its own target,
//! the way aya-build compiles it.

use std::process::Command;

use anyhow::bail;

use crate::{cmd, setup, setup::toolchain::NIGHTLY, workspace_root};

/// The workspace member that holds the kernel programs.
const KERNEL_CRATE: &str = "agent-ebpf";

pub fn run(test_args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    let mut failed = Vec::new();

    if cmd::probe(&mut cargo(&["fmt", "--version"])).is_some() {
        check(&mut failed, "cargo fmt", cargo(&["fmt", "--all", "--check"]))?;
    } else {
        eprintln!("test: rustfmt is missing, skipping the format check (`rustup component add rustfmt` adds it)");
    }
    check(
        &mut failed,
        "clippy (host crates)",
        cargo(&["clippy", "--workspace", "--exclude", KERNEL_CRATE, "--all-targets", "--", "-D", "warnings"]),
    )?;
    check(&mut failed, "clippy (kernel programs)", kernel_clippy())?;
    // --no-fail-fast: a failing test binary must not hide the results of the others.
    let mut test = cargo(&["test", "--workspace", "--exclude", KERNEL_CRATE, "--no-fail-fast"]);
    test.args(test_args);
    check(&mut failed, "cargo test", test)?;

    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    eprintln!("test: fmt, clippy and tests all passed");
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(workspace_root()).args(args);
    cargo
}

/// Clippy on the kernel crate for `bpfel-unknown-none`, with the nightly and
/// the `bpf_target_arch` cfg that aya-build uses.
fn kernel_clippy() -> Command {
    let mut clippy = Command::new("rustup");
    clippy
        .current_dir(workspace_root())
        .env("RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH))
        .args(["run", NIGHTLY, "cargo", "clippy", "--package", KERNEL_CRATE])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--", "-D", "warnings"]);
    clippy
}

/// Runs one check, noting its name in `failed` when it fails.
fn check(failed: &mut Vec<&'static str>, name: &'static str, mut command: Command) -> anyhow::Result<()> {
    eprintln!("test: {name}");
    if !cmd::run_status(&mut command)? {
        eprintln!("test: {name} FAILED");
        failed.push(name);
    }
    Ok(())
}
