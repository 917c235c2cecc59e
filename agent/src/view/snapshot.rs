//! What one frame of the live view shows, copied from the agent at each tick.
//!
//! The view draws from a copy so that pausing can freeze the screen while the
//! agent goes on reading the kernel maps: left unread, they would fill with
//! the entries of processes that exited, and new writers would go untracked.

use std::{collections::HashMap, time::Duration};

use agent_common::{
    counters::Counters as _,
    io_uring::{EnterStats, SUBMIT_SLOTS},
    write::WriteStats,
};

use crate::{
    agent::Agent,
    bpf::collector::ProbeErrors,
    bpf::probes::AttachMode,
    model::{
        FdState, Model, ProcessState,
        io_uring::{RingMetrics, RingState},
        metrics::BatchingMetrics,
    },
};

/// A process, told apart from a later one that was given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessKey {
    pub fn of(process: &ProcessState) -> ProcessKey {
        ProcessKey { pid: process.identity.pid, start_ticks: process.identity.start_ticks }
    }
}

/// The node facts the header shows.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub interval: Duration,
    /// Cost of one kernel transition, and whether it was measured here.
    pub transition_cost_ns: f64,
    pub cost_measured: bool,
    pub probes_attached: usize,
    /// Tracepoints that could not be attached.
    pub probes_failed: Vec<String>,
    pub tracked_fds: usize,
    pub errors: ProbeErrors,
    /// How syscall exits are hooked (`fexit`, `tracepoint`, ...).
    pub attach_mode: Option<&'static str>,
    /// Why the agent polls /proc instead of running its probes, if it does.
    pub degraded: Option<String>,
}

impl NodeFacts {
    pub fn of(agent: &Agent, interval: Duration) -> NodeFacts {
        let node = agent.node();
        NodeFacts {
            interval,
            transition_cost_ns: node.transition_cost_ns,
            cost_measured: node.transition_cost_measured,
            probes_attached: node.attached.len(),
            probes_failed: node.failed.iter().map(|f| f.tracepoint.clone()).collect(),
            tracked_fds: agent.tracked_fds(),
            errors: agent.probe_errors(),
            attach_mode: node.attach_mode.map(AttachMode::name),
            degraded: node.degraded.as_ref().map(|d| d.reason.clone()),
        }
    }
}

/// Sums over the live processes, for the header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    pub writes_per_sec: f64,
    /// io_uring SQEs submitted, by enters or by SQPOLL pollers.
    pub sqes_per_sec: f64,
    pub transition_cores: f64,
    pub flagged: usize,
}

type FdKey = (ProcessKey, i32);
/// A ring by its place among its process's rings, which the model only
/// ever appends to.
type RingKey = (ProcessKey, usize);

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Live processes, then exited ones.
    pub processes: Vec<ProcessState>,
    /// What each descriptor wrote in the last interval, histograms included:
    /// the model zeroes its interval counters when it closes one, so the view
    /// differences the running totals of two snapshots instead.
    last_interval: HashMap<FdKey, WriteStats>,
    /// What each ring's `io_uring_enter` calls did in the last interval,
    /// differenced the same way.
    last_enters: HashMap<RingKey, EnterStats>,
    pub node: NodeFacts,
}

impl Snapshot {
    /// Before the first tick: nothing written yet.
    pub fn empty(node: NodeFacts) -> Snapshot {
        Snapshot { processes: Vec::new(), last_interval: HashMap::new(), last_enters: HashMap::new(), node }
    }

    /// Copies `model` just after it closed an interval; `previous` is the
    /// snapshot taken when the interval before it closed.
    pub fn capture(model: &Model, node: NodeFacts, previous: &Snapshot) -> Snapshot {
        let before: HashMap<FdKey, &FdState> = fd_states(&previous.processes).collect();
        let processes: Vec<ProcessState> = model.processes().cloned().collect();
        let last_interval =
            fd_states(&processes).map(|(key, now)| (key, written_since(now, before.get(&key).copied()))).collect();
        let rings_before: HashMap<RingKey, &RingState> = ring_states(&previous.processes).collect();
        let last_enters = ring_states(&processes)
            .map(|(key, now)| (key, entered_since(now, rings_before.get(&key).copied())))
            .collect();
        Snapshot { processes, last_interval, last_enters, node }
    }

