//! The agent's data path in one place: probes → maps → collector → model.
//!
//! Each [`Agent::tick`] reads the maps once, attributes every delta to the
//! process that made it (telling a reused pid from the process it replaced),
//! retires processes that exited, and closes the model's interval.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant, SystemTime},
};

use agent_common::key::FdKey;

use crate::{
    attribution::fds::FdResolver,
    attribution::identity::{self, Identity, ProcSweep},
    bpf::collector::{CollectError, Collector, ProbeErrors, Reading},
    bpf::preflight::{self, PreflightError},
    bpf::probes::{AttachFailure, AttachMode, ProbeError, Probes},
    config::Config,
    degraded::{Degraded, FULL_MODE_NEEDS, ProcPoller},
    depth::fdinfo::RingFdinfo,
    depth::{Depth, DepthKey, DepthRequest, DepthSampler},
    error_chain::error_chain,
    model::{Model, Rules, io_uring::UringState},
    runtime::RuntimeDetector,
    transition::{self, IdleWatch, REMEASURE_EVERY},
};

/// Where the kernel tells exits, every known process is still looked up in
/// `/proc` once every this many ticks, for any exit it could not record
/// (and at the next tick whenever one may have been missed).
const SWEEP_TICKS: u64 = 30;

/// What one tick learns as it goes.
struct Tick {
    seconds: f64,
    /// Whether every known process is looked up in `/proc` this tick, to
    /// find exits the kernel did not tell.
    sweep: bool,
    /// Whether the processes that wrote this tick have their start times
    /// checked (else one that wrote is taken to run on unless the kernel saw
    /// it exit): at every sweep, and at every tick while the kernel's maps
    /// may have forgotten a process, so a reused pid is never taken for the
    /// process it replaced. Costs one `/proc` read per writer, not per
    /// known process.
    check_writers: bool,
    /// Whether each process met so far runs.
    running: HashMap<u32, bool>,
    /// Processes the kernel saw exit.
    exited: HashSet<u32>,
}

/// A socket or pipe keeps having its depth sampled for this many intervals
/// after its last write: a writer blocked on a full buffer makes no calls.
const DEPTH_WINDOW_INTERVALS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Probes(#[from] ProbeError),
}

/// What the agent knows about the node it runs on.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Cost of one kernel transition, in nanoseconds.
    pub transition_cost_ns: f64,
    /// Whether that cost was measured here (or taken from the config).
    pub transition_cost_measured: bool,
    /// When it was last measured (at start, then while the node is idle).
    pub transition_measured_at: Option<SystemTime>,
    /// How syscall exits are hooked (`None` in the degraded mode), and why
    /// not as preferred.
    pub attach_mode: Option<AttachMode>,
    pub attach_fallback: Option<String>,
    pub attached: Vec<String>,
    pub failed: Vec<AttachFailure>,
    pub mounted_tracefs: bool,
    /// `kernel.io_uring_disabled`: 0 allowed, 1 only for a group, 2 off;
    /// `None` where the kernel has no such setting.
    pub io_uring_disabled: Option<u8>,
    /// Set when the probes could not run and `/proc` is polled instead.
    pub degraded: Option<Degraded>,
}

impl NodeInfo {
    /// What is known before any probe is loaded.
    fn new((transition_cost_ns, transition_measured_at): (f64, Option<SystemTime>)) -> NodeInfo {
        NodeInfo {
            transition_cost_ns,
            transition_cost_measured: transition_measured_at.is_some(),
            transition_measured_at,
            attach_mode: None,
            attach_fallback: None,
            attached: Vec::new(),
            failed: Vec::new(),
            mounted_tracefs: false,
            io_uring_disabled: std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            degraded: None,
        }
    }
}

/// The transition cost from the config, else measured now: (ns, when
/// measured).
fn transition_cost(config: &Config) -> (f64, Option<SystemTime>) {
    match config.transition_cost_ns {
        Some(cost) => (cost, None),
        None => {
            let measured = transition::measure();
            (measured.cost_ns, Some(measured.at))
        }
    }
}

