//! What happened, from one collection to the next: the model's totals of
//! each process differenced ([`Seen`]), summed per group of descriptors
//! ([`Activity`]), and what a process shows now ([`Gauges`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

use agent_common::{
    counters::Counters,
    io_uring::{EnterStats, RingOpStats, SetupStats},
    sync::SyncStats,
    write::WriteStats,
};

use crate::{
    attribution::fds::{FdInfo, FdKind},
    export::{
        attributes::{Attr, attr},
        catalog,
    },
    model::{ProcessState, metrics::Transition},
};

/// The descriptors one write series covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum FdGroup {
    Kind(&'static str),
    Fd { fd: i32, kind: &'static str, target: String },
}

impl FdGroup {
    pub(super) fn of(fd: i32, info: Option<&FdInfo>, per_fd: bool) -> FdGroup {
        let kind = info.map_or("unknown", |info| info.kind.name());
        match (per_fd, info) {
            (true, Some(info)) => FdGroup::Fd { fd, kind, target: info.target.clone() },
            (true, None) => FdGroup::Fd { fd, kind, target: String::new() },
            (false, _) => FdGroup::Kind(kind),
        }
    }

    /// The group by kind alone, as `other` has them.
    pub(super) fn by_kind(&self) -> FdGroup {
        match self {
            FdGroup::Kind(kind) | FdGroup::Fd { kind, .. } => FdGroup::Kind(kind),
        }
    }

    pub(super) fn attributes(&self) -> Vec<Attr> {
        match self {
            FdGroup::Kind(kind) => vec![attr(&catalog::FD_KIND, *kind)],
            FdGroup::Fd { fd, kind, target } => vec![
                attr(&catalog::FD_KIND, *kind),
                attr(&catalog::FD, i64::from(*fd)),
                attr(&catalog::FD_TARGET, target.clone()),
            ],
        }
    }
}

/// What one process (or many) did over some span.
#[derive(Debug, Clone, Default)]
pub(super) struct Activity {
    pub(super) writes: BTreeMap<FdGroup, WriteStats>,
    /// Present once io_uring was used.
    pub(super) uring: Option<UringActivity>,
    /// Present once the process synced: all its descriptors together.
    pub(super) syncs: Option<SyncStats>,
    pub(super) transition_s: f64,
    pub(super) avoidable_s: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct UringActivity {
    /// Enters of every ring; SQPOLL rings leave the batch-size histogram
    /// and its sum out, as their enters only wake the poller.
    pub(super) enters: EnterStats,
    pub(super) ops: RingOpStats,
    pub(super) denied_setups: u64,
}

impl Activity {
    pub(super) fn add(&mut self, other: &Activity) {
        self.merge(other, FdGroup::clone);
    }

    /// Adds `other` with its descriptors grouped by kind only, for `other`.
    pub(super) fn add_by_kind(&mut self, other: &Activity) {
        self.merge(other, FdGroup::by_kind);
    }

    fn merge(&mut self, other: &Activity, group_of: impl Fn(&FdGroup) -> FdGroup) {
        for (group, stats) in &other.writes {
            self.writes.entry(group_of(group)).or_insert(WriteStats::ZERO).add(stats);
        }
        if let Some(theirs) = &other.uring {
            let ours = self.uring.get_or_insert_with(UringActivity::default);
            ours.enters.add(&theirs.enters);
            ours.ops.add(&theirs.ops);
            ours.denied_setups += theirs.denied_setups;
        }
        if let Some(theirs) = &other.syncs {
            self.syncs.get_or_insert(SyncStats::ZERO).add(theirs);
        }
        self.transition_s += other.transition_s;
        self.avoidable_s += other.avoidable_s;
    }

    /// Write calls plus io_uring SQEs plus syncs: the activity the floor is about.
    pub(super) fn ops(&self) -> u64 {
        let writes: u64 = self.writes.values().map(WriteStats::total_calls).sum();
        writes + self.uring.map_or(0, |u| u.ops.sqes) + self.syncs.map_or(0, |s| s.total_calls())
    }
}

/// The model's totals of one process at the last collection.
#[derive(Default)]
pub(super) struct Seen {
    /// Per descriptor, the file it named (its link target) and its totals.
    pub(super) fds: HashMap<i32, (Option<String>, WriteStats)>,
    /// Per ring, in the model's order (rings are only ever added).
    pub(super) rings: Vec<(EnterStats, RingOpStats)>,
    pub(super) setups: SetupStats,
    pub(super) syncs: SyncStats,
    /// New sockets whose totals were held back one collection.
    pub(super) held: HashSet<i32>,
}

impl Seen {
    /// What `process` did since the last call, and remembers its totals.
    ///
    /// A socket seen for the first time is known only as `socket` until the
    /// depth sampler, at the next tick, finds its protocol (`unix`, `tcp`,
    /// ...). When `hold`, its totals wait one collection, so that they go to
    /// the series of its real kind rather than stay in `socket` for good
    /// (with collections at every tick, a burst that ended in its first tick
    /// would). The last collection, at exit, holds nothing back.
    pub(super) fn advance(&mut self, process: &ProcessState, per_fd: bool, t: &Transition, hold: bool) -> Activity {
        let mut delta = Activity::default();
        let (mut calls, mut records) = (0, 0);
        for (&fd, state) in &process.fds {
            let unrefined = state.info.as_ref().is_some_and(|info| info.kind == FdKind::Socket);
            if hold && unrefined && !self.fds.contains_key(&fd) && self.held.insert(fd) {
                continue;
            }
            // The link target, not the kind, which the depth sampler refines.
            let target = state.info.as_ref().map(|info| info.target.clone());
            let before = self.fds.insert(fd, (target.clone(), state.total));
            let stats = match before {
                Some((seen, before)) if seen == target => since(&state.total, &before),
                // New, or the fd now names another file: its totals restarted.
                _ => state.total,
            };
            if !stats.is_zero() {
                calls += stats.total_calls();
                records += stats.records;
                delta
                    .writes
                    .entry(FdGroup::of(fd, state.info.as_ref(), per_fd))
                    .or_insert(WriteStats::ZERO)
                    .add(&stats);
            }
        }
        delta.transition_s = t.cores(calls as f64);
        delta.avoidable_s = t.saving(calls as f64, records as f64);
        if let Some(uring) = &process.io_uring {
            let mut activity = UringActivity::default();
            for (at, ring) in uring.rings.iter().enumerate() {
                let (enters_before, ops_before) = self.rings.get(at).copied().unwrap_or_default();
                let mut enters = since(&ring.total_enters, &enters_before);
                let ops = since(&ring.total_ops, &ops_before);
                delta.transition_s += t.cores(enters.enters as f64);
                if ring.sqpoll() {
                    enters.submitted_hist = Default::default();
                    enters.submitted = 0;
                } else {
                    // Enters that only wait would not be fewer with bigger batches.
                    delta.avoidable_s += t.saving(enters.submitting as f64, ops.sqes as f64);
                }
                activity.enters.add(&enters);
                activity.ops.add(&ops);
            }
            self.rings = uring.rings.iter().map(|ring| (ring.total_enters, ring.total_ops)).collect();
            let setups = since(&uring.setups, &self.setups);
            self.setups = uring.setups;
            activity.denied_setups = setups.eperm + setups.enosys;
            delta.uring = Some(activity);
        }
        if !process.syncs.is_empty() {
            let total = process.sync_total();
            delta.syncs = Some(since(&total, &self.syncs));
            self.syncs = total;
        }
        delta
    }
}

/// `now - before`, word by word, with nothing for a word that went down.
///
/// Exported counters are sums of these deltas, so they never go down. A
/// model restart is told by the descriptor's file and the process's start
/// time, never by a counter going down: taking that for a restart and
/// re-emitting all of `now` would double every counter of the series.
fn since<C: Counters>(now: &C, before: &C) -> C {
    let mut delta = *now;
    for (word, before) in delta.words_mut().iter_mut().zip(before.words()) {
        *word = word.saturating_sub(*before);
    }
    delta
}

/// What a process shows now: its flags and how full its buffers are.
#[derive(Debug, Clone, Default)]
pub(super) struct Gauges {
    pub(super) hot_writer: bool,
    pub(super) round_trip_bound: bool,
    pub(super) io_uring_unbatched: bool,
    pub(super) sqpoll_trickle: bool,
    /// Present once the process synced: whether it is flagged sync per write.
    pub(super) sync_per_write: Option<bool>,
    /// The socket and pipe buffers its descriptors write into, at the last look.
    pub(super) buffers: BTreeMap<FdGroup, Buffers>,
    /// (pending, entries) of the submission and completion queues, over
    /// the rings whose fdinfo was read.
    pub(super) queues: Option<[(u64, u64); 2]>,
}

/// The buffers of a group of descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Buffers {
    /// Bytes the kernel counts against the limits, and the limits, summed.
    pub(super) charged: u64,
    pub(super) capacity: u64,
    /// The highest charged / capacity among them.
    pub(super) fullest: f64,
}

impl Buffers {
    pub(super) fn add(&mut self, other: &Buffers) {
        self.charged += other.charged;
        self.capacity += other.capacity;
        self.fullest = self.fullest.max(other.fullest);
    }
}

impl Gauges {
    /// `process`'s gauges, of the descriptors that wrote since `active_since`.
    pub(super) fn of(process: &ProcessState, per_fd: bool, active_since: Option<Instant>) -> Gauges {
        let mut buffers: BTreeMap<FdGroup, Buffers> = BTreeMap::new();
        for (&fd, state) in &process.fds {
            let Some(depth) = state.depth.filter(|_| active_since.is_none_or(|since| state.last_write >= since)) else {
                continue;
            };
            let sample = Buffers {
                charged: depth.charged_bytes,
                capacity: depth.capacity_bytes,
                fullest: depth.percent() / 100.0,
            };
            buffers.entry(FdGroup::of(fd, state.info.as_ref(), per_fd)).or_default().add(&sample);
        }
        let rings = process.io_uring.iter().flat_map(|u| &u.rings);
        let queues = rings.clone().filter_map(|ring| ring.depth).fold(None, |sum: Option<[(u64, u64); 2]>, d| {
            let [(sq, sq_entries), (cq, cq_entries)] = sum.unwrap_or_default();
            Some([
                (sq + u64::from(d.sq_pending), sq_entries + u64::from(d.sq_entries)),
                (cq + u64::from(d.cq_pending), cq_entries + u64::from(d.cq_entries)),
            ])
        });
        Gauges {
            buffers,
            hot_writer: process.hot_fds().next().is_some(),
            round_trip_bound: process.round_trip_bound,
            io_uring_unbatched: rings.clone().any(|ring| ring.unbatched.is_raised()),
            sqpoll_trickle: rings.clone().any(|ring| ring.trickle.is_raised()),
            sync_per_write: (!process.syncs.is_empty()).then_some(process.sync_per_write),
            queues,
        }
    }

    /// Adds the buffers and queues of a folded process, for the `other` series.
    pub(super) fn add_folded(&mut self, other: &Gauges) {
        self.add_buffers(other, FdGroup::by_kind);
    }

    /// Adds another process of the same group: its buffers and queues, and
    /// its flags (a group is flagged when one of its processes is).
    pub(super) fn add(&mut self, other: &Gauges) {
        self.add_buffers(other, FdGroup::clone);
        self.hot_writer |= other.hot_writer;
        self.round_trip_bound |= other.round_trip_bound;
        self.io_uring_unbatched |= other.io_uring_unbatched;
        self.sqpoll_trickle |= other.sqpoll_trickle;
        self.sync_per_write = match (self.sync_per_write, other.sync_per_write) {
            (Some(ours), Some(theirs)) => Some(ours || theirs),
            (ours, theirs) => ours.or(theirs),
        };
    }

    fn add_buffers(&mut self, other: &Gauges, group_of: impl Fn(&FdGroup) -> FdGroup) {
        for (group, buffers) in &other.buffers {
            self.buffers.entry(group_of(group)).or_default().add(buffers);
        }
        if let Some([(sq, sq_entries), (cq, cq_entries)]) = other.queues {
            let [(our_sq, our_sq_entries), (our_cq, our_cq_entries)] = self.queues.unwrap_or_default();
            self.queues =
                Some([(our_sq + sq, our_sq_entries + sq_entries), (our_cq + cq, our_cq_entries + cq_entries)]);
        }
    }
}
