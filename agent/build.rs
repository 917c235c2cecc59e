//! Builds the kernel programs (`agent-ebpf`) with the nightly toolchain and
//! bpf-linker, into `OUT_DIR`, where `src/bpf/probes.rs` embeds them.

use std::process::Command;

use anyhow::{Context as _, bail};

const SETUP_HINT: &str = "run `cargo xtask setup`, which installs it (see docs/setup.md)";

fn main() -> anyhow::Result<()> {
    check_toolchain()?;
    // aya-build replays the inner cargo's stderr as build warnings: keep it
    // to what matters (errors and real warnings), not a line per crate.
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let package = aya_build::Package {
        name: "agent-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        ..Default::default()
    };
    // aya-build watches agent-ebpf only; the layouts it shares live in
    // agent-common, and a stale program would refuse to load (value sizes).
    println!("cargo:rerun-if-changed={}/../agent-common/src", env!("CARGO_MANIFEST_DIR"));
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context(format!("building the kernel programs (agent-ebpf) failed; if a tool is missing, {SETUP_HINT}"))
}

/// Fails early, in one sentence, when the eBPF build cannot work.
fn check_toolchain() -> anyhow::Result<()> {
    if Command::new("bpf-linker").arg("--version").output().is_err() {
        bail!("bpf-linker is not on PATH: {SETUP_HINT}");
    }
    let sysroot = Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]).output();
    let Some(sysroot) = sysroot.ok().filter(|out| out.status.success()) else {
        bail!("the nightly Rust toolchain is missing: {SETUP_HINT}");
    };
    let core =
        std::path::Path::new(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib/rustlib/src/rust/library/core");
    if !core.is_dir() {
        bail!("the nightly toolchain has no rust-src component: {SETUP_HINT}");
    }
    Ok(())
}