/// Where the deltas come from.
enum Source {
    /// The BPF probes, attached while this lives, and their maps' reader
    /// (boxed: the other variant is small).
    Probes { probes: Box<Probes>, collector: Box<Collector> },
    /// `/proc/PID/io` polling, where BPF is refused.
    Proc(ProcPoller),
}

pub struct Agent {
    source: Source,
    fds: FdResolver,
    /// `None` where netlink sock_diag could not be set up (said at start).
    depth: Option<DepthSampler>,
    /// Depth errors already logged, so each is said once.
    depth_errors: HashSet<String>,
    interval: Duration,
    /// Whether the kernel tells exits; else `/proc` is checked every tick.
    tracks_exits: bool,
    /// How many processes the kernel's maps keep (`maps.max_processes`):
    /// past it, they forget processes, whose exits then go unrecorded.
    max_processes: usize,
    /// Exits the kernel did not tell that a sweep found.
    exits_missed: u64,
    /// Whether the node is idle enough to measure the transition cost again.
    idle: IdleWatch,
    ticks: u64,
    identities: HashMap<u32, Identity>,
    /// Which known processes a sweep finds running.
    proc_sweep: ProcSweep,
    /// Each executable's runtime, read once.
    runtimes: RuntimeDetector,
    model: Model,
    last_tick: Instant,
    node: NodeInfo,
    probe_errors: ProbeErrors,
    tracked: usize,
    /// Idle (process, fd) pairs removed from the kernel maps since the start.
    evicted: usize,
}

impl Agent {
    /// Starts with the BPF probes, or, where they cannot run, in the
    /// degraded mode, saying why (a refused `attach` choice stays an error).
    pub fn start(config: &Config) -> Result<Agent, StartError> {
        preflight::check_host_pid_namespace()?;
        match Agent::start_with_probes(config) {
            Err(StartError::Probes(refused @ ProbeError::Refused(..))) => Err(StartError::Probes(refused)),
            Err(error) => Ok(Agent::start_degraded(config, &error)),
            started => started,
        }
    }

    /// Checks the node, measures the transition cost, then loads and attaches
    /// the probes: counting starts when this returns.
    pub fn start_with_probes(config: &Config) -> Result<Agent, StartError> {
        let preflight = preflight::check()?;
        // Measured before attaching, so the probes do not inflate it.
        let transition = transition_cost(config);
        let mut probes = Probes::load(&config.maps, config.attach)?;
        let collector = Collector::new(probes.take_maps()?, config.maps.evict_idle_after);
        let node = NodeInfo {
            attach_mode: Some(probes.mode),
            attach_fallback: probes.fallback.clone(),
            attached: probes.attached.clone(),
            failed: probes.failed.clone(),
            mounted_tracefs: preflight.mounted_tracefs,
            ..NodeInfo::new(transition)
        };
        Ok(Agent::assemble(config, Source::Probes { probes: Box::new(probes), collector: Box::new(collector) }, node))
    }

    /// Starts polling `/proc` because the probes could not start.
    fn start_degraded(config: &Config, error: &StartError) -> Agent {
        let degraded = Degraded { reason: error_chain(error), needs: FULL_MODE_NEEDS };
        let node = NodeInfo { degraded: Some(degraded), ..NodeInfo::new(transition_cost(config)) };
        let mut agent = Agent::assemble(config, Source::Proc(ProcPoller::default()), node);
        // The first poll only sets every process's baseline.
        agent.tick().expect("polling /proc cannot fail as a whole");
        agent
    }

