//! The write-family probes against known workloads: every count exact.
//!
//! Root only: each test loads the real probes, runs the `workload` helper,
//! and compares what the agent saw for that pid and fd with what the helper
//! did.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, SystemTime},
};

use agent_common::{
    hist::log2_slot,
    write::{MAX_BYTES_PER_CALL, Outcome, WriteStats, WriteSyscall},
};
use batchwatch::{
    config::Config,
    export::{
        attributes::AttrValue,
        catalog::{self, Metric},
        series::{Collection, Limits, Observation, Point, SeriesSet, Value},
    },
};
use common::{Observed, WORKLOAD, observe, observe_while_ticking, start_agent_with};

/// The statistics of the fd the pattern wrote to.
fn pattern_fd(observed: &Observed) -> WriteStats {
    let process = observed.process();
    process.fds.get(&observed.report.fd).unwrap_or_else(|| panic!("no fd {} in {process:#?}", observed.report.fd)).total
}

fn assert_all_in_slot(hist: &[u64], value: u64, calls: u64) {
    let mut expected = vec![0; hist.len()];
    expected[log2_slot(value, hist.len())] = calls;
    assert_eq!(hist, expected, "all {calls} calls in the bucket of {value}");
}

#[test]
fn n_writes_of_b_bytes() {
    let observed = observe(&["write", "--count", "100000", "--size", "100"]);
    let fd = pattern_fd(&observed);
    assert_eq!(fd.calls[WriteSyscall::Write as usize], 100_000);
    assert_eq!(fd.total_calls(), 100_000);
    assert_eq!(fd.bytes_requested, 10_000_000);
    assert_eq!(fd.bytes_written, 10_000_000);
    assert_eq!(fd.records, 100_000);
    assert_eq!(fd.outcomes[Outcome::Complete as usize], 100_000);
    assert_all_in_slot(&fd.bytes_hist, 100, 100_000);
    assert_all_in_slot(&fd.records_hist, 1, 100_000);
    // One gap per call after the first.
    assert_eq!(fd.gap_hist.iter().sum::<u64>(), 99_999);
}

#[test]
fn writev_with_k_iovecs() {
    let observed = observe(&["writev", "--count", "20000", "--iovecs", "16", "--size", "256"]);
    let fd = pattern_fd(&observed);
    assert_eq!(fd.calls[WriteSyscall::Writev as usize], 20_000);
    assert_eq!(fd.records, 20_000 * 16);
    assert_eq!(fd.bytes_requested, 20_000 * 16 * 256);
    assert_eq!(fd.bytes_written, observed.report.bytes_written);
    assert_all_in_slot(&fd.records_hist, 16, 20_000);
    assert_all_in_slot(&fd.bytes_hist, 16 * 256, 20_000);
}

#[test]
fn writev_with_iovec_counts_that_are_not_chunk_multiples() {
    // The probe reads iovecs 8 at a time, then one by one: 1, 7, 9 and 1024
    // (IOV_MAX) cover every path.
    for iovecs in [1, 7, 9, 1024] {
        let observed = observe(&["writev", "--count", "500", "--iovecs", &iovecs.to_string(), "--size", "3"]);
        let fd = pattern_fd(&observed);
        assert_eq!(fd.records, 500 * iovecs, "{iovecs} iovecs");
        assert_eq!(fd.bytes_requested, 500 * iovecs * 3, "{iovecs} iovecs");
        assert_eq!(fd.outcomes[Outcome::Complete as usize], 500, "{iovecs} iovecs");
    }
}

#[test]
fn sendmmsg_with_m_messages() {
    let observed = observe(&["sendmmsg", "--count", "2000", "--messages", "32", "--size", "200"]);
    let fd = pattern_fd(&observed);
    assert_eq!(fd.calls[WriteSyscall::Sendmmsg as usize], 2000);
    assert_eq!(fd.records, 2000 * 32);
    assert_eq!(fd.bytes_written, 2000 * 32 * 200);
    assert_eq!(fd.outcomes[Outcome::Complete as usize], 2000);
    assert_all_in_slot(&fd.records_hist, 32, 2000);
    assert_all_in_slot(&fd.bytes_hist, 32 * 200, 2000);
}

#[test]
fn timer_driven_flushing_every_20ms() {
    let observed = observe(&["timer", "--period", "20ms", "--flushes", "60"]);
    let process = observed.process();
    let fd = &process.fds[&observed.report.fd];
    assert_eq!(fd.total.total_calls(), 60);
    // 20 ms lies in the log2 bucket (2^24, 2^25] ns. The ticker keeps
    // absolute deadlines, so on a loaded machine a late flush makes its gap
    // long and the next one short: every gap is in that bucket or a
    // neighbour, most in it, and their exact sum gives the period.
    let gaps = fd.total.gap_hist;
    let slot = log2_slot(20_000_000, gaps.len());
    assert_eq!(gaps[slot - 1..=slot + 1].iter().sum::<u64>(), 59, "gaps: {gaps:?}");
    assert!(gaps[slot] >= 40, "gaps: {gaps:?}");
    let mean_ns = fd.total.gap_ns_total / 59;
    assert!((19_000_000..=22_000_000).contains(&mean_ns), "mean gap {mean_ns} ns");
    let timer = fd.timer.expect("timer flushing detected");
    assert!(timer.period_min_ns <= 20_000_000 && 20_000_000 <= timer.period_max_ns, "{timer:?}");
    assert!(timer.median_bytes < timer.largest_bytes, "{timer:?}");
}

