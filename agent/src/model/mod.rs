//! The batching model: per process and per descriptor, what the last
//! interval and the whole observation looked like, and the verdicts on them.
//!
//! The collector feeds it deltas; the views and exporters only read it.

pub mod classify;
pub mod flag;
pub mod histogram;
pub mod human;
pub mod io_uring;
pub mod metrics;
pub mod sync;

use std::{
    collections::{BTreeMap, HashMap},
    mem,
    time::Instant,
};

use agent_common::{counters::Counters as _, sync::SyncStats, write::WriteStats};

use self::{
    classify::{TimerFlush, is_hot_by_averages, is_hot_unbatched, is_sqpoll_trickle, is_unbatched_ring},
    flag::Flag,
    io_uring::{RingState, UringState},
    metrics::{BatchingMetrics, Transition},
    sync::{SyncMetrics, SyncState},
};
use crate::{
    attribution::fds::{FdInfo, FdKind},
    attribution::identity::Identity,
    config::{Config, HotWriterRule, IoUringRule, SyncRule, TimerFlushRule},
    depth::Depth,
    depth::fdinfo::RingFdinfo,
};

/// How the model judges what it sees.
#[derive(Debug, Clone)]
pub struct Rules {
    pub hot_writer: HotWriterRule,
    pub timer_flush: TimerFlushRule,
    pub io_uring: IoUringRule,
    pub sync: SyncRule,
    pub transition: Transition,
    /// Only averages per process are known (the degraded `/proc` mode).
    pub degraded: bool,
}

impl Rules {
    /// The rules `config` sets, with the transition cost measured (or set) on
    /// this node.
    pub fn new(config: &Config, cost_ns: f64, degraded: bool) -> Rules {
        Rules {
            hot_writer: config.hot_writer.clone(),
            timer_flush: config.timer_flush.clone(),
            io_uring: config.io_uring.clone(),
            sync: config.sync.clone(),
            transition: Transition { cost_ns, batch_target: config.hot_writer.batch_target },
            degraded,
        }
    }
}

/// One descriptor of one process.
#[derive(Debug, Clone)]
pub struct FdState {
    /// What the descriptor is; `None` when it was closed before it was seen.
    pub info: Option<FdInfo>,
    /// What it wrote in the interval under way.
    interval: Interval,
    /// Since the descriptor was first seen (or last reused for another file).
    pub total: WriteStats,
    /// Metrics of the last interval.
    pub metrics: BatchingMetrics,
    /// Raised while the descriptor is an un-batched hot writer.
    pub flag: Flag,
    pub timer: Option<TimerFlush>,
    /// When it last wrote.
    pub last_write: Instant,
    /// How full its socket or pipe was at the last look.
    pub depth: Option<Depth>,
}

/// What a descriptor wrote in the interval under way. Its own copy only
/// when it differs from the total: the many idle descriptors of a node, and
/// those that first wrote in this interval (all of them when thousands of
/// processes start at once), hold none.
#[derive(Debug, Clone, Default)]
enum Interval {
    #[default]
    Idle,
    /// The descriptor first wrote in this interval.
    AllOfTotal,
    Own(Box<WriteStats>),
}

impl Interval {
    /// The interval once `delta` is added, `total` being the descriptor's
    /// total before it.
    fn after(self, delta: &WriteStats, total: &WriteStats) -> Interval {
        let mut own = match self {
            Interval::Idle if total.is_zero() => return Interval::AllOfTotal,
            Interval::Idle => Box::new(WriteStats::ZERO),
            Interval::AllOfTotal => Box::new(*total),
            Interval::Own(own) => own,
        };
        own.add(delta);
        Interval::Own(own)
    }

    /// What was written in the interval, given the descriptor's total; the
    /// next interval starts idle.
    fn close(&mut self, total: &WriteStats) -> WriteStats {
        match mem::take(self) {
            Interval::Idle => WriteStats::ZERO,
            Interval::AllOfTotal => *total,
            Interval::Own(own) => *own,
        }
    }
}

