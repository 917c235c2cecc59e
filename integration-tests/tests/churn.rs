//! Churn and faults: thousands of short-lived writers, a reused pid, a full
//! map, idle pairs evicted. Nothing is left behind, nothing is attributed to the wrong process,
//! nothing panics. Root only.

mod common;

use std::{collections::HashSet, sync::Mutex, time::Duration};

use batchwatch::config::{Config, MapLimits};
use common::{Observed, observe_while_ticking, observe_while_ticking_with};

/// The tests of this file run one at a time: the pid reuse test steers the
/// kernel's next pid, which would hand the other tests' children recycled
/// pids within one interval, a case the agent does not tell apart (see
/// docs/limits.md).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn ten_thousand_short_lived_writers_are_counted_and_leave_nothing_behind() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let [observed] = observe_while_ticking([&["forks", "--count", "10000", "--calls", "3"][..]]);
    let children = &observed.report.children;
    assert_eq!(children.len(), 10_000);
    for child in children {
        let process =
            observed.agent.model().process(child.pid).unwrap_or_else(|| panic!("child {} was never seen", child.pid));
        assert!(process.exited.is_some(), "child {} is gone", child.pid);
        assert_eq!(process.fds[&child.fd].total.total_calls(), 3, "child {}", child.pid);
    }
    let pids: HashSet<u32> = children.iter().map(|c| c.pid).collect();
    let left: Vec<_> = observed.agent.kernel_write_keys().into_iter().filter(|k| pids.contains(&k.tgid)).collect();
    assert!(left.is_empty(), "kernel entries of exited children left behind: {left:?}");
}

#[test]
fn a_reused_pid_starts_afresh() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The first child exits and is retired on a tick before the second
    // takes its pid.
    let [observed] = observe_while_ticking([&["reuse", "--first", "5", "--second", "7", "--pause", "2500ms"][..]]);
    assert_two_lives_of_one_pid(&observed, [5, 7]);
}

/// The two children of a `reuse` workload had the same pid, and the agent
/// knows them as two processes that wrote `calls` each.
fn assert_two_lives_of_one_pid(observed: &Observed, calls: [u64; 2]) {
    let [first, second] = &observed.report.children[..] else { panic!("two children") };
    assert_eq!(first.pid, second.pid);
    let model = observed.agent.model();
    let lives: Vec<_> = model.processes().filter(|p| p.identity.pid == first.pid).collect();
    assert_eq!(lives.len(), 2, "one entry per process, not one per pid: {lives:#?}");
    let seen: HashSet<u64> = lives.iter().map(|p| p.fds[&first.fd].total.total_calls()).collect();
    assert_eq!(seen, HashSet::from(calls), "{lives:#?}");
    assert_ne!(lives[0].identity.start_ticks, lives[1].identity.start_ticks);
}

#[test]
fn a_pid_reused_after_a_missed_exit_gets_its_new_identity() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // 64 processes at most in the kernel's maps: 200 writers coming and
    // going while the first child waits push it out, and its exit goes
    // unrecorded. Its pid is then handed to the second child.
    let config = Config { maps: MapLimits { max_processes: 64, ..Config::default().maps }, ..Config::default() };
    let args = ["reuse", "--first", "5", "--second", "7", "--pause", "2500ms", "--flood", "200"];
    let [observed] = observe_while_ticking_with(&config, [&args[..]]);
    assert_two_lives_of_one_pid(&observed, [5, 7]);
    assert!(observed.agent.probe_errors().exits_missed >= 1, "{:?}", observed.agent.probe_errors());
}

#[test]
fn a_full_map_is_counted_and_the_rest_goes_on() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let config = Config { maps: MapLimits { max_fds: 256, ..Config::default().maps }, ..Config::default() };
    let [observed] = observe_while_ticking_with(&config, [&["--linger", "2s", "many-fds", "--fds", "600"][..]]);
    let errors = observed.agent.probe_errors();
    assert!(errors.stats_map_full >= 600 - 256, "{errors:?}");
    assert!(observed.agent.tracked_fds() <= 256);
    // What was tracked is still exact: one write per tracked descriptor.
    let process = observed.process();
    assert!(!process.fds.is_empty());
    assert!(process.fds.values().all(|fd| fd.total.total_calls() == 1));
}

#[test]
fn an_idle_pair_leaves_the_kernel_map_and_keeps_its_totals() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let maps = MapLimits { evict_idle_after: Duration::from_secs(10), ..Config::default().maps };
    let config = Config { maps, ..Config::default() };
    // Two flushes 13 s apart (1 record, then 2): the pair is evicted between
    // them, and the second flush starts a new kernel entry.
    let [observed] = observe_while_ticking_with(&config, [&["timer", "--period", "13s", "--flushes", "2"][..]]);
    let fd = &observed.process().fds[&observed.report.fd];
    assert_eq!(fd.total.total_calls(), 2);
    assert_eq!(fd.total.records, 3);
    assert_eq!(fd.total.bytes_written, observed.report.bytes_written);
    // The 13 s gap is not seen: the second entry has no previous call. That
    // is how the eviction of this very pair shows.
    assert_eq!(fd.total.gap_hist.iter().sum::<u64>(), 0, "{:?}", fd.total.gap_hist);
    assert!(observed.agent.evicted_fds() >= 1);
}