#[test]
fn eagain_counted_exactly() {
    let observed = observe(&["eagain", "--eagain", "250"]);
    let fd = pattern_fd(&observed);
    let report = &observed.report;
    assert_eq!(fd.total_calls(), report.calls);
    assert_eq!(fd.outcomes[Outcome::WouldBlock as usize], 250);
    assert_eq!(fd.outcomes[Outcome::Short as usize], report.short);
    assert_eq!(fd.outcomes[Outcome::Complete as usize], report.calls - report.short - 250);
    assert_eq!(fd.bytes_written, report.bytes_written);
}

#[test]
fn short_writes_counted_exactly() {
    let observed = observe(&["short", "--count", "77"]);
    let fd = pattern_fd(&observed);
    assert_eq!(fd.total_calls(), 77);
    assert_eq!(fd.outcomes[Outcome::Short as usize], 77);
    assert_eq!(fd.bytes_written, observed.report.bytes_written);
    assert!(fd.bytes_requested > fd.bytes_written);
}

#[test]
fn epipe_counted_exactly() {
    let observed = observe(&["epipe", "--count", "123"]);
    let fd = pattern_fd(&observed);
    assert_eq!(fd.total_calls(), 123);
    assert_eq!(fd.outcomes[Outcome::BrokenPipe as usize], 123);
    assert_eq!(fd.bytes_written, 0);
}

#[test]
fn threads_on_every_cpu_writing_to_one_fd_at_once_add_up_exactly() {
    use integration_tests::threads::{IOVEC_BYTES, WRITE_BYTES, WRITEV_IOVECS};
    // 8 threads, half of them on each CPU of a 2-core machine, all released at once.
    let (threads, count) = (8, 25_000);
    let observed = observe(&["threads", "--threads", &threads.to_string(), "--count", &count.to_string()]);
    let fd = pattern_fd(&observed);
    // One write before the threads start, then half the threads write, half writev.
    let writes = 1 + threads / 2 * count;
    let writevs = threads / 2 * count;
    let writev_bytes = (WRITEV_IOVECS * IOVEC_BYTES) as u64;
    assert_eq!(fd.calls[WriteSyscall::Write as usize], writes);
    assert_eq!(fd.calls[WriteSyscall::Writev as usize], writevs);
    assert_eq!(fd.total_calls(), observed.report.calls);
    assert_eq!(fd.outcomes[Outcome::Complete as usize], writes + writevs);
    assert_eq!(fd.bytes_requested, writes * WRITE_BYTES as u64 + writevs * writev_bytes);
    assert_eq!(fd.bytes_written, observed.report.bytes_written);
    assert_eq!(fd.bytes_written, fd.bytes_requested);
    assert_eq!(fd.records, writes + writevs * WRITEV_IOVECS as u64);
    let mut bytes_hist = [0; agent_common::write::BYTES_SLOTS];
    bytes_hist[log2_slot(WRITE_BYTES as u64, bytes_hist.len())] += writes;
    bytes_hist[log2_slot(writev_bytes, bytes_hist.len())] += writevs;
    assert_eq!(fd.bytes_hist, bytes_hist);
    let mut records_hist = [0; agent_common::write::RECORDS_SLOTS];
    records_hist[log2_slot(1, records_hist.len())] += writes;
    records_hist[log2_slot(WRITEV_IOVECS as u64, records_hist.len())] += writevs;
    assert_eq!(fd.records_hist, records_hist);
    // Every call after the first has a gap, however the threads interleave.
    assert_eq!(fd.gap_hist.iter().sum::<u64>(), writes + writevs - 1);
}

#[test]
fn hot_one_byte_writer_is_flagged_and_batched_writer_is_not() {
    // Same call rate; one record of 1 byte against 16 iovecs of 4 KiB.
    let hot = ["write", "--count", "30000", "--size", "1", "--rate", "5000"];
    let batched = ["writev", "--count", "30000", "--iovecs", "16", "--size", "4096", "--rate", "5000"];
    let [hot, batched] = observe_while_ticking([&hot[..], &batched[..]]);

    let hot_process = hot.process();
    assert!(hot_process.ever_unbatched, "{hot_process:#?}");
    let reason = hot_process.last_reasons.join("\n");
    assert!(reason.contains(&format!("fd {}", hot.report.fd)) && reason.contains("writes/s"), "{reason}");

    let batched_process = batched.process();
    assert!(!batched_process.ever_unbatched, "{:?}", batched_process.last_reasons);
    assert_eq!(batched_process.fds[&batched.report.fd].total.records, 30_000 * 16);
}