    /// SQEs per submitting `io_uring_enter` of `process` in the last
    /// interval, a log2 histogram over its rings that are not SQPOLL: an
    /// enter on an SQPOLL ring only wakes the poller, as in the model.
    pub fn sqes_per_enter(&self, process: &ProcessState) -> [u64; SUBMIT_SLOTS] {
        let key = ProcessKey::of(process);
        let rings = process.io_uring.iter().flat_map(|u| u.rings.iter().enumerate());
        let mut sum = [0; SUBMIT_SLOTS];
        for (at, _) in rings.filter(|(_, ring)| !ring.sqpoll()) {
            if let Some(enters) = self.last_enters.get(&(key, at)) {
                sum.iter_mut().zip(enters.submitted_hist).for_each(|(sum, n)| *sum += n);
            }
        }
        sum
    }

    /// What `process` wrote in the last interval, on `fd` or on all its
    /// descriptors.
    pub fn last_interval(&self, process: &ProcessState, fd: Option<i32>) -> WriteStats {
        let key = ProcessKey::of(process);
        let numbers = process.fds.keys().filter(|&&number| fd.is_none_or(|fd| fd == number));
        numbers.filter_map(|&number| self.last_interval.get(&(key, number))).fold(WriteStats::ZERO, |mut sum, stats| {
            sum.add(stats);
            sum
        })
    }

    /// Exited processes keep the metrics of their last, partial interval;
    /// they are left out so the header describes the node as it is now.
    pub fn totals(&self) -> Totals {
        let live = self.processes.iter().filter(|p| p.exited.is_none());
        let zero = Totals { writes_per_sec: 0.0, sqes_per_sec: 0.0, transition_cores: 0.0, flagged: 0 };
        live.fold(zero, |t, p| Totals {
            writes_per_sec: t.writes_per_sec + p.metrics.calls_per_sec,
            sqes_per_sec: t.sqes_per_sec + p.io_uring.as_ref().map_or(0.0, |u| u.metrics.sqes_per_sec),
            transition_cores: t.transition_cores + p.transition_cores(),
            flagged: t.flagged + usize::from(p.unbatched),
        })
    }
}

fn fd_states(processes: &[ProcessState]) -> impl Iterator<Item = (FdKey, &FdState)> {
    processes.iter().flat_map(|p| p.fds.iter().map(move |(&fd, state)| ((ProcessKey::of(p), fd), &**state)))
}

fn ring_states(processes: &[ProcessState]) -> impl Iterator<Item = (RingKey, &RingState)> {
    processes.iter().flat_map(|p| {
        p.io_uring
            .iter()
            .flat_map(move |u| u.rings.iter().enumerate().map(move |(at, ring)| ((ProcessKey::of(p), at), ring)))
    })
}

/// What `now`'s enters did since `before`, the same ring one interval earlier.
fn entered_since(now: &RingState, before: Option<&RingState>) -> EnterStats {
    match before {
        Some(before) if before.fd == now.fd => now.total_enters.since(&before.total_enters),
        _ => now.total_enters,
    }
}

/// What `now` wrote since `before`, the same descriptor one interval earlier.
fn written_since(now: &FdState, before: Option<&FdState>) -> WriteStats {
    match before {
        // The model restarts a descriptor's totals when its number comes to
        // name another file; then the totals are all new.
        Some(before) if before.info == now.info => now.total.since(&before.total),
        _ => now.total,
    }
}

/// Drops per second: drops are outcomes of calls, so the share of calls that
/// dropped times the call rate (the metrics do not carry the interval's
/// length).
pub fn drops_per_sec(m: &BatchingMetrics) -> f64 {
    if m.calls == 0 { 0.0 } else { m.drops.total() as f64 / m.calls as f64 * m.calls_per_sec }
}

