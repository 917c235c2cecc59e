//! The batching model: per process and per descriptor, what the last
//! interval and the whole observation looked like, and the verdicts on them.
//!
//! The collector feeds it deltas; the views and exporters only read it.

pub mod advice;
pub mod classify;
pub mod exchange;
pub mod flag;
pub mod histogram;
pub mod human;
pub mod io_uring;
pub mod metrics;
pub mod sync;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    mem,
    time::Instant,
};

use agent_common::{counters::Counters as _, sync::SyncStats, write::WriteStats};

use self::{
    classify::{TimerFlush, is_hot_by_averages, is_hot_unbatched, is_sqpoll_trickle, is_unbatched_ring},
    exchange::{Conversation, Pattern, Peer},
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
    /// Raised while the descriptor is an un-batched hot writer: a stream.
    pub flag: Flag,
    /// Raised while it is hot but request/response: round-trip bound.
    pub round_trip: Flag,
    /// What a TCP descriptor exchanged with its peer, once it was hot
    /// (boxed: most descriptors never are).
    pub conversation: Option<Box<Conversation>>,
    /// Hot intervals judged while a TCP socket's pattern was still unknown.
    undecided: u32,
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
    /// When it was first seen.
    pub first_seen: Instant,
    pub exited: Option<Instant>,
    /// Flagged now, and why (round-trip bound descriptors among the reasons).
    pub unbatched: bool,
    pub reasons: Vec<String>,
    /// Flagged at any time, and the last reasons given.
    pub ever_unbatched: bool,
    pub last_reasons: Vec<String>,
    /// What to change, for each reason (see `advice`), and the last given.
    pub advice: Vec<String>,
    pub last_advice: Vec<String>,
    /// A descriptor is round-trip bound now; was at any time.
    pub round_trip_bound: bool,
    pub ever_round_trip_bound: bool,
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
            round_trip: Flag::default(),
            conversation: None,
            undecided: 0,
            timer: None,
        }
    }

    /// Whether its writes stream or answer a peer: by its kind for pipes,
    /// files and devices, from its exchange for TCP; `None` while unknown.
    pub fn pattern(&self) -> Option<Pattern> {
        let kind = self.info.as_ref().map(|info| info.kind)?;
        Pattern::of_kind(kind).or_else(|| self.conversation.as_ref()?.pattern)
    }

    /// The peer of a connection, when its exchange was read.
    pub fn peer(&self) -> Option<&Peer> {
        self.conversation.as_ref()?.peer.as_ref()
    }

    /// The descriptor in words, with both ends of a connection when known.
    fn describe(&self, fd: i32) -> String {
        match (&self.info, self.conversation.as_ref().and_then(|c| c.ends())) {
            (Some(info), Some(ends)) => format!("fd {fd} ({} {ends})", info.kind),
            (Some(info), None) => info.describe(fd),
            (None, _) => format!("fd {fd}"),
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

    /// Whether every verdict about it is calm (no flag raised or counting
    /// hot intervals) and nothing is judged apart from its writes: no ring,
    /// no exchange under way.
    fn is_calm(&self) -> bool {
        self.io_uring.is_none()
            && self.fds.values().all(|fd| fd.flag.is_calm() && fd.round_trip.is_calm() && fd.conversation.is_none())
            && self.syncs.values().all(|sync| sync.flag.is_calm())
    }

    /// Descriptors that are round-trip bound.
    pub fn round_trip_fds(&self) -> impl Iterator<Item = (&i32, &FdState)> {
        self.fds.iter().filter(|(_, fd)| fd.round_trip.is_raised()).map(|(fd, state)| (fd, &**state))
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
    /// The live processes the next interval's close judges: those that
    /// wrote, synced or were sampled in it, and those a verdict about is
    /// not yet calm. A node keeps thousands of processes that wrote once;
    /// judging each at every tick was most of the agent's CPU with 10,000.
    unsettled: HashSet<u32>,
}

impl Model {
    pub fn new(rules: Rules) -> Model {
        Model { rules, live: HashMap::new(), exited: Vec::new(), unsettled: HashSet::new() }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Takes a new measurement of the transition cost, from the next
    /// interval on.
    pub fn set_transition_cost(&mut self, cost_ns: f64) {
        self.rules.transition.cost_ns = cost_ns;
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

    /// Gives `pid` the identity it has after an exec: its series and report
    /// carry the new name, command and runtime from now on.
    pub fn rename(&mut self, identity: Identity) {
        if let Some(process) = self.live.get_mut(&identity.pid) {
            process.identity = identity;
        }
    }

    /// The io_uring state of `identity`, for the collector's io_uring deltas.
    pub fn io_uring(&mut self, identity: &Identity) -> &mut UringState {
        self.process_entry(identity).io_uring.get_or_insert_default()
    }

    fn process_entry(&mut self, identity: &Identity) -> &mut ProcessState {
        self.unsettled.insert(identity.pid);
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
                first_seen: Instant::now(),
                exited: None,
                unbatched: false,
                reasons: Vec::new(),
                ever_unbatched: false,
                last_reasons: Vec::new(),
                advice: Vec::new(),
                last_advice: Vec::new(),
                round_trip_bound: false,
                ever_round_trip_bound: false,
            })
        })
    }

    /// Socket and pipe descriptors of live processes that wrote since
    /// `since`: the ones whose buffer depth is worth sampling. A writer
    /// blocked on a full buffer makes no calls, so "recently" rather than
    /// "in the last interval". The last item says whether the descriptor
    /// was hot in the last interval, so that its exchange is worth reading.
    pub fn recent_writers(&self, since: Instant) -> impl Iterator<Item = (u32, i32, &FdInfo, bool)> {
        let min_rate = self.rules.hot_writer.min_calls_per_sec;
        self.live.values().flat_map(move |process| {
            process.fds.iter().filter(move |(_, state)| state.last_write >= since).filter_map(move |(&fd, state)| {
                let hot = state.metrics.calls_per_sec >= min_rate;
                Some((process.identity.pid, fd, state.info.as_ref()?, hot))
            })
        })
    }

    /// Records the depth sampled for `fd` of `pid`, and the protocol it
    /// revealed for a socket. The process is judged at the next close only
    /// when the sample tells the judgement something (a socket's protocol, a
    /// TCP exchange): a depth alone is read as it is by the report, the
    /// views and the exporters, and a writer that wrote once and idles (a
    /// pipe is sampled for ten intervals after its last write) is not judged
    /// again at every sample.
    pub fn set_depth(&mut self, pid: u32, fd: i32, depth: Depth) {
        let Some(state) = self.live.get_mut(&pid).and_then(|p| p.fds.get_mut(&fd)) else { return };
        let mut judged = false;
        if let (Some(info), Some(protocol)) = (&mut state.info, depth.protocol)
            && info.kind == FdKind::Socket
        {
            info.kind = protocol.fd_kind();
            judged = true;
        }
        if let Some(exchange) = depth.exchange {
            state.conversation.get_or_insert_default().observe(exchange);
            judged = true;
        }
        state.depth = Some(depth);
        if judged {
            self.unsettled.insert(pid);
        }
    }

    /// Names the local peers of connections: a process of this node whose
    /// descriptor is the socket at the other end. Only the processes that
    /// wrote are known, which a peer sending requests always did.
    fn find_local_peers(&mut self) {
        let wanted = |state: &FdState| {
            state
                .conversation
                .as_ref()
                .is_some_and(|c| c.peer_inode.is_some() && !matches!(c.peer, Some(Peer::Local { .. })))
        };
        // A descriptor with an exchange under way keeps its process unsettled.
        let mut unsettled = self.unsettled.iter().filter_map(|pid| self.live.get(pid));
        if !unsettled.any(|p| p.fds.values().any(|state| wanted(state))) {
            return;
        }
        let sockets: HashMap<u64, Peer> = self
            .live
            .values()
            .flat_map(|p| {
                p.fds.iter().filter_map(|(&fd, state)| {
                    let inode = state.info.as_ref().filter(|info| info.target.starts_with("socket:"))?.inode()?;
                    Some((inode, Peer::Local { pid: p.identity.pid, comm: p.identity.comm.clone(), fd }))
                })
            })
            .collect();
        for state in self.live.values_mut().flat_map(|p| p.fds.values_mut()) {
            if let Some(conversation) = state.conversation.as_mut()
                && let Some(peer) = conversation.peer_inode.and_then(|inode| sockets.get(&u64::from(inode)))
            {
                conversation.peer = Some(peer.clone());
            }
        }
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
        self.unsettled.remove(&pid);
        if let Some(mut process) = self.live.remove(&pid) {
            // Its last interval is judged, whatever it holds.
            judge(&mut process, seconds, &self.rules);
            process.exited = Some(Instant::now());
            self.exited.push(process);
        }
    }

    /// Ends an interval of `seconds` for every live process: computes its
    /// metrics and verdicts.
    pub fn close_interval(&mut self, seconds: f64) {
        self.find_local_peers();
        let (live, rules) = (&mut self.live, &self.rules);
        self.unsettled.retain(|pid| {
            let Some(process) = live.get_mut(pid) else { return false };
            // Kept while it is not settled.
            judge(process, seconds, rules)
        });
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

/// Computes the metrics of the interval that just ended and updates
/// verdicts. Returns false once the process is settled: the interval was
/// idle and every verdict is calm, so judging another idle one would
/// change nothing.
fn judge(process: &mut ProcessState, seconds: f64, rules: &Rules) -> bool {
    process.reasons.clear();
    let wrote = judge_fds(process, seconds, rules);
    let synced = judge_syncs(process, seconds, rules);
    if let Some(uring) = &mut process.io_uring {
        uring.close_interval(seconds, &rules.transition);
        for ring in &mut uring.rings {
            judge_ring(ring, seconds, rules, &mut process.reasons);
        }
    }
    let round_trip_bound = process.round_trip_fds().next().is_some();
    let mut rings = process.io_uring.iter().flat_map(|u| &u.rings);
    let unbatched =
        process.hot_fds().next().is_some() || rings.any(|ring| ring.unbatched.is_raised() || ring.trickle.is_raised());
    process.round_trip_bound = round_trip_bound;
    process.ever_round_trip_bound |= round_trip_bound;
    process.unbatched = unbatched;
    process.ever_unbatched |= unbatched;
    process.ever_sync_per_write |= process.sync_per_write;
    process.advice = if process.reasons.is_empty() { Vec::new() } else { advice::of_process(process) };
    if !process.reasons.is_empty() {
        process.last_reasons.clone_from(&process.reasons);
        process.last_advice.clone_from(&process.advice);
    }
    wrote || synced || !process.is_calm()
}

/// Updates a descriptor's flags with one interval, `hot` or not: the
/// un-batched flag for a stream, the round-trip flag for request/response.
fn judge_flags(state: &mut FdState, fd: i32, hot: bool, seconds: f64, rules: &Rules) {
    let judged = judged(state, rules.degraded);
    let window = rules.hot_writer.window();
    if judged == Judged::Undecided {
        state.undecided += u32::from(hot);
        state.flag.hold(hot, window);
        state.round_trip.hold(hot, window);
        return;
    }
    // Taken out while the descriptor is read to describe it (no copy).
    let (mut flag, mut round_trip) = (mem::take(&mut state.flag), mem::take(&mut state.round_trip));
    let what = || if rules.degraded { DEGRADED_WRITES.to_owned() } else { state.describe(fd) };
    let (metrics, conversation) = (&state.metrics, state.conversation.as_deref());
    flag.update(hot && judged == Judged::Stream, window, |hot_in_window| {
        hot_reason(&what(), metrics, &held(hot_in_window, seconds, rules), rules)
    });
    round_trip.update(hot && judged == Judged::RoundTrip, window, |hot_in_window| {
        round_trip_reason(&what(), metrics, conversation, seconds, &held(hot_in_window, seconds, rules))
    });
    (state.flag, state.round_trip) = (flag, round_trip);
}

/// How a hot interval of a descriptor is judged, from its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// A stream (or a kind whose pattern cannot be read): may be un-batched.
    Stream,
    /// Request/response: may be round-trip bound, never un-batched.
    RoundTrip,
    /// A TCP socket whose exchange is still being read: neither, for at
    /// most [`UNDECIDED_INTERVALS`] hot intervals.
    Undecided,
}

/// Hot intervals a TCP socket waits for its exchange before it is judged as
/// a stream: its first hot interval asks the depth sampler for the exchange,
/// whose first reading (in the next) is the base of the second's segments,
/// judged in the interval after. The waiting intervals count in both flags'
/// windows ([`Flag::hold`]), so a stream is flagged no later than before.
const UNDECIDED_INTERVALS: u32 = 2;

fn judged(state: &FdState, degraded: bool) -> Judged {
    let tcp = state.info.as_ref().is_some_and(|info| matches!(info.kind, FdKind::Tcp | FdKind::Socket));
    match state.pattern() {
        Some(Pattern::RequestResponse) => Judged::RoundTrip,
        None if tcp && !degraded && state.undecided < UNDECIDED_INTERVALS => Judged::Undecided,
        _ => Judged::Stream,
    }
}

/// The sync-per-write verdict of each descriptor that syncs (not in the
/// degraded mode, which sees no syncs).
/// Returns whether the process synced in the interval.
fn judge_syncs(process: &mut ProcessState, seconds: f64, rules: &Rules) -> bool {
    let mut all = SyncStats::ZERO;
    process.sync_per_write = false;
    for (&fd, state) in &mut process.syncs {
        let interval = state.close();
        all.add(&interval);
        state.metrics = SyncMetrics::of(&interval, seconds);
        let metrics = &state.metrics;
        let what = state.describe(fd);
        let hot = sync::is_sync_per_write(metrics, &rules.sync);
        state.flag.update(hot, rules.hot_writer.window(), |hot_in_window| {
            sync::reason(&what, metrics, seconds * f64::from(hot_in_window))
        });
        if let Some(reason) = state.flag.reason() {
            process.sync_per_write = true;
            process.reasons.push(reason.to_owned());
        }
    }
    process.sync_metrics = SyncMetrics::of(&all, seconds);
    all != SyncStats::ZERO
}

/// Returns whether the process wrote in the interval.
fn judge_fds(process: &mut ProcessState, seconds: f64, rules: &Rules) -> bool {
    let mut all = WriteStats::ZERO;
    for (&fd, state) in &mut process.fds {
        let interval = state.interval.close(&state.total);
        all.add(&interval);
        state.metrics = BatchingMetrics::of(&interval, seconds, &rules.transition);
        if let Some(conversation) = &mut state.conversation {
            conversation.close_interval();
        }
        let hot = if rules.degraded {
            is_hot_by_averages(&state.metrics, &rules.hot_writer)
        } else {
            is_hot_unbatched(&state.metrics, &rules.hot_writer)
        };
        judge_flags(state, fd, hot, seconds, rules);
        if interval.total_calls() > 0 {
            state.timer = TimerFlush::detect(&state.total, &rules.timer_flush);
        }
        process
            .reasons
            .extend([state.flag.reason(), state.round_trip.reason()].into_iter().flatten().map(str::to_owned));
    }
    process.metrics = BatchingMetrics::of(&all, seconds, &rules.transition);
    all != WriteStats::ZERO
}

fn judge_ring(ring: &mut RingState, seconds: f64, rules: &Rules, reasons: &mut Vec<String>) {
    let window = rules.hot_writer.window();
    let m = &ring.metrics;
    let name = ring.fd.map_or_else(|| "io_uring ring (fd unknown)".to_owned(), |fd| format!("io_uring ring fd {fd}"));
    ring.unbatched.update(is_unbatched_ring(m, &rules.hot_writer), window, |hot_in_window| {
        format!(
            "{name}: {:.0} io_uring_enter calls/s submitting 1 SQE each (median), {}; \
             batching to {} SQEs per enter would save {:.3} cores",
            m.submitting_enters_per_sec,
            held(hot_in_window, seconds, rules),
            rules.transition.batch_target,
            m.saving_cores,
        )
    });
    ring.trickle.update(is_sqpoll_trickle(m, &rules.io_uring), window, |hot_in_window| {
        format!(
            "{name} (SQPOLL): its poller fell asleep and was woken {:.0} times/s, {}, for {:.0} SQEs/s: \
             zero-syscall submission does not hold on this trickle load, which SQPOLL does not suit",
            m.wakeups_per_sec,
            held(hot_in_window, seconds, rules),
            m.sqes_per_sec,
        )
    });
    reasons.extend([ring.unbatched.reason(), ring.trickle.reason()].into_iter().flatten().map(str::to_owned));
}

/// What the degraded mode's writes are, in reasons.
const DEGRADED_WRITES: &str = "all writes (degraded mode: /proc/PID/io averages, per-fd and records per call unknown)";

/// How long a flagged pattern held, in words: "for 3 s of the last 10 s".
fn held(hot_in_window: u32, seconds: f64, rules: &Rules) -> String {
    format!(
        "for {:.0} s of the last {:.0} s",
        seconds * f64::from(hot_in_window),
        seconds * f64::from(rules.hot_writer.window_intervals)
    )
}

/// Why a descriptor is flagged, in words a user can act on.
fn hot_reason(what: &str, m: &BatchingMetrics, held: &str, rules: &Rules) -> String {
    let size = if rules.degraded {
        format!("{:.0} B per call on average", m.mean_bytes_per_call)
    } else {
        let records = figure(m.median_records_per_call.unwrap_or(0.0));
        let plural = if records == "1" { "" } else { "s" };
        format!("median {records} record{plural} and {} B per call", figure(m.median_bytes_per_call.unwrap_or(0.0)))
    };
    format!(
        "{what}: {:.0} writes/s, {size}, {held}; batching to {} records per call would save {:.3} cores",
        m.calls_per_sec, rules.transition.batch_target, m.saving_cores,
    )
}

/// Why a descriptor is round-trip bound, and who could batch instead.
fn round_trip_reason(
    what: &str,
    m: &BatchingMetrics,
    conversation: Option<&Conversation>,
    seconds: f64,
    held: &str,
) -> String {
    let (data_in, data_out) = conversation.map_or((0, 0), |c| (c.data_in, c.data_out));
    let round_trips = data_in.min(data_out) as f64 / seconds;
    let per_trip = if round_trips > 0.0 { m.calls_per_sec / round_trips } else { 0.0 };
    let messages = if (0.5..1.5).contains(&per_trip) {
        "one message each way".to_owned()
    } else {
        format!("{} writes per round trip", figure(per_trip))
    };
    let peer =
        conversation.and_then(|c| c.peer.as_ref()).map_or_else(String::new, |p| format!(" (peer: {})", p.describe()));
    format!(
        "{what}: {round_trips:.0} round trips/s with {messages}, {held}; not an un-batched writer: batching here \
         needs the peer to pipeline requests{peer}"
    )
}

/// A median as a person reads it: whole when it is (nearly) whole, else
/// with one decimal.
fn figure(value: f64) -> String {
    if (value - value.round()).abs() < 0.05 { format!("{value:.0}") } else { format!("{value:.1}") }
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
        let identity = Identity {
            pid: 10,
            start_ticks: 1,
            comm: "db".into(),
            command: "db".into(),
            container: None,
            runtime: None,
        };
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
        let identity =
            Identity { pid: 10, start_ticks: 1, comm: "w".into(), command: "w".into(), container: None, runtime: None };
        let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[1]".into(), synced_writes: false };
        let mut model = model();
        let record = |model: &mut Model, n| model.record(&identity, 3, Some(&pipe), &writes(n));

        // First written in this interval, twice.
        record(&mut model, 5);
        record(&mut model, 7);
        model.close_interval(1.0);
        assert_eq!(calls(&model), (12, 12));
        // Idle, and again: the second idle interval has nothing to judge.
        model.close_interval(1.0);
        assert_eq!(calls(&model), (0, 12));
        assert!(!model.unsettled.contains(&10));
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

    #[test]
    fn a_depth_alone_does_not_keep_an_idle_writer_to_judge() {
        let identity =
            Identity { pid: 10, start_ticks: 1, comm: "w".into(), command: "w".into(), container: None, runtime: None };
        let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[1]".into(), synced_writes: false };
        let socket = FdInfo { kind: FdKind::Socket, target: "socket:[2]".into(), synced_writes: false };
        let mut model = model();
        model.record(&identity, 3, Some(&pipe), &writes(1));
        model.record(&identity, 4, Some(&socket), &writes(1));
        model.close_interval(1.0);
        model.close_interval(1.0);
        assert!(!model.unsettled.contains(&10), "settled once idle");
        let depth =
            |protocol| Depth { queued_bytes: 1, charged_bytes: 1, capacity_bytes: 65536, protocol, exchange: None };
        model.set_depth(10, 3, depth(None));
        assert!(!model.unsettled.contains(&10), "a pipe's fill changes no verdict");
        assert_eq!(model.process(10).unwrap().fds[&3].depth, Some(depth(None)), "and is kept for the views");
        model.set_depth(10, 4, depth(Some(crate::depth::SocketProtocol::Unix)));
        assert!(model.unsettled.contains(&10), "a socket's protocol is judged");
        assert_eq!(model.process(10).unwrap().fds[&4].info.as_ref().map(|info| info.kind), Some(FdKind::Unix));
    }

    /// A TCP connection 127.0.0.1:6379 ↔ 127.0.0.1:50122 that carried
    /// `data_in` and `data_out` data segments in all.
    fn exchange(data_in: u32, data_out: u32, peer_inode: Option<u32>) -> Depth {
        Depth {
            queued_bytes: 0,
            charged_bytes: 0,
            capacity_bytes: 1 << 20,
            protocol: Some(crate::depth::SocketProtocol::Tcp),
            exchange: Some(crate::depth::Exchange {
                local: "127.0.0.1:6379".parse().unwrap(),
                remote: "127.0.0.1:50122".parse().unwrap(),
                data_segments_in: data_in,
                data_segments_out: data_out,
                peer_inode,
            }),
        }
    }

    /// Five intervals of 10,000 writes of 100 B on fd 8 of pid 10, its
    /// exchange read from the second on, `per_interval` segments (in, out)
    /// each; the client, pid 20, writes to socket 77.
    fn server(per_interval: (u32, u32)) -> Model {
        let server = Identity {
            pid: 10,
            start_ticks: 1,
            comm: "srv".into(),
            command: "srv".into(),
            container: None,
            runtime: None,
        };
        let client = Identity {
            pid: 20,
            start_ticks: 1,
            comm: "cli".into(),
            command: "cli".into(),
            container: None,
            runtime: None,
        };
        let socket = |inode| FdInfo { kind: FdKind::Socket, target: format!("socket:[{inode}]"), synced_writes: false };
        let mut model = model();
        for i in 0..5 {
            if i > 0 {
                model.set_depth(10, 8, exchange(per_interval.0 * i, per_interval.1 * i, Some(77)));
            }
            model.record(&server, 8, Some(&socket(76)), &Write { calls: 10_000, ..Write::HOT }.stats());
            model.record(&client, 5, Some(&socket(77)), &Write { calls: 10_000, ..Write::HOT }.stats());
            model.close_interval(1.0);
        }
        model
    }

    #[test]
    fn a_hot_request_response_descriptor_is_round_trip_bound_not_unbatched() {
        let model = server((9800, 9800));
        let process = model.process(10).unwrap();
        let fd = &process.fds[&8];
        assert_eq!(fd.pattern(), Some(Pattern::RequestResponse));
        assert_eq!(fd.peer(), Some(&Peer::Local { pid: 20, comm: "cli".into(), fd: 5 }));
        assert!(!process.unbatched && !process.ever_unbatched, "{:?}", process.reasons);
        assert!(process.round_trip_bound);
        assert_eq!(
            process.reasons,
            ["fd 8 (tcp 127.0.0.1:6379 ↔ 127.0.0.1:50122): 9800 round trips/s with one message each way, for 5 s \
              of the last 10 s; not an un-batched writer: batching here needs the peer to pipeline requests \
              (peer: pid 20 (cli) fd 5)"]
        );
    }

    #[test]
    fn an_idle_flagged_writer_is_still_judged_until_a_window_of_calm_clears_it() {
        let writer =
            Identity { pid: 10, start_ticks: 1, comm: "w".into(), command: "w".into(), container: None, runtime: None };
        let pipe = FdInfo { kind: FdKind::Pipe, target: "pipe:[1]".into(), synced_writes: false };
        let mut model = model();
        for _ in 0..3 {
            model.record(&writer, 3, Some(&pipe), &Write { calls: 10_000, ..Write::HOT }.stats());
            model.close_interval(1.0);
        }
        assert!(model.process(10).unwrap().unbatched);
        let window = model.rules().hot_writer.window_intervals;
        for _ in 1..window {
            model.close_interval(1.0);
            assert!(model.process(10).unwrap().unbatched && model.unsettled.contains(&10), "held through the window");
        }
        model.close_interval(1.0);
        assert!(
            !model.process(10).unwrap().unbatched && !model.unsettled.contains(&10),
            "cleared after a window of calm"
        );
    }

    #[test]
    fn a_hot_stream_descriptor_is_unbatched() {
        let model = server((0, 5000));
        let process = model.process(10).unwrap();
        assert_eq!(process.fds[&8].pattern(), Some(Pattern::Stream));
        assert!(process.unbatched && !process.round_trip_bound);
        assert!(process.reasons[0].starts_with("fd 8 (tcp 127.0.0.1:6379 ↔ 127.0.0.1:50122): 10000 writes/s"));
    }
}