    fn assemble(config: &Config, source: Source, node: NodeInfo) -> Agent {
        let tracks_exits = matches!(&source, Source::Probes { probes, .. } if probes.tracks_exits());
        let rules = Rules::new(config, node.transition_cost_ns, node.degraded.is_some());
        let depth =
            DepthSampler::new().inspect_err(|e| tracing::warn!("buffer depth of sockets and pipes is off: {e}")).ok();
        Agent {
            source,
            fds: FdResolver::default(),
            depth,
            depth_errors: HashSet::new(),
            interval: config.interval,
            tracks_exits,
            max_processes: config.maps.max_processes as usize,
            exits_missed: 0,
            idle: IdleWatch::default(),
            ticks: 0,
            identities: HashMap::new(),
            proc_sweep: ProcSweep::default(),
            runtimes: RuntimeDetector::default(),
            model: Model::new(rules),
            last_tick: Instant::now(),
            node,
            probe_errors: ProbeErrors::default(),
            tracked: 0,
            evicted: 0,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Totals of what the kernel side could not record.
    pub fn probe_errors(&self) -> ProbeErrors {
        self.probe_errors
    }

    /// The (process, fd) keys in the kernel's write statistics right now
    /// (none in the degraded mode).
    pub fn kernel_write_keys(&self) -> Vec<FdKey> {
        match &self.source {
            Source::Probes { collector, .. } => collector.kernel_write_keys(),
            Source::Proc(_) => Vec::new(),
        }
    }

    /// Whether buffer depths are sampled (netlink sock_diag could be set up).
    pub fn samples_depth(&self) -> bool {
        self.depth.is_some()
    }

    /// (process, fd) pairs the kernel tracks right now.
    pub fn tracked_fds(&self) -> usize {
        self.tracked
    }

    /// Idle (process, fd) pairs removed from the kernel maps so far.
    pub fn evicted_fds(&self) -> usize {
        self.evicted
    }

    /// Reads the maps (or polls `/proc`) and closes one interval of the model.
    pub fn tick(&mut self) -> Result<(), CollectError> {
        // Buffers are sampled before the maps are read. A process exits
        // (`sched_process_exit`) before it closes its descriptors, and a
        // socket pair closing in the middle of a sample reads as empty: so
        // a sample taken before a reading that does not show the process
        // gone was taken from its live descriptors.
        let depths = self.sample_depths(Instant::now());
        let reading = match &mut self.source {
            Source::Probes { probes, collector } => {
                let mut reading = collector.read()?;
                // Reading them takes a descriptor per program: at the open
                // files limit that fails, and the tick goes on without them.
                reading.probe_errors.recursion_misses = probes.recursion_misses().unwrap_or_else(|error| {
                    tracing::warn!("{error}; recursion misses stay at their last reading");
                    self.probe_errors.recursion_misses
                });
                reading
            }
            Source::Proc(poller) => Reading { writes: poller.read(), ..Reading::default() },
        };
        let now = Instant::now();
        let mut tick = Tick {
            sweep: self.sweeps_now(&reading.probe_errors),
            check_writers: self.checks_writers_now(&reading.probe_errors),
            seconds: now.duration_since(self.last_tick).as_secs_f64(),
            running: HashMap::new(),
            exited: reading.exited.clone(),
        };
        self.last_tick = now;
        self.ticks += 1;
        self.probe_errors = ProbeErrors { exits_missed: self.exits_missed, ..reading.probe_errors };
        self.tracked = reading.tracked;
        self.evicted += reading.evicted;

        self.record(&reading, &mut tick);
        let gone = self.gone(&tick);
        for &pid in reading.execed.iter().filter(|pid| !gone.contains(pid)) {
            self.reread_identity(pid);
        }
        for (key, depth) in depths.into_iter().filter(|(key, _)| !gone.contains(&key.pid)) {
            self.model.set_depth(key.pid, key.fd, depth);
        }
        for (&pid, _) in tick.running.iter().filter(|(_, running)| **running) {
            self.model.sample_ring_depths(pid, RingFdinfo::read);
        }
        if !gone.is_empty() {
            if let Source::Probes { collector, .. } = &mut self.source {
                let last = collector.drain(&gone);
                self.record(&last, &mut tick);
            }
            for pid in gone {
                self.retire(pid, tick.seconds);
            }
        }
        self.model.close_interval(tick.seconds);
        self.probe_errors.exits_missed = self.exits_missed;
        self.measure_transition_when_idle();
        Ok(())
    }

    /// Measures the transition cost again once it is [`REMEASURE_EVERY`]
    /// old and the node was idle over the last tick, keeping the lowest
    /// estimate: one taken on a busy node is only ever too high. A
    /// configured cost is left as it is.
    fn measure_transition_when_idle(&mut self) {
        let Some(at) = self.node.transition_measured_at else { return };
        if at.elapsed().unwrap_or_default() < REMEASURE_EVERY || !self.idle.idle_since_last() {
            return;
        }
        let measured = transition::measure();
        let cost_ns = self.node.transition_cost_ns.min(measured.cost_ns);
        self.node.transition_cost_ns = cost_ns;
        self.node.transition_measured_at = Some(measured.at);
        self.model.set_transition_cost(cost_ns);
    }

    /// Whether this tick checks every known process in `/proc`: always when
    /// the kernel does not tell exits; else every `SWEEP_TICKS`, and as soon
    /// as the exit map was full. Not at every tick while the kernel's maps
    /// may forget processes: on a node with more processes than they hold,
    /// that read every process's `/proc` entry each second (21% of a core
    /// with 10,000, measured by the bench); their writers are checked instead.
    fn sweeps_now(&self, errors: &ProbeErrors) -> bool {
        !self.tracks_exits
            || self.ticks.is_multiple_of(SWEEP_TICKS)
            || errors.exit_map_full > self.probe_errors.exit_map_full
    }

    /// Whether this tick checks the start times of the processes that wrote
    /// (see [`Tick::check_writers`]): at a sweep, and while the agent knows as
    /// many processes as the kernel's maps hold.
    fn checks_writers_now(&self, errors: &ProbeErrors) -> bool {
        self.sweeps_now(errors) || self.identities.len() >= self.max_processes
    }

    /// The known processes that have exited: those the kernel saw exit, those
    /// found gone while attributing this tick's deltas, and, when the kernel
    /// does not tell exits or at every sweep, those `/proc` no longer shows.
    fn gone(&mut self, tick: &Tick) -> HashSet<u32> {
        if tick.sweep {
            self.proc_sweep.start();
        }
        let mut swept_gone = 0;
        let found_gone: Vec<u32> = self
            .identities
            .iter()
            .filter(|(pid, identity)| match tick.running.get(pid) {
                Some(running) => !running,
                None => {
                    let gone = tick.sweep && !self.proc_sweep.is_alive(identity);
                    swept_gone += u64::from(gone && !tick.exited.contains(pid));
                    gone
                }
            })
            .map(|(&pid, _)| pid)
            .collect();
        // A process that wrote nothing this tick and is gone without the
        // kernel saying so: its exit was missed (or came in the few
        // milliseconds since the kernel's exits were read).
        if self.tracks_exits {
            self.exits_missed += swept_gone;
        }
        // Exits of processes never attributed still have kernel entries to drain.
        found_gone.into_iter().chain(tick.exited.iter().copied()).collect()
    }

    /// Attributes a reading's deltas to the processes that made them.
    fn record(&mut self, reading: &Reading, tick: &mut Tick) {
        for (key, delta) in &reading.writes {
            let running = self.resolve_once(key.tgid, tick);
            let info = if running { self.fds.resolve(key.tgid, key.fd) } else { self.fds.cached(key.tgid, key.fd) };
            self.model.record(&self.identities[&key.tgid], key.fd, info, delta);
        }
        for (key, delta) in &reading.syncs {
            let running = self.resolve_once(key.tgid, tick);
            let info = match key.fd {
                ..0 => None,
                fd if running => self.fds.resolve(key.tgid, fd),
                fd => self.fds.cached(key.tgid, fd),
            };
            self.model.record_sync(&self.identities[&key.tgid], key.fd, info, delta);
        }
        for (key, delta) in &reading.uring_setups {
            self.uring_of(*key, tick).record_setups(delta);
        }
        for (key, delta) in &reading.uring_enters {
            self.uring_of(key.tgid, tick).record_enters(key.fd, delta);
        }
        for (key, delta) in &reading.uring_ops {
            let setup = reading.rings.get(&key.ctx).filter(|setup| setup.tgid == key.tgid);
            self.uring_of(key.tgid, tick).record_ops(key.ctx, setup, delta);
        }
        for (key, count) in &reading.uring_cqe_errors {
            self.uring_of(key.ring.tgid, tick).record_cqe_error(key.errno, *count);
        }
    }

    /// Samples how full the buffers of recent socket and pipe writers are.
    fn sample_depths(&mut self, now: Instant) -> Vec<(DepthKey, Depth)> {
        let Some(sampler) = &mut self.depth else { return Vec::new() };
        let since = now.checked_sub(self.interval * DEPTH_WINDOW_INTERVALS).unwrap_or(now);
        let requests: Vec<DepthRequest> = self
            .model
            .recent_writers(since)
            .filter_map(|(pid, fd, info, hot)| Some(DepthRequest::for_fd(pid, fd, info)?.with_exchange(hot)))
            .collect();
        let round = sampler.sample(&requests);
        for error in round.errors {
            let text = error.to_string();
            if self.depth_errors.insert(text.clone()) {
                tracing::warn!("buffer depth: {text}");
            }
        }
        round.depths
    }

    /// Resolves `pid`'s identity once per tick; returns whether it runs.
    /// Where the kernel tells exits, a known process that did not exit is
    /// taken to run on, without a look at `/proc`, unless the tick checks writers.
    fn resolve_once(&mut self, pid: u32, tick: &mut Tick) -> bool {
        if let Some(&running) = tick.running.get(&pid) {
            return running;
        }
        let known = self.identities.contains_key(&pid);
        let running = match (known, tick.exited.contains(&pid)) {
            (true, false) if self.tracks_exits && !tick.check_writers => true,
            (true, true) => false,
            _ => self.resolve_identity(pid, tick.seconds),
        };
        tick.running.insert(pid, running);
        running
    }

    /// The io_uring state of `pid` in the model.
    fn uring_of(&mut self, pid: u32, tick: &mut Tick) -> &mut UringState {
        self.resolve_once(pid, tick);
        self.model.io_uring(&self.identities[&pid])
    }

    /// Makes `self.identities[pid]` the process that owns `pid` now; returns
    /// whether it is still running.
    fn resolve_identity(&mut self, pid: u32, seconds: f64) -> bool {
        if let Some(known) = self.identities.get(&pid) {
            match identity::start_ticks(pid) {
                Some(start) if known.start_ticks == start => return true,
                // It wrote, then exited: its last delta is still its own.
                None => return false,
                // The pid now belongs to another process: close the old one
                // first. Where the kernel tells exits, it missed this one.
                Some(_) => {
                    self.exits_missed += u64::from(self.tracks_exits);
                    self.model.exit(pid, seconds);
                }
            }
        }
        // A new process's identity holds its start time: read once.
        let identity = match Identity::read_at(pid, &mut self.runtimes) {
            Some((identity, inode)) => {
                self.proc_sweep.confirm(pid, inode);
                identity
            }
            None => Identity::exited(pid, self.kernel_comm(pid)),
        };
        let alive = identity.start_ticks != 0;
        self.fds.forget(pid);
        self.identities.insert(pid, identity);
        alive
    }

    /// Reads `pid` again after an exec, if the agent knows it: same process
    /// (same start time), new program.
    fn reread_identity(&mut self, pid: u32) {
        let Some(known) = self.identities.get(&pid) else { return };
        let Some(identity) = Identity::read(pid, &mut self.runtimes) else { return };
        if identity.start_ticks == known.start_ticks {
            // Close-on-exec descriptors are gone: resolve them afresh.
            self.fds.forget(pid);
            self.model.rename(identity.clone());
            self.identities.insert(pid, identity);
        }
    }

    /// The name the kernel recorded for `pid`, in full mode.
    fn kernel_comm(&self, pid: u32) -> Option<String> {
        match &self.source {
            Source::Probes { collector, .. } => collector.kernel_comm(pid),
            Source::Proc(_) => None,
        }
    }

    /// Forgets a process that exited, in the model and the caches (the
    /// collector has drained its kernel entries).
    fn retire(&mut self, pid: u32, seconds: f64) {
        self.model.exit(pid, seconds);
        self.fds.forget(pid);
        self.proc_sweep.forget(pid);
        self.identities.remove(&pid);
    }
}
