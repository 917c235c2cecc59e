//! What one frame of the live view shows, copied from the agent at each tick.
//!
//! The view draws from a copy so that pausing can freeze the screen while the
//! agent goes on reading the kernel maps: left unread, they would fill with
//! the entries of processes that exited, and new writers would go untracked.

use std::{collections::HashMap, time::Duration};

use agent_common::{counters::Counters as _, write::WriteStats};

use crate::{
    agent::Agent,
    collector::ProbeErrors,
    model::{FdState, Model, ProcessState, metrics::BatchingMetrics},
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
    /// Cost of one kernel crossing, and whether it was measured here.
    pub transition_cost_ns: f64,
    pub cost_measured: bool,
    pub probes_attached: usize,
    /// Tracepoints that could not be attached.
    pub probes_failed: Vec<String>,
    pub tracked_fds: usize,
    pub errors: ProbeErrors,
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
        }
    }
}

/// Sums over the live processes, for the header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    pub writes_per_sec: f64,
    pub transition_cores: f64,
    pub flagged: usize,
}

type FdKey = (ProcessKey, i32);

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Live processes, then exited ones.
    pub processes: Vec<ProcessState>,
    /// What each descriptor wrote in the last interval, histograms included:
    /// the model zeroes its interval counters when it closes one, so the view
    /// differences the running totals of two snapshots instead.
    last_interval: HashMap<FdKey, WriteStats>,
    pub node: NodeFacts,
}

impl Snapshot {
    /// Before the first tick: nothing written yet.
    pub fn empty(node: NodeFacts) -> Snapshot {
        Snapshot { processes: Vec::new(), last_interval: HashMap::new(), node }
    }

    /// Copies `model` just after it closed an interval; `previous` is the
    /// snapshot taken when the interval before it closed.
    pub fn capture(model: &Model, node: NodeFacts, previous: &Snapshot) -> Snapshot {
        let before: HashMap<FdKey, &FdState> = fd_states(&previous.processes).collect();
        let processes: Vec<ProcessState> = model.processes().cloned().collect();
        let last_interval =
            fd_states(&processes).map(|(key, now)| (key, written_since(now, before.get(&key).copied()))).collect();
        Snapshot { processes, last_interval, node }
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
        live.fold(Totals { writes_per_sec: 0.0, transition_cores: 0.0, flagged: 0 }, |t, p| Totals {
            writes_per_sec: t.writes_per_sec + p.metrics.calls_per_sec,
            transition_cores: t.transition_cores + p.transition_cores(),
            flagged: t.flagged + usize::from(p.unbatched),
        })
    }
}

fn fd_states(processes: &[ProcessState]) -> impl Iterator<Item = (FdKey, &FdState)> {
    processes.iter().flat_map(|p| p.fds.iter().map(move |(&fd, state)| ((ProcessKey::of(p), fd), state)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testing::{self, Write};

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
    fn drops_per_second_from_the_share_of_calls() {
        let (_, shown) = testing::three_writers();
        let dropper = shown.processes.iter().find(|p| p.identity.comm == "dropper").unwrap();
        assert_eq!(drops_per_sec(&dropper.metrics), 300.0);
        assert_eq!(drops_per_sec(&BatchingMetrics::default()), 0.0);
    }
}