/// Drops per second of a whole process, `interval` long: what the kernel
/// refused or lost of its write calls ([`drops_per_sec`]) and of its
/// io_uring requests ([`ring_drops`]). Drops are counted wherever the data
/// went, so a process that moved its writes to a ring does not look as if
/// it stopped dropping.
pub fn process_drops_per_sec(process: &ProcessState, interval: Duration) -> f64 {
    let rings = process.io_uring.as_ref().map_or(0.0, |u| per_sec(&u.metrics, ring_drops(&u.metrics), interval));
    drops_per_sec(&process.metrics) + rings
}

/// What the kernel refused or lost of a ring's requests: completions that
/// overflowed a full CQ, completions with a negative result (`EAGAIN` and
/// every other errno), and short writes. A request that io_uring itself
/// failed (`io_uring_req_failed`: a bad SQE, a cancelled link) completes
/// with a negative result too, so it is already among those and `failed`
/// is not added again.
pub fn ring_drops(m: &RingMetrics) -> u64 {
    m.cq_overflows + ring_failures(m) + m.short_writes
}

/// Completions with a negative result.
pub fn ring_failures(m: &RingMetrics) -> u64 {
    m.cqe_eagain + m.cqe_errors
}

/// `count`, one of `m`'s counts, per second. The interval's length comes
/// from `m`'s own rates when it has any (they divide by the interval the
/// model closed), else it is taken to be the configured `interval`.
pub fn per_sec(m: &RingMetrics, count: u64, interval: Duration) -> f64 {
    let seconds = if m.enters > 0 && m.enters_per_sec > 0.0 {
        m.enters as f64 / m.enters_per_sec
    } else if m.sqes > 0 && m.sqes_per_sec > 0.0 {
        m.sqes as f64 / m.sqes_per_sec
    } else {
        interval.as_secs_f64()
    };
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use agent_common::hist::log2_slot;

    use super::*;
    use crate::view::testing::{self, Enters, Write};

    #[test]
    fn last_interval_is_the_difference_of_two_snapshots() {
        let mut model = testing::model();
        let logger = testing::identity(100, "logger");
        let socket = testing::socket(7);
        let mut shown = Snapshot::empty(testing::node());
        for bytes in [100, 3000] {
            model.record(&logger, 3, Some(&socket), &Write { calls: 10, bytes, ..Write::HOT }.stats());
            model.close_interval(1.0);
            shown = Snapshot::capture(&model, testing::node(), &shown);
        }
        let process = &shown.processes[0];
        let last = shown.last_interval(process, Some(3));
        assert_eq!(last.total_calls(), 10, "the first interval is not counted again");
        assert_eq!(last.bytes_requested, 30_000);
        assert_eq!(process.fds[&3].total.total_calls(), 20);
    }

    #[test]
    fn a_reused_descriptor_starts_afresh() {
        let mut model = testing::model();
        let logger = testing::identity(100, "logger");
        let first = Snapshot::empty(testing::node());
        model.record(&logger, 3, Some(&testing::socket(7)), &Write { calls: 10, ..Write::HOT }.stats());
        model.close_interval(1.0);
        let first = Snapshot::capture(&model, testing::node(), &first);
        // Fewer calls than before on another file: a plain difference would wrap.
        model.record(&logger, 3, Some(&testing::socket(8)), &Write { calls: 4, ..Write::HOT }.stats());
        model.close_interval(1.0);
        let second = Snapshot::capture(&model, testing::node(), &first);
        assert_eq!(second.last_interval(&second.processes[0], Some(3)).total_calls(), 4);
    }

    #[test]
    fn whole_process_sums_its_descriptors() {
        let mut model = testing::model();
        let logger = testing::identity(100, "logger");
        model.record(&logger, 3, Some(&testing::socket(7)), &Write { calls: 10, ..Write::HOT }.stats());
        model.record(&logger, 4, Some(&testing::socket(8)), &Write { calls: 5, ..Write::HOT }.stats());
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &Snapshot::empty(testing::node()));
        assert_eq!(shown.last_interval(&shown.processes[0], None).total_calls(), 15);
        assert_eq!(shown.last_interval(&shown.processes[0], Some(4)).total_calls(), 5);
    }

    #[test]
    fn totals_leave_out_exited_processes() {
        let (mut model, shown) = testing::three_writers();
        let totals = shown.totals();
        assert_eq!(totals.writes_per_sec, 50_000.0 + 2_000.0 + 1_200.0);
        assert_eq!(totals.flagged, 1);
        assert!((totals.transition_cores - 0.0532).abs() < 1e-9, "{totals:?}");

        // The logger writes as fast in its last second, then exits.
        model.record(&testing::identity(100, "logger"), 3, Some(&testing::socket(7)), &Write::HOT.stats());
        model.exit(100, 1.0);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        assert_eq!(shown.processes.iter().find(|p| p.identity.pid == 100).unwrap().metrics.calls_per_sec, 50_000.0);
        assert_eq!(shown.totals().writes_per_sec, 2_000.0 + 1_200.0);
        assert_eq!(shown.totals().flagged, 0);
    }

    #[test]
    fn sqes_per_enter_of_the_last_interval_leave_out_sqpoll_rings() {
        let (mut model, shown) = testing::uring_users();
        let batch32 = shown.processes.iter().find(|p| p.identity.pid == 600).unwrap();
        let slot = |n: u64| log2_slot(n, SUBMIT_SLOTS);
        let mut expected = [0; SUBMIT_SLOTS];
        expected[slot(32)] = 1000;
        assert_eq!(shown.sqes_per_enter(batch32), expected, "the third interval only");

        // One more interval of two kinds of batches.
        let uring = model.io_uring(&testing::identity(600, "batch32"));
        uring.record_enters(8, &Enters { enters: 300, per_enter: 4, wakeups: 0 }.stats());
        uring.record_enters(8, &Enters { enters: 100, per_enter: 32, wakeups: 0 }.stats());
        model.close_interval(1.0);
        let shown = Snapshot::capture(&model, testing::node(), &shown);
        let batch32 = shown.processes.iter().find(|p| p.identity.pid == 600).unwrap();
        (expected[slot(4)], expected[slot(32)]) = (300, 100);
        assert_eq!(shown.sqes_per_enter(batch32), expected);

        // 40 enters, each asking the SQPOLL poller to submit one SQE.
        let trickle = shown.processes.iter().find(|p| p.identity.pid == 750).unwrap();
        assert_eq!(trickle.io_uring.as_ref().unwrap().rings[0].total_enters.submitted_hist[slot(1)], 120);
        assert_eq!(shown.sqes_per_enter(trickle), [0; SUBMIT_SLOTS]);
    }

    #[test]
    fn io_uring_drops_count_overflows_and_failed_completions() {
        let (_, shown) = testing::uring_users();
        let batch32 = shown.processes.iter().find(|p| p.identity.pid == 600).unwrap();
        let interval = Duration::from_secs(1);
        assert_eq!(process_drops_per_sec(batch32, interval), 10.0 + 2.0 + 5.0);
        let m = &batch32.io_uring.as_ref().unwrap().metrics;
        // Half a second: the rates the model computed tell the length.
        let half = RingMetrics { enters_per_sec: m.enters_per_sec * 2.0, ..*m };
        assert_eq!(per_sec(&half, ring_drops(&half), interval), 34.0);
        let idle = RingMetrics { enters: 0, sqes: 0, ..*m };
        assert_eq!(per_sec(&idle, 17, Duration::from_secs(2)), 8.5, "no rates: the configured interval");
        assert_eq!(shown.totals().sqes_per_sec, 5000.0 + 32_000.0 + 100_000.0 + 40.0);
    }

    #[test]
    fn drops_per_second_from_the_share_of_calls() {
        let (_, shown) = testing::three_writers();
        let dropper = shown.processes.iter().find(|p| p.identity.comm == "dropper").unwrap();
        assert_eq!(drops_per_sec(&dropper.metrics), 300.0);
        assert_eq!(drops_per_sec(&BatchingMetrics::default()), 0.0);
    }
}