/// One process.
#[derive(Debug, Clone)]
pub struct ProcessState {
    pub identity: Identity,
    /// Boxed: a B-tree node holds room for 11 values, and most processes
    /// write to one or two descriptors.
    pub fds: BTreeMap<i32, Box<FdState>>,
    /// Metrics of the last interval, all descriptors together.
    pub metrics: BatchingMetrics,
    /// io_uring use, once the process set up or used a ring (boxed: most
    /// processes never do).
    pub io_uring: Option<Box<UringState>>,
    /// Syncs per descriptor (and pseudo-descriptor, see `agent_common::sync`),
    /// once the process synced or wrote to an `O_SYNC`/`O_DSYNC` descriptor.
    pub syncs: BTreeMap<i32, Box<SyncState>>,
    /// Sync metrics of the last interval, all descriptors together.
    pub sync_metrics: SyncMetrics,
    /// A descriptor of it makes each write durable on its own, now and at
    /// any time.
    pub sync_per_write: bool,
    pub ever_sync_per_write: bool,
    /// What to do about the verdicts raised now, and the last advice given.
    pub advice: Vec<String>,
    pub last_advice: Vec<String>,
    /// When it was first seen.
    pub first_seen: Instant,
    pub exited: Option<Instant>,
    /// Flagged now, and why.
    pub unbatched: bool,
    pub reasons: Vec<String>,
    /// Flagged at any time, and the last reasons given.
    pub ever_unbatched: bool,
    pub last_reasons: Vec<String>,
}

impl FdState {
    fn new(info: Option<FdInfo>) -> FdState {
        FdState {
            last_write: Instant::now(),
            depth: None,
            info,
            interval: Interval::Idle,
            total: WriteStats::ZERO,
            metrics: BatchingMetrics::default(),
            flag: Flag::default(),
            timer: None,
        }
    }
}

impl ProcessState {
    /// Everything the process wrote since it was first seen.
    pub fn total(&self) -> WriteStats {
        self.fds.values().fold(WriteStats::ZERO, |mut sum, fd| {
            sum.add(&fd.total);
            sum
        })
    }

    /// Descriptors flagged as un-batched hot writers.
    pub fn hot_fds(&self) -> impl Iterator<Item = (&i32, &FdState)> {
        self.fds.iter().filter(|(_, fd)| fd.flag.is_raised()).map(|(fd, state)| (fd, &**state))
    }

    /// Everything the process synced since it was first seen.
    pub fn sync_total(&self) -> SyncStats {
        self.syncs.values().fold(SyncStats::ZERO, |mut sum, state| {
            sum.add(&state.total);
            sum
        })
    }

    /// Cores spent crossing into the kernel in the last interval: write-family
    /// calls and `io_uring_enter` calls.
    pub fn transition_cores(&self) -> f64 {
        self.metrics.transition_cores + self.io_uring.as_ref().map_or(0.0, |u| u.metrics.transition_cores)
    }

    /// The fullest of its buffers at the last look, in % of capacity:
    /// socket and pipe buffers, and io_uring submission and completion queues.
    pub fn depth_percent(&self) -> Option<f64> {
        let fds = self.fds.values().filter_map(|fd| fd.depth.map(|d| d.percent()));
        let rings = self.io_uring.iter().flat_map(|u| &u.rings).filter_map(|r| r.depth);
        fds.chain(rings.map(|d| d.sq_percent().max(d.cq_percent()))).reduce(f64::max)
    }

    /// What batching would save, writes and rings together.
    pub fn saving_cores(&self) -> f64 {
        self.metrics.saving_cores + self.io_uring.as_ref().map_or(0.0, |u| u.metrics.saving_cores)
    }
}

pub struct Model {
    rules: Rules,
    /// Boxed: a process's state is large, and the table keeps room for more.
    live: HashMap<u32, Box<ProcessState>>,
    /// Boxed, as live ones are: moved here without a copy, and the list
    /// grows by pointers (record mode keeps every exit until its report).
    #[expect(clippy::vec_box, reason = "moved from `live` without a copy; the list grows by pointers")]
    exited: Vec<Box<ProcessState>>,
}

