//! Every way of hooking syscall exits counts the same, and `auto` falls back
//! by itself where the kernel refuses fexit (as these machines do). Root only.

mod common;

use agent_common::{sync::SyncCall, write::WriteSyscall};
use batchwatch::{
    bpf::probes::AttachMode,
    config::{AttachPreference, Config},
};
use common::{observe_with, start_agent_with};

fn config(attach: AttachPreference) -> Config {
    Config { attach, ..Config::default() }
}

#[test]
fn every_attach_mode_counts_exactly() {
    for attach in [AttachPreference::Tracepoint, AttachPreference::RawTracepoint] {
        let observed = observe_with(&config(attach), &["writev", "--count", "3000", "--iovecs", "4", "--size", "10"]);
        let fd = &observed.process().fds[&observed.report.fd].total;
        assert_eq!(fd.calls[WriteSyscall::Writev as usize], 3000, "{attach:?}");
        assert_eq!(fd.records, 12_000, "{attach:?}");
        assert_eq!(fd.bytes_written, 120_000, "{attach:?}");
        let uring = observe_with(&config(attach), &["uring-batch", "--rounds", "100", "--batch", "8"]);
        let ring = &uring.process().io_uring.as_ref().expect("io_uring seen").rings[0];
        assert_eq!((ring.total_enters.enters, ring.total_ops.sqes), (100, 800), "{attach:?}");
        // Syncs are timed from their entry, hooked as the mode hooks entries.
        let synced = observe_with(&config(attach), &["sync-every", "--count", "100", "--every", "1"]);
        let syncs = &synced.process().syncs[&synced.report.fd].total;
        assert_eq!((syncs.calls[SyncCall::Fsync as usize], syncs.timed, syncs.writes), (100, 100, 100), "{attach:?}");
    }
}

#[test]
fn auto_uses_fexit_or_says_why_not() {
    let agent = start_agent_with(&config(AttachPreference::Auto));
    let node = agent.node();
    match node.attach_mode.expect("probes, not the degraded mode") {
        AttachMode::Fexit => assert!(node.attached.iter().any(|p| p == "fexit:__x64_sys_write")),
        AttachMode::Tracepoint => {
            let why = node.attach_fallback.as_deref().expect("a reason for not using fexit");
            // The first syscall function the object lists (its sections are
            // sorted by name: the syncs' fentry programs come first), refused
            // like all of them here.
            assert!(why.starts_with("fexit refused (fentry __x64_sys_fdatasync:"), "{why}");
            assert!(node.attached.iter().any(|p| p == "syscalls:sys_exit_write"));
        }
        AttachMode::RawTracepoint => panic!("auto never picks the raw tracepoint"),
    }
}

/// Builds the 32-bit workload with Debian's multilib compiler into `dir`,
/// or says why it cannot.
fn build_compat_writer(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/c/compat_writer.c");
    let binary = dir.join("compat_writer");
    let built = std::process::Command::new("gcc")
        .args(["-m32", "-O1", "-o"])
        .arg(&binary)
        .arg(source)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "gcc -m32 failed (apt-get install gcc-multilib): {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(binary)
}

#[test]
fn raw_tracepoints_skip_32_bit_syscalls_and_count_them() {
    const COUNT: u64 = 2000;
    let dir = std::env::temp_dir().join(format!("batchwatch-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = match build_compat_writer(&dir) {
        Ok(binary) => binary,
        Err(reason) => {
            eprintln!("skipped: cannot build a 32-bit workload here: {reason}");
            return;
        }
    };
    let mut agent = start_agent_with(&config(AttachPreference::RawTracepoint));
    let before = agent.probe_errors().compat_skipped;
    let out = std::process::Command::new(&binary).arg(COUNT.to_string()).output().expect("the 32-bit workload runs");
    assert!(out.status.success(), "{out:?}");
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("its pid");
    agent.tick().expect("reading the maps");
    // Its getpid()s (writev's number in the 64-bit table) and write()s are
    // not taken for 64-bit calls: nothing of it is counted as a write.
    let seen = agent.model().process(pid).map(|p| p.total());
    assert!(seen.is_none_or(|total| total.total_calls() == 0), "32-bit calls counted as writes: {seen:?}");
    // Its COUNT writes and the write of its pid line were skipped, and
    // counted (the counter is node-wide: other 32-bit writers may add to it).
    let skipped = agent.probe_errors().compat_skipped - before;
    assert!(skipped > COUNT, "{skipped} 32-bit writes counted as skipped");
    let _ = std::fs::remove_dir_all(&dir);
}
