//! The JSON report of `batchwatch record`: one document describing the node
//! and every process that wrote during the window. Its shape is documented
//! in `docs/report.md`; field names are part of the interface.

use std::collections::BTreeMap;

use agent_common::{
    sync::{SyncCall, SyncStats},
    write::{WriteStats, WriteSyscall},
};
use serde::Serialize;

use crate::{
    agent::Agent,
    attribution::identity::Identity,
    bpf::{collector::ProbeErrors, probes::AttachMode},
    model::{
        FdState, ProcessState, advice,
        classify::TimerFlush,
        exchange::{Pattern, Peer},
        io_uring::{RingMetrics, RingState, UringState},
        metrics::{BatchingMetrics, Drops, Quantiles, Transition},
        sync::{self, SyncErrors, SyncMetrics, SyncState},
    },
    runtime::Runtime,
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub batchwatch_version: &'static str,
    pub node: NodeReport,
    pub window: Window,
    pub processes: Vec<ProcessReport>,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub hostname: String,
    pub kernel: String,
    pub transition_cost_ns: f64,
    /// When it was last measured, in seconds since the Unix epoch; `null`
    /// when configured.
    pub transition_cost_measured_at: Option<f64>,
    /// `measured` at start-up, or `config`.
    pub transition_cost_source: &'static str,
    /// How syscall exits are hooked: `fexit`, `tracepoint` or `raw-tracepoint`;
    /// `null` in the degraded mode.
    pub attach_mode: Option<&'static str>,
    /// Set when BPF could not run and `/proc/PID/io` was polled instead:
    /// then there are no per-fd figures, histograms, outcomes or io_uring.
    pub degraded: Option<DegradedReport>,
    /// Why not the preferred way, when it was refused.
    pub attach_fallback: Option<String>,
    pub probes_attached: Vec<String>,
    pub probes_failed: Vec<FailedProbe>,
    /// What the kernel side could not record, one field per probe error
    /// kind (`stats_map_full`, `args_unreadable`, ...), at the node's level.
    #[serde(flatten)]
    pub probe_errors: ProbeErrors,
    /// Whether io_uring may be used here: `allowed`, `group-only`, `disabled`
    /// (from `kernel.io_uring_disabled`), or `unknown`.
    pub io_uring: &'static str,
}