#[test]
fn counts_agree_with_strace() {
    let strace = common::require_tool("strace", "strace");
    let log = std::env::temp_dir().join(format!("bw-strace-{}", std::process::id()));
    let observed = common::observe_command(
        std::process::Command::new(strace)
            .args(["-f", "-c", "-e", "trace=write,writev", "-o"])
            .arg(&log)
            .arg(common::WORKLOAD)
            .args(["write", "--count", "20000", "--size", "10"]),
    );
    let summary = std::fs::read_to_string(&log).expect("strace summary");
    std::fs::remove_file(&log).ok();
    let strace_writes = common::strace_calls(&summary, "write");
    let agent_writes = observed.process().total().calls[WriteSyscall::Write as usize];
    // The pattern's writes plus the report line on stdout.
    assert_eq!(strace_writes, 20_001, "{summary}");
    assert_eq!(agent_writes, strace_writes, "{summary}");
}

/// Sum of `metric`'s points of process `pid` in `snapshot`.
fn exported(snapshot: &Collection, metric: &Metric, pid: u32) -> u64 {
    let of_pid =
        |point: &&Point| point.attributes().any(|(k, v)| *k == "process.pid" && *v == AttrValue::Int(pid.into()));
    let family = snapshot.families.iter().find(|(m, _)| m.name == metric.name);
    family.map_or(0, |(_, points)| {
        points
            .iter()
            .filter(of_pid)
            .map(|point| match point.value {
                Value::Int(n) => n,
                ref other => panic!("{} is not an integer counter: {other:?}", metric.name),
            })
            .sum()
    })
}

#[test]
fn arguments_no_kernel_accepts_leave_counts_exact_and_exported_counters_monotonic() {
    const COUNT: u64 = 1000;
    let config = Config::default();
    let mut agent = start_agent_with(&config);
    let mut series = SeriesSet::new(Limits::of(&config.export), SystemTime::now());
    let mut child = Command::new(WORKLOAD)
        .args(["bad-args", "--count", &COUNT.to_string(), "--pause", "1500ms"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the workload starts");
    let pid = child.id();
    let mut readings: Vec<[u64; 4]> = Vec::new();
    let mut collect = |agent: &mut batchwatch::agent::Agent| {
        agent.tick().expect("reading the maps");
        let snapshot = series.collect(&Observation::of(agent, 16384), None, None, SystemTime::now());
        let metrics =
            [&catalog::WRITE_CALLS, &catalog::WRITE_IO, &catalog::WRITE_RECORDS, &catalog::WRITE_FAILED_REQUESTED];
        readings.push(metrics.map(|metric| exported(&snapshot, metric, pid)));
    };
    while child.try_wait().expect("wait").is_none() {
        thread::sleep(Duration::from_millis(300));
        collect(&mut agent);
    }
    collect(&mut agent);
    let output = child.wait_with_output().expect("the workload runs");
    assert!(output.status.success(), "workload failed: {output:?}");
    let report: integration_tests::WorkloadReport =
        serde_json::from_slice(output.stdout.trim_ascii_end()).expect("the workload's report");

    // The file: every good byte exactly, the refused requests apart, clamped.
    let process = agent.model().process(pid).expect("the agent saw the workload");
    let file = process.fds[&report.fd].total;
    assert_eq!(file.total_calls(), report.calls);
    assert_eq!(file.outcomes[Outcome::OtherError as usize], 3);
    assert_eq!((file.bytes_written, file.bytes_requested), (report.bytes_written, report.bytes_written));
    assert_eq!(file.records, 2 * COUNT);
    assert_all_in_slot(&file.bytes_hist, 100, 2 * COUNT);
    // write(NULL, SIZE_MAX) and the two SSIZE_MAX/2 iovecs are cut to
    // MAX_RW_COUNT; the 2^20 iovecs to 1024 of 100 bytes.
    assert_eq!(file.failed_bytes_requested, 2 * MAX_BYTES_PER_CALL + 1024 * 100);
    assert_eq!(file.failed_records, 1 + 1024 + 2);
    // The socket: 1024 messages sent, records = messages sent.
    let sent = &report.children[0];
    let socket = process.fds[&sent.fd].total;
    assert_eq!(socket.calls[WriteSyscall::Sendmmsg as usize], 1);
    assert_eq!((socket.records, socket.bytes_written), (1024, sent.bytes_written));
    assert_eq!(socket.outcomes[Outcome::Complete as usize], 1);
    // Three clamped counts on the file, one vlen on the socket, at least
    // (the agent's counter is node-wide).
    assert!(agent.probe_errors().args_clamped >= 4, "{:?}", agent.probe_errors());

    // Exported counters never went down, and end at the process's totals
    // (the file, the socket, and the report the workload printed).
    for pair in readings.windows(2) {
        assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| a <= b), "a counter went down: {readings:?}");
    }
    let total = process.total();
    // The file's calls, the sendmmsg, and the one write of the report line.
    assert_eq!(total.total_calls(), report.calls + 1 + 1);
    let last = readings.last().expect("collected");
    assert_eq!(*last, [total.total_calls(), total.bytes_written, total.records, total.failed_bytes_requested]);
    assert_eq!(total.failed_bytes_requested, file.failed_bytes_requested);
}