impl Model {
    pub fn new(rules: Rules) -> Model {
        Model { rules, live: HashMap::new(), exited: Vec::new() }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Adds what `fd` of `identity` wrote since the last reading.
    pub fn record(&mut self, identity: &Identity, fd: i32, info: Option<&FdInfo>, delta: &WriteStats) {
        let process = self.process_entry(identity);
        let state = process.fds.entry(fd).or_insert_with(|| Box::new(FdState::new(info.cloned())));
        let target = |info: Option<&FdInfo>| info.map(|info| info.target.clone());
        if info.is_some() && target(state.info.as_ref()) != target(info) {
            // The fd number now names another file: start its history afresh.
            **state = FdState::new(info.cloned());
        }
        state.last_write = Instant::now();
        state.interval = mem::take(&mut state.interval).after(delta, &state.total);
        state.total.add(delta);
        if let Some(info) = state.info.as_ref().filter(|info| info.synced_writes) {
            let info = info.clone();
            Self::sync_entry(process, fd, Some(&info)).record(&sync::synced_writes(delta));
        }
    }

    /// Adds what `fd` of `identity` synced since the last reading (`fd` may
    /// be a pseudo-descriptor, see `agent_common::sync`).
    pub fn record_sync(&mut self, identity: &Identity, fd: i32, info: Option<&FdInfo>, delta: &SyncStats) {
        let process = self.process_entry(identity);
        Self::sync_entry(process, fd, info).record(delta);
    }

    /// The syncs of `fd`. When the number comes to name another file, its
    /// history goes on under the new name: unlike a write stream, a
    /// descriptor slot that syncs per write keeps doing so whatever file it
    /// names (SQLite creates its journal afresh for each transaction, on the
    /// same number), and starting afresh would lose the syncs of the
    /// interval under way.
    fn sync_entry<'a>(process: &'a mut ProcessState, fd: i32, info: Option<&FdInfo>) -> &'a mut SyncState {
        let state = process.syncs.entry(fd).or_insert_with(|| Box::new(SyncState::new(info.cloned())));
        if let Some(info) = info {
            state.info = Some(info.clone());
        }
        state
    }

    /// The io_uring state of `identity`, for the collector's io_uring deltas.
    pub fn io_uring(&mut self, identity: &Identity) -> &mut UringState {
        self.process_entry(identity).io_uring.get_or_insert_default()
    }

    fn process_entry(&mut self, identity: &Identity) -> &mut ProcessState {
        self.live.entry(identity.pid).or_insert_with(|| {
            Box::new(ProcessState {
                identity: identity.clone(),
                fds: BTreeMap::new(),
                metrics: BatchingMetrics::default(),
                io_uring: None,
                syncs: BTreeMap::new(),
                sync_metrics: SyncMetrics::default(),
                sync_per_write: false,
                ever_sync_per_write: false,
                advice: Vec::new(),
                last_advice: Vec::new(),
                first_seen: Instant::now(),
                exited: None,
                unbatched: false,
                reasons: Vec::new(),
                ever_unbatched: false,
                last_reasons: Vec::new(),
            })
        })
    }

    /// Socket and pipe descriptors of live processes that wrote since
    /// `since`: the ones whose buffer depth is worth sampling. A writer
    /// blocked on a full buffer makes no calls, so "recently" rather than
    /// "in the last interval".
    pub fn recent_writers(&self, since: Instant) -> impl Iterator<Item = (u32, i32, &FdInfo)> {
        self.live.values().flat_map(move |process| {
            process
                .fds
                .iter()
                .filter(move |(_, state)| state.last_write >= since)
                .filter_map(move |(&fd, state)| Some((process.identity.pid, fd, state.info.as_ref()?)))
        })
    }

    /// Records the depth sampled for `fd` of `pid`, and the protocol it
    /// revealed for a socket.
    pub fn set_depth(&mut self, pid: u32, fd: i32, depth: Depth) {
        let Some(state) = self.live.get_mut(&pid).and_then(|p| p.fds.get_mut(&fd)) else { return };
        if let (Some(info), Some(protocol)) = (&mut state.info, depth.protocol)
            && info.kind == FdKind::Socket
        {
            info.kind = protocol.fd_kind();
        }
        state.depth = Some(depth);
    }

    /// Refreshes the queue occupancy of `pid`'s rings that have an fd,
    /// through `read` (the fdinfo reader, or a stand-in in tests).
    pub fn sample_ring_depths(&mut self, pid: u32, read: impl Fn(u32, i32) -> Option<RingFdinfo>) {
        let Some(uring) = self.live.get_mut(&pid).and_then(|p| p.io_uring.as_mut()) else { return };
        for ring in &mut uring.rings {
            if let Some(fd) = ring.fd {
                ring.depth = read(pid, fd);
            }
        }
    }

    /// Retires `pid`: judges its last, partial interval of `seconds` and keeps
    /// it among the exited.
    pub fn exit(&mut self, pid: u32, seconds: f64) {
        if let Some(mut process) = self.live.remove(&pid) {
            judge(&mut process, seconds, &self.rules);
            process.exited = Some(Instant::now());
            self.exited.push(process);
        }
    }

    /// Ends an interval of `seconds` for every live process: computes its
    /// metrics and verdicts.
    pub fn close_interval(&mut self, seconds: f64) {
        for process in self.live.values_mut() {
            judge(process, seconds, &self.rules);
        }
    }

    /// Live processes, then exited ones.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessState> {
        self.live.values().map(|process| &**process).chain(self.exited.iter().map(|process| &**process))
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessState> {
        self.live
            .get(&pid)
            .map(|process| &**process)
            .or_else(|| self.exited.iter().rev().find(|p| p.identity.pid == pid).map(|process| &**process))
    }

    /// Whether `pid` is a live process the model knows.
    pub fn is_live(&self, pid: u32) -> bool {
        self.live.contains_key(&pid)
    }

    /// Forgets exited processes that exited before `before`.
    pub fn prune_exited(&mut self, before: Instant) {
        self.exited.retain(|p| p.exited.is_some_and(|at| at >= before));
    }
}

