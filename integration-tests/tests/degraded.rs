//! The degraded mode: where loading BPF is refused (here by a seccomp filter
//! on bpf() for the thread that starts the agent), the agent does not die,
//! polls /proc/PID/io instead, says so, and still counts and flags writers.
//! Root only.

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use agent_common::write::WriteSyscall;
use batchwatch::{agent::Agent, config::Config, degraded::ALL_FDS};
use common::WORKLOAD;
use integration_tests::WorkloadReport;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Makes bpf() fail with EPERM for the calling thread only (no TSYNC), as a
/// hardened container's seccomp profile would for the whole agent.
fn deny_bpf_for_this_thread() {
    let rules = BTreeMap::from([(libc::SYS_bpf, vec![])]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)
            .expect("a valid filter");
    let program: BpfProgram = filter.try_into().expect("the filter compiles");
    seccompiler::apply_filter(&program).expect("seccomp filter applied");
}

/// Runs the workload with `args`, ticking `agent` every `every` until it exits.
fn run_ticking(agent: &mut Agent, every: Duration, args: &[&str]) -> WorkloadReport {
    let mut child = Command::new(WORKLOAD).args(args).stdout(Stdio::piped()).spawn().expect("workload starts");
    while child.try_wait().expect("wait").is_none() {
        thread::sleep(every);
        agent.tick().expect("polling /proc");
    }
    let output = child.wait_with_output().expect("workload output");
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).expect("workload report")
}

#[test]
fn bpf_refused_means_degraded_mode_that_still_counts_and_flags() {
    deny_bpf_for_this_thread();
    let config = Config::default();
    let mut agent = Agent::start(&config).expect("the agent degrades instead of failing");
    let degraded = agent.node().degraded.clone().expect("degraded mode");
    assert!(degraded.reason.contains("Operation not permitted"), "{degraded:?}");
    assert!(degraded.needs.contains("bpf()"), "{degraded:?}");
    // The report says what this mode cannot see, syncs among it.
    let report = serde_json::to_value(batchwatch::report::Report::build(&agent, 1.0)).expect("report");
    let cannot_see = report["node"]["degraded"]["cannot_see"].as_str().expect("node.degraded.cannot_see");
    assert!(cannot_see.contains("syncs"), "{cannot_see}");
    assert_eq!(agent.node().attach_mode, None);

    // Exact counts, for a process alive across polls.
    let report = run_ticking(
        &mut agent,
        Duration::from_millis(300),
        &["--linger", "1s", "write", "--count", "20000", "--size", "512"],
    );
    let line_bytes = serde_json::to_string(&report).unwrap().len() as u64 + 1;
    let process = agent.model().process(report.pid).expect("the writer was seen");
    let all = &process.fds[&ALL_FDS].total;
    assert_eq!(all.calls[WriteSyscall::Write as usize], 20_001, "the pattern's writes and the report line");
    assert_eq!(all.bytes_written, 20_000 * 512 + line_bytes);

    // A hot one-byte writer is flagged from averages alone.
    let report =
        run_ticking(&mut agent, config.interval, &["write", "--count", "25000", "--size", "1", "--rate", "5000"]);
    let process = agent.model().process(report.pid).expect("the hot writer was seen");
    assert!(process.ever_unbatched, "{process:#?}");
    assert!(process.last_reasons[0].starts_with("all writes (degraded mode"), "{:?}", process.last_reasons);
}
