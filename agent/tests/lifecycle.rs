//! The agent's life on a node: killed with SIGKILL it leaves no attached
//! program and nothing pinned, and a new agent counts from scratch; told
//! SIGTERM, a recording ends early and still reports; it keeps only the
//! capabilities it uses, and its memory out of transparent huge pages.
//! Root only.

#[path = "support/probes_attached.rs"]
mod probes_attached;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use probes_attached::wait_for_probes;
use serde_json::Value;

const BLOCKS: u64 = 25_000;

/// Starts `batchwatch record` for a minute and returns once its probes are
/// attached (the rest of its stderr is drained by a thread).
fn start_recording() -> Child {
    let mut agent = Command::new(env!("CARGO_BIN_EXE_batchwatch"))
        .args(["record", "--duration", "60s", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start batchwatch");
    let (attached, stderr) = wait_for_probes(agent.stderr.take().expect("stderr"));
    assert!(attached, "the agent never said its probes were attached: {}", stderr.join().unwrap_or_default());
    agent
}

/// Runs dd writing `BLOCKS` blocks of 512 bytes to /dev/null; returns its pid.
fn run_dd() -> u32 {
    let dd = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=512", &format!("count={BLOCKS}"), "status=none"])
        .spawn()
        .expect("dd");
    let pid = dd.id();
    assert!(dd.wait_with_output().expect("dd").status.success());
    pid
}

/// Ids of the BPF programs `pid` holds, from its descriptors' fdinfo.
fn programs_of(pid: u32) -> Vec<u32> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("the agent's fdinfo");
    fds.filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|id| id.trim().parse().ok()))
        .collect()
}

/// Whether the kernel still has program `id`.
fn program_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (apt-get install bpftool)")
        .status
        .success()
}

fn stop_with(agent: &Child, signal: i32) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(agent.id() as i32, signal) }, 0);
}

#[test]
fn sigkill_leaves_nothing_behind_and_a_restart_counts_afresh() {
    let mut first = start_recording();
    let programs = programs_of(first.id());
    assert!(programs.len() >= 16, "programs held while it runs: {programs:?}");
    assert!(programs.iter().all(|&id| program_exists(id)));
    stop_with(&first, libc::SIGKILL);
    first.wait().expect("killed");
    // The kernel frees a program once its last descriptor and link are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = programs.iter().filter(|&&id| program_exists(id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "programs of the killed agent remain: {left:?}");
        thread::sleep(Duration::from_millis(100));
    }
    let pinned = Path::new("/sys/fs/bpf").read_dir().map(|d| d.count()).unwrap_or(0);
    assert_eq!(pinned, 0, "nothing pinned under /sys/fs/bpf");

    let second = start_recording();
    let dd = run_dd();
    stop_with(&second, libc::SIGTERM);
    let output = second.wait_with_output().expect("the second agent ends");
    assert!(output.status.success(), "SIGTERM ends a recording cleanly");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a report after SIGTERM");
    let dd = report["processes"].as_array().unwrap().iter().find(|p| p["pid"] == dd).expect("dd in the report");
    assert_eq!(dd["write"]["calls"], BLOCKS, "counted from scratch by the new agent");
    assert!(report["window"]["duration_s"].as_f64().unwrap() < 30.0, "ended early, not after a minute");
}

/// Capability numbers (linux/capability.h) of what the agent keeps once its
/// probes are attached: src/privileges.rs says why each.
const KEPT: [u32; 5] = [
    1,  // CAP_DAC_OVERRIDE
    2,  // CAP_DAC_READ_SEARCH
    19, // CAP_SYS_PTRACE
    21, // CAP_SYS_ADMIN (the buffer-depth sampler's setns)
    39, // CAP_BPF
];
const CAP_PERFMON: u32 = 38;

#[test]
fn once_attached_the_agent_keeps_only_the_capabilities_it_still_uses() {
    let own = capability_mask(&std::fs::read_to_string("/proc/self/status").unwrap(), "CapPrm:");
    assert_ne!(own & 1 << CAP_PERFMON, 0, "this test runs as root, with CAP_PERFMON");
    let wanted = KEPT.iter().fold(0, |mask, cap| mask | 1 << cap) & own;
    let agent = start_recording();
    // Every thread of it, permitted and effective: capabilities are per thread.
    let sets = || {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", agent.id())).expect("the agent's threads");
        let mut sets: Vec<(u64, u64)> = tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
            .map(|status| (capability_mask(&status, "CapPrm:"), capability_mask(&status, "CapEff:")))
            .collect();
        sets.dedup();
        sets
    };
    // It drops them right after it says its probes are attached.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sets() != [(wanted, wanted)] && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sets(), [(wanted, wanted)], "CapPrm and CapEff of every thread (root has {own:#x})");

    // And it still counts exactly: the maps are read with what is left.
    let dd = run_dd();
    stop_with(&agent, libc::SIGTERM);
    let output = agent.wait_with_output().expect("the agent ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a report");
    let dd = report["processes"].as_array().unwrap().iter().find(|p| p["pid"] == dd).expect("dd in the report");
    assert_eq!(dd["write"]["calls"], BLOCKS);
}

/// A huge page comes back zeroed whole each time the allocator reuses a
/// range it returned (docs/performance.md), so the agent opts out.
#[test]
fn the_agent_keeps_its_memory_out_of_transparent_huge_pages() {
    let thp_enabled = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a status");
        status.lines().find_map(|line| line.strip_prefix("THP_enabled:")).map(|v| v.trim().to_owned())
    };
    assert_eq!(thp_enabled("self").as_deref(), Some("1"), "this test's own process may use them");
    let agent = start_recording();
    let agent_setting = thp_enabled(&agent.id().to_string());
    stop_with(&agent, libc::SIGTERM);
    assert!(agent.wait_with_output().expect("the agent ends").status.success());
    assert_eq!(agent_setting.as_deref(), Some("0"));
}

/// The capability mask on the line starting with `field` of a /proc status text.
fn capability_mask(status: &str, field: &str) -> u64 {
    let hex = status.lines().find_map(|line| line.strip_prefix(field)).expect("a capability line");
    u64::from_str_radix(hex.trim(), 16).expect("a hex mask")
}

/// In a pid namespace of its own (as in a pod without `hostPID: true`), the
/// agent refuses to start and says how to fix it, rather than count itself
/// under another pid and read the wrong `/proc`.
#[test]
fn refuses_to_start_outside_the_host_pid_namespace() {
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", env!("CARGO_BIN_EXE_batchwatch")])
        .args(["record", "--duration", "1s", "--format", "json"])
        .output()
        .expect("unshare (apt-get install util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(out.stdout.is_empty(), "it reported: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("not the host's (pid:[4026531836])"), "{stderr}");
    assert!(stderr.contains("`hostPID: true`") && stderr.contains("`--pid=host`"), "{stderr}");
}