/// Computes the metrics of the interval that just ended and updates verdicts.
fn judge(process: &mut ProcessState, seconds: f64, rules: &Rules) {
    process.reasons.clear();
    process.advice.clear();
    judge_fds(process, seconds, rules);
    judge_syncs(process, seconds, rules);
    if let Some(uring) = &mut process.io_uring {
        uring.close_interval(seconds, &rules.transition);
        for ring in &mut uring.rings {
            judge_ring(ring, seconds, rules, &mut process.reasons);
        }
    }
    process.unbatched = !process.reasons.is_empty();
    if process.unbatched {
        process.ever_unbatched = true;
        process.last_reasons.clone_from(&process.reasons);
    }
    if process.sync_per_write {
        process.ever_sync_per_write = true;
        process.last_advice.clone_from(&process.advice);
    }
}

/// The sync-per-write verdict of each descriptor that syncs (not in the
/// degraded mode, which sees no syncs).
fn judge_syncs(process: &mut ProcessState, seconds: f64, rules: &Rules) {
    let mut all = SyncStats::ZERO;
    process.sync_per_write = false;
    for (&fd, state) in &mut process.syncs {
        let interval = state.close();
        all.add(&interval);
        state.metrics = SyncMetrics::of(&interval, seconds);
        let metrics = &state.metrics;
        let what = state.describe(fd);
        let hot = sync::is_sync_per_write(metrics, &rules.sync);
        state.flag.update(hot, rules.hot_writer.sustain_intervals, |hot_for| {
            sync::reason(&what, metrics, seconds * f64::from(hot_for))
        });
        if let Some(reason) = state.flag.reason() {
            process.sync_per_write = true;
            process.reasons.push(reason.to_owned());
            let advice = sync::advice(&process.identity, state.info.as_ref());
            if !process.advice.contains(&advice) {
                process.advice.push(advice);
            }
        }
    }
    process.sync_metrics = SyncMetrics::of(&all, seconds);
}

fn judge_fds(process: &mut ProcessState, seconds: f64, rules: &Rules) {
    let mut all = WriteStats::ZERO;
    for (&fd, state) in &mut process.fds {
        let interval = state.interval.close(&state.total);
        all.add(&interval);
        state.metrics = BatchingMetrics::of(&interval, seconds, &rules.transition);
        let metrics = &state.metrics;
        let hot = if rules.degraded {
            is_hot_by_averages(metrics, &rules.hot_writer)
        } else {
            is_hot_unbatched(metrics, &rules.hot_writer)
        };
        let info = state.info.as_ref();
        state.flag.update(hot, rules.hot_writer.sustain_intervals, |hot_for| {
            let what = match info {
                _ if rules.degraded => DEGRADED_WRITES.to_owned(),
                Some(info) => info.describe(fd),
                None => format!("fd {fd}"),
            };
            hot_reason(&what, metrics, seconds * f64::from(hot_for), rules)
        });
        if interval.total_calls() > 0 {
            state.timer = TimerFlush::detect(&state.total, &rules.timer_flush);
        }
        process.reasons.extend(state.flag.reason().map(str::to_owned));
    }
    process.metrics = BatchingMetrics::of(&all, seconds, &rules.transition);
}

