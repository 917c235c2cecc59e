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