#[derive(Debug, Serialize)]
pub struct DegradedReport {
    pub reason: String,
    pub needs: &'static str,
    /// What this mode cannot see (syncs among it).
    pub cannot_see: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FailedProbe {
    pub tracepoint: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Window {
    pub duration_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub command: String,
    pub exited: bool,
    pub write: WriteReport,
    pub drops: DropReport,
    pub transition_cores: f64,
    pub saving_cores: f64,
    pub unbatched: bool,
    pub reasons: Vec<String>,
    /// Whether any of its descriptors was round-trip bound during the window.
    pub round_trip_bound: bool,
    /// Its language runtime, from its executable and mapped libraries.
    pub runtime: Option<Runtime>,
    /// Present once the process synced (or wrote to an `O_SYNC`/`O_DSYNC` file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    /// One of its descriptors made each write durable on its own.
    pub sync_per_write: bool,
    /// What to change, for each of its last reasons, in its runtime's terms.
    pub advice: Vec<String>,
    pub fds: Vec<FdReport>,
    /// Present once the process set up or used io_uring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_uring: Option<UringReport>,
}

#[derive(Debug, Serialize)]
pub struct UringReport {
    pub enters: u64,
    pub enters_per_sec: f64,
    /// Enters that asked to submit, and those that only waited (or failed).
    pub submitting_enters: u64,
    pub waiting_enters: u64,
    pub sqes: u64,
    pub sqes_per_sec: f64,
    /// SQEs per submitting `io_uring_enter`, over the non-SQPOLL rings.
    pub sqes_per_enter: Distribution,
    pub syscalls_avoided_per_sec: f64,
    pub sqpoll: bool,
    /// Enters that woke an SQPOLL poller that had gone to sleep.
    pub wakeups: u64,
    pub sqes_by_class: BTreeMap<&'static str, u64>,
    pub cq_overflows: u64,
    pub failed_requests: u64,
    pub cqe_eagain: u64,
    /// Failed completions by errno name (EAGAIN apart).
    pub cqe_errors: BTreeMap<String, u64>,
    pub short_writes: u64,
    pub setups: u64,
    /// `io_uring_setup` refused with EPERM or ENOSYS: the process fell back or failed.
    pub denied_setups: u64,
    pub transition_cores: f64,
    pub rings: Vec<RingReport>,
}

#[derive(Debug, Serialize)]
pub struct RingReport {
    /// `null` for a ring created before batchwatch started that could not be
    /// matched to a descriptor.
    pub fd: Option<i32>,
    pub sqpoll: bool,
    pub sq_entries: Option<u32>,
    pub cq_entries: Option<u32>,
    pub enters: u64,
    pub sqes: u64,
    pub sqes_per_enter: Distribution,
    pub wakeups: u64,
    pub cq_overflows: u64,
    /// Queue occupancy at the last look, in % of the queue's entries.
    pub sq_depth_percent: Option<f64>,
    pub cq_depth_percent: Option<f64>,
    pub unbatched: bool,
    pub sqpoll_trickle: bool,
}

#[derive(Debug, Serialize)]
pub struct FdReport {
    pub fd: i32,
    pub kind: Option<&'static str>,
    pub target: Option<String>,
    pub write: WriteReport,
    pub drops: DropReport,
    pub unbatched: bool,
    pub timer_flush: Option<TimerFlush>,
    /// `stream`, `request_response`, or `null` while unknown.
    pub pattern: Option<Pattern>,
    /// The other end of a connection whose exchange was read.
    pub peer: Option<Peer>,
    pub round_trip_bound: bool,
    /// What to change, while the descriptor is flagged.
    pub advice: Vec<String>,
    /// Present once the descriptor synced (or, opened `O_SYNC`/`O_DSYNC`, wrote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    pub sync_per_write: bool,
}

/// What a process's or a descriptor's syncs made durable, how long they
/// took, and which failed.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub calls: u64,
    pub calls_by_syscall: BTreeMap<&'static str, u64>,
    pub calls_per_sec: f64,
    /// Writes and bytes made durable: the descriptor's writes since its previous sync.
    pub writes: u64,
    pub bytes: u64,
    pub writes_per_sync: Distribution,
    pub bytes_per_sync: Distribution,
    /// Each sync's duration, entry to exit.
    pub latency_ns: Distribution,
    /// Time between syncs of a descriptor.
    pub gap_ns: Distribution,
    /// Time spent in syncs per second of the window.
    pub wait_share: f64,
    pub errors: SyncErrors,
}

#[derive(Debug, Serialize)]
pub struct WriteReport {
    pub calls: u64,
    pub calls_by_syscall: BTreeMap<&'static str, u64>,
    pub calls_per_sec: f64,
    /// Bytes written.
    pub bytes: u64,
    pub bytes_requested: u64,
    pub records: u64,
    /// What the failed calls asked for, apart from `bytes_requested` and `records`.
    pub failed_bytes_requested: u64,
    pub failed_records: u64,
    pub bytes_per_call: Distribution,
    pub records_per_call: Distribution,
    pub gap_ns: Distribution,
}

/// Percentiles are log2 bucket upper edges (the value lies in `(p/2, p]`);
/// `null` when there was no sample. `mean` is exact; `median` is exact when
/// every sample lies in one bucket, else interpolated inside its bucket.
#[derive(Debug, Serialize)]
pub struct Distribution {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct DropReport {
    #[serde(flatten)]
    pub by_reason: Drops,
    pub total: u64,
}

impl Report {
    /// The report over the last `duration_s` seconds of `agent`'s model.
    pub fn build(agent: &Agent, duration_s: f64) -> Report {
        let node = agent.node();
        let mut processes: Vec<_> =
            agent.model().processes().map(|p| ProcessReport::build(p, duration_s, agent)).collect();
        processes.sort_by(|a, b| b.transition_cores.total_cmp(&a.transition_cores).then(a.pid.cmp(&b.pid)));
        Report {
            batchwatch_version: env!("CARGO_PKG_VERSION"),
            node: NodeReport {
                hostname: read_trimmed("/proc/sys/kernel/hostname"),
                kernel: read_trimmed("/proc/sys/kernel/osrelease"),
                transition_cost_ns: node.transition_cost_ns,
                transition_cost_measured_at: node
                    .transition_measured_at
                    .map(|at| at.duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()),
                transition_cost_source: if node.transition_cost_measured { "measured" } else { "config" },
                attach_mode: node.attach_mode.map(AttachMode::name),
                degraded: node.degraded.as_ref().map(|d| DegradedReport {
                    reason: d.reason.clone(),
                    needs: d.needs,
                    cannot_see: crate::degraded::CANNOT_SEE,
                }),
                attach_fallback: node.attach_fallback.clone(),
                probes_attached: node.attached.clone(),
                probes_failed: node
                    .failed
                    .iter()
                    .map(|f| FailedProbe { tracepoint: f.tracepoint.clone(), reason: f.reason.clone() })
                    .collect(),
                probe_errors: agent.probe_errors(),
                io_uring: match node.io_uring_disabled {
                    Some(0) => "allowed",
                    Some(1) => "group-only",
                    Some(_) => "disabled",
                    None => "unknown",
                },
            },
            window: Window { duration_s },
            processes,
        }
    }
}

impl ProcessReport {
    fn build(process: &ProcessState, seconds: f64, agent: &Agent) -> ProcessReport {
        let total = process.total();
        let transition = &agent.model().rules().transition;
        let metrics = BatchingMetrics::of(&total, seconds, transition);
        let io_uring = process.io_uring.as_ref().map(|uring| UringReport::build(uring, seconds, transition));
        let uring_cores = io_uring.as_ref().map_or(0.0, |u| u.transition_cores);
        let uring_saving = process.io_uring.as_ref().map_or(0.0, |u| u.total_metrics(seconds, transition).saving_cores);
        ProcessReport {
            pid: process.identity.pid,
            comm: process.identity.comm.clone(),
            command: process.identity.command.clone(),
            exited: process.exited.is_some(),
            write: WriteReport::build(&total, &metrics),
            drops: DropReport::build(&metrics),
            transition_cores: metrics.transition_cores + uring_cores,
            saving_cores: metrics.saving_cores + uring_saving,
            unbatched: process.ever_unbatched,
            reasons: process.last_reasons.clone(),
            round_trip_bound: process.ever_round_trip_bound,
            runtime: process.identity.runtime.clone(),
            sync: (!process.syncs.is_empty()).then(|| SyncReport::build(&process.sync_total(), seconds)),
            sync_per_write: process.ever_sync_per_write,
            advice: process.last_advice.clone(),
            fds: FdReport::all(process, seconds, agent),
            io_uring,
        }
    }
}

impl UringReport {
    fn build(uring: &UringState, seconds: f64, transition: &Transition) -> UringReport {
        let m = uring.total_metrics(seconds, transition);
        UringReport {
            enters: m.enters,
            enters_per_sec: m.enters_per_sec,
            submitting_enters: m.submitting_enters,
            waiting_enters: m.waiting_enters,
            sqes: m.sqes,
            sqes_per_sec: m.sqes_per_sec,
            sqes_per_enter: Distribution::of(m.sqes_per_enter, (m.enters > 0).then_some(m.mean_sqes_per_enter)),
            syscalls_avoided_per_sec: m.syscalls_avoided_per_sec,
            sqpoll: m.sqpoll,
            wakeups: m.wakeups,
            sqes_by_class: [("write", m.write_sqes), ("read", m.read_sqes), ("other", m.other_sqes)].into(),
            cq_overflows: m.cq_overflows,
            failed_requests: m.failed,
            cqe_eagain: m.cqe_eagain,
            cqe_errors: uring.cqe_errors.iter().map(|(&errno, &n)| (errno_name(errno), n)).collect(),
            short_writes: m.short_writes,
            setups: uring.setups.ok,
            denied_setups: uring.denied_setups(),
            transition_cores: m.transition_cores,
            rings: uring.rings.iter().map(|ring| RingReport::build(ring, seconds, transition)).collect(),
        }
    }
}

impl RingReport {
    fn build(ring: &RingState, seconds: f64, transition: &Transition) -> RingReport {
        let m = RingMetrics::of(&ring.total_enters, &ring.total_ops, ring.sqpoll(), seconds, transition);
        RingReport {
            fd: ring.fd,
            sqpoll: m.sqpoll,
            sq_entries: ring.setup.map(|s| s.sq_entries).or(ring.depth.map(|d| d.sq_entries)),
            cq_entries: ring.setup.map(|s| s.cq_entries).or(ring.depth.map(|d| d.cq_entries)),
            enters: m.enters,
            sqes: m.sqes,
            sqes_per_enter: Distribution::of(m.sqes_per_enter, (m.enters > 0).then_some(m.mean_sqes_per_enter)),
            wakeups: m.wakeups,
            cq_overflows: m.cq_overflows,
            sq_depth_percent: ring.depth.map(|d| d.sq_percent()),
            cq_depth_percent: ring.depth.map(|d| d.cq_percent()),
            unbatched: ring.unbatched.is_raised(),
            sqpoll_trickle: ring.trickle.is_raised(),
        }
    }
}

/// `11` → `EAGAIN`; unknown numbers as `errno 123`.
fn errno_name(errno: u32) -> String {
    let name = match errno as i32 {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIME => "ETIME",
        libc::ECANCELED => "ECANCELED",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

impl FdReport {
    /// Every descriptor that wrote or synced, in fd order; the pseudo-
    /// descriptors of process-wide syncs (negative) come first.
    fn all(process: &ProcessState, seconds: f64, agent: &Agent) -> Vec<FdReport> {
        let fds: std::collections::BTreeSet<i32> = process.fds.keys().chain(process.syncs.keys()).copied().collect();
        fds.into_iter()
            .map(|fd| {
                FdReport::build(
                    fd,
                    process.fds.get(&fd).map(|b| &**b),
                    process.syncs.get(&fd).map(|b| &**b),
                    &process.identity,
                    seconds,
                    agent,
                )
            })
            .collect()
    }

    fn build(
        fd: i32,
        state: Option<&FdState>,
        sync: Option<&SyncState>,
        identity: &Identity,
        seconds: f64,
        agent: &Agent,
    ) -> FdReport {
        let total = state.map_or(WriteStats::ZERO, |state| state.total);
        let metrics = BatchingMetrics::of(&total, seconds, &agent.model().rules().transition);
        let info = state.and_then(|state| state.info.as_ref()).or_else(|| sync.and_then(|s| s.info.as_ref()));
        FdReport {
            fd,
            kind: match info {
                Some(info) => Some(info.kind.name()),
                None if fd < 0 => Some("process-wide"),
                None => None,
            },
            target: match (info, sync) {
                (Some(info), _) => Some(info.target.clone()),
                (None, Some(sync)) if fd < 0 => Some(sync.describe(fd)),
                _ => None,
            },
            write: WriteReport::build(&total, &metrics),
            drops: DropReport::build(&metrics),
            unbatched: state.is_some_and(|state| state.flag.is_raised()),
            timer_flush: state.and_then(|state| state.timer),
            pattern: state.and_then(FdState::pattern),
            peer: state.and_then(|state| state.peer().cloned()),
            round_trip_bound: state.is_some_and(|state| state.round_trip.is_raised()),
            advice: fd_advice(fd, state, sync, identity),
            sync: sync.map(|sync| SyncReport::build(&sync.total, seconds)),
            sync_per_write: sync.is_some_and(|sync| sync.flag.is_raised()),
        }
    }
}

impl SyncReport {
    fn build(stats: &SyncStats, seconds: f64) -> SyncReport {
        let m = SyncMetrics::of(stats, seconds);
        SyncReport {
            calls: m.calls,
            calls_by_syscall: nonzero(SyncCall::ALL, SyncCall::name, |c| stats.calls[c as usize]),
            calls_per_sec: m.calls_per_sec,
            writes: m.writes,
            bytes: m.bytes,
            writes_per_sync: Distribution::of(m.writes_per_sync, m.mean_writes_per_sync),
            bytes_per_sync: Distribution::of(m.bytes_per_sync, m.mean_bytes_per_sync),
            latency_ns: Distribution::of(m.latency_ns, m.mean_latency_ns),
            gap_ns: Distribution::of(m.gap_ns, None),
            wait_share: m.wait_share,
            errors: m.errors,
        }
    }
}

/// What to change about a descriptor, for each of its raised flags.
fn fd_advice(fd: i32, state: Option<&FdState>, sync: Option<&SyncState>, identity: &Identity) -> Vec<String> {
    let mut advice = state.map_or_else(Vec::new, |state| advice::of_fd(identity.runtime.as_ref(), fd, state));
    if let Some(sync) = sync.filter(|sync| sync.flag.is_raised()) {
        advice.push(sync::advice(identity, sync.info.as_ref()));
    }
    advice
}

/// The nonzero counts of `all`, by name: calls by syscall.
fn nonzero<T: Copy>(
    all: impl IntoIterator<Item = T>,
    name: fn(T) -> &'static str,
    count: impl Fn(T) -> u64,
) -> BTreeMap<&'static str, u64> {
    all.into_iter().map(|t| (name(t), count(t))).filter(|&(_, n)| n > 0).collect()
}

impl Distribution {
    fn of(quantiles: Option<Quantiles>, mean: Option<f64>) -> Distribution {
        Distribution { p50: quantiles.map(|q| q.p50), p99: quantiles.map(|q| q.p99), mean, median: None }
    }

    fn with_median(self, median: Option<f64>) -> Distribution {
        Distribution { median, ..self }
    }
}

impl WriteReport {
    fn build(stats: &WriteStats, m: &BatchingMetrics) -> WriteReport {
        let dist = |q: Option<Quantiles>, mean: f64| Distribution::of(q, (m.calls > 0).then_some(mean));
        WriteReport {
            calls: m.calls,
            calls_by_syscall: nonzero(WriteSyscall::ALL, WriteSyscall::name, |s| stats.calls[s as usize]),
            calls_per_sec: m.calls_per_sec,
            bytes: m.bytes,
            bytes_requested: m.bytes_requested,
            records: m.records,
            failed_bytes_requested: stats.failed_bytes_requested,
            failed_records: stats.failed_records,
            bytes_per_call: dist(m.bytes_per_call, m.mean_bytes_per_call).with_median(m.median_bytes_per_call),
            records_per_call: dist(m.records_per_call, m.mean_records_per_call).with_median(m.median_records_per_call),
            gap_ns: Distribution::of(m.gap_ns, None),
        }
    }
}

impl DropReport {
    fn build(m: &BatchingMetrics) -> DropReport {
        DropReport { by_reason: m.drops, total: m.drops.total() }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}
