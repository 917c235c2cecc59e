//! The Debian packages that running and testing batchwatch use.

use std::process::Command;

use anyhow::{Context as _, bail};

use super::step::{Plan, Step, is_root};
use crate::cmd;

/// Every Debian package the project needs at run and test time, with why.
/// Add a line here when a test starts using a new tool.
pub const PACKAGES: &[(&str, &str)] = &[
    ("bpftrace", "second opinion on what the probes count"),
    ("bpftool", "`cargo xtask bench` reads the BPF maps' and programs' names, sizes and run times"),
    ("strace", "integration tests cross-check syscall counts with `strace -c`"),
    ("fio", "io_uring and buffered-write workloads"),
    ("sqlite3", "a real program syncing per transaction: autocommit against one transaction (durability tests)"),
    ("tmux", "tests drive the live view in a real terminal (send-keys, capture-pane)"),
    ("prometheus", "promtool checks the exporter's text; tests scrape it with the server"),
    ("curl", "tests fetch the exporter's /metrics"),
    ("openssl", "tests make a certificate for the Prometheus endpoint's TLS"),
    ("iproute2", "`ip netns` for socket tests, `ss` to look at sockets"),
    ("procps", "`ps`, `pgrep` for finding workload processes"),
    ("mount", "`mount -t tracefs` (setup's tracefs step)"),
    ("util-linux", "`unshare` for tests in other network namespaces"),
    ("debianutils", "`which`, used by the tests to find tools"),
    ("buildah", "the deploy tests build the container image (no daemon, no registry)"),
    ("redis-server", "a real request/response server: round-trip bound, not un-batched (verdicts tests)"),
    ("redis-tools", "redis-benchmark and redis-cli drive and probe that server one request at a time"),
    ("nodejs", "the runtimes test: a Node.js writer, unbuffered and corked"),
    ("default-jdk-headless", "the runtimes test: a Java writer run as `java Writer.java` (needs jdk.compiler)"),
    ("python3", "the runtimes test: a Python writer, unbuffered and buffered"),
    ("golang-go", "the runtimes test: a Go writer, unbuffered and through bufio.Writer"),
    ("gcc-multilib", "`gcc -m32` builds the 32-bit workload whose compat syscalls the raw-tracepoint mode must skip"),
    ("musl-tools", "musl's gcc wrapper: C in dependencies (ring, mimalloc) built against musl for the image's binary"),
];

pub const STEP: Step = Step { name: "apt packages", plan, by_hand };

fn plan() -> anyhow::Result<Plan> {
    let missing: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).filter(|name| !installed(name)).collect();
    if missing.is_empty() {
        return Ok(Plan::Done(format!("all {} installed", PACKAGES.len())));
    }
    let what = format!("installing {}", missing.join(", "));
    Ok(Plan::Do(what, Box::new(move || install(&missing))))
}

/// Whether dpkg says `package` is installed (not just known or half-removed).
fn installed(package: &str) -> bool {
    cmd::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn install(packages: &[&str]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("installing packages needs root, and this is not root");
    }
    for (name, why) in PACKAGES.iter().filter(|(name, _)| packages.contains(name)) {
        eprintln!("    {name}: {why}");
    }
    cmd::run(apt_get().arg("update")).context("refreshing the package lists")?;
    cmd::run(apt_get().args(["install", "-y", "--no-install-recommends"]).args(packages))
        .context("installing the packages")?;
    let still_missing: Vec<&str> = packages.iter().copied().filter(|name| !installed(name)).collect();
    if !still_missing.is_empty() {
        bail!("apt-get finished but dpkg does not list {} as installed", still_missing.join(", "));
    }
    Ok(())
}

/// `apt-get` that never asks a question and waits for another apt to finish.
fn apt_get() -> Command {
    let mut apt = Command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive").args(["-q", "-o", "DPkg::Lock::Timeout=300"]);
    apt
}

fn by_hand() -> String {
    let names: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).collect();
    format!(
        "  sudo apt-get update\n  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        names.join(" ")
    )
}