fn judge_ring(ring: &mut RingState, seconds: f64, rules: &Rules, reasons: &mut Vec<String>) {
    let sustain = rules.hot_writer.sustain_intervals;
    let m = &ring.metrics;
    let name = ring.fd.map_or_else(|| "io_uring ring (fd unknown)".to_owned(), |fd| format!("io_uring ring fd {fd}"));
    ring.unbatched.update(is_unbatched_ring(m, &rules.hot_writer), sustain, |hot_for| {
        format!(
            "{name}: {:.0} io_uring_enter calls/s submitting 1 SQE each (median), for {:.0} s; \
             batching to {} SQEs per enter would save {:.3} cores",
            m.enters_per_sec,
            seconds * f64::from(hot_for),
            rules.transition.batch_target,
            m.saving_cores,
        )
    });
    ring.trickle.update(is_sqpoll_trickle(m, &rules.io_uring), sustain, |hot_for| {
        format!(
            "{name} (SQPOLL): its poller fell asleep and was woken {:.0} times/s for {:.0} s, for {:.0} SQEs/s: \
             zero-syscall submission does not hold on this trickle load, which SQPOLL does not suit",
            m.wakeups_per_sec,
            seconds * f64::from(hot_for),
            m.sqes_per_sec,
        )
    });
    reasons.extend([ring.unbatched.reason(), ring.trickle.reason()].into_iter().flatten().map(str::to_owned));
}

/// What the degraded mode's writes are, in reasons.
const DEGRADED_WRITES: &str = "all writes (degraded mode: /proc/PID/io averages, per-fd and records per call unknown)";

/// Why a descriptor is flagged, in words a user can act on.
fn hot_reason(what: &str, m: &BatchingMetrics, held_s: f64, rules: &Rules) -> String {
    let size = if rules.degraded {
        format!("{:.0} B per call on average", m.mean_bytes_per_call)
    } else {
        format!("median 1 record and {} B per call", m.bytes_per_call.map_or(0, |q| q.p50))
    };
    format!(
        "{what}: {:.0} writes/s, {size}, for {held_s:.0} s; batching to {} records per call would save {:.3} cores",
        m.calls_per_sec, rules.transition.batch_target, m.saving_cores,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{attribution::fds::FdKind, testing::Write};

    fn model() -> Model {
        Model::new(Rules::new(&Config::default(), 100.0, false))
    }

    fn writes(calls: u64) -> WriteStats {
        Write { calls, ..Write::HOT }.stats()
    }

    /// Calls of the last interval and of all of them, for fd 3 of pid 10.
    fn calls(model: &Model) -> (u64, u64) {
        let fd = &model.process(10).unwrap().fds[&3];
        (fd.metrics.calls, fd.total.total_calls())
    }

    #[test]
    fn syncs_go_on_when_the_descriptor_names_another_file() {
        use agent_common::sync::SyncCall;
        let identity = Identity { pid: 10, start_ticks: 1, comm: "db".into(), command: "db".into(), container: None };
        let journal = |n: u32| FdInfo { kind: FdKind::File, target: format!("/db-journal{n}"), synced_writes: false };
        let mut syncs = SyncStats::ZERO;
        syncs.calls[SyncCall::Fdatasync as usize] = 2;
        let mut model = model();
        for n in 0..3 {
            model.record_sync(&identity, 4, Some(&journal(n)), &syncs);
        }
        model.close_interval(1.0);
        let process = model.process(10).unwrap();
        assert_eq!((process.syncs[&4].total.total_calls(), process.sync_metrics.calls), (6, 6));
        assert_eq!(process.syncs[&4].info, Some(journal(2)), "named after its latest file");
    }

    #[test]
    fn intervals_add_up_whether_the_descriptor_is_new_idle_or_busy() {
        let identity = Identity { pid: 10, start_ticks: 1, comm: "w".into(), command: "w".into(), container: None };
        let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[1]".into(), synced_writes: false };
        let mut model = model();
        let record = |model: &mut Model, n| model.record(&identity, 3, Some(&pipe), &writes(n));

        // First written in this interval, twice.
        record(&mut model, 5);
        record(&mut model, 7);
        model.close_interval(1.0);
        assert_eq!(calls(&model), (12, 12));
        // Idle.
        model.close_interval(1.0);
        assert_eq!(calls(&model), (0, 12));
        // Written again, once, then twice.
        record(&mut model, 4);
        model.close_interval(1.0);
        assert_eq!(calls(&model), (4, 16));
        record(&mut model, 1);
        record(&mut model, 2);
        model.close_interval(1.0);
        assert_eq!(calls(&model), (3, 19));
    }
}
