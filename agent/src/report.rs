//! The JSON report of `batchwatch record`: one document describing the node
//! and every process that wrote during the window. Its shape is documented
//! in `docs/report.md`; field names are part of the interface.

use std::collections::BTreeMap;

use agent_common::write::{WriteStats, WriteSyscall};
use serde::Serialize;

use crate::{
    agent::Agent,
    model::{
        FdState, ProcessState,
        classify::TimerFlush,
        metrics::{BatchingMetrics, Drops, Quantiles},
    },
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
    /// `measured` at start-up, or `config`.
    pub transition_cost_source: &'static str,
    pub probes_attached: Vec<String>,
    pub probes_failed: Vec<FailedProbe>,
    /// New (process, fd) pairs the kernel could not track: its map was full.
    pub stats_map_full: u64,
    /// Calls whose iovecs or headers could not be read from user memory.
    pub args_unreadable: u64,
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
    pub fds: Vec<FdReport>,
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
    pub bytes_per_call: Distribution,
    pub records_per_call: Distribution,
    pub gap_ns: Distribution,
}

/// Percentiles are log2 bucket lower edges (the value lies in `[p, 2p)`);
/// `null` when there was no sample. `mean` is exact.
#[derive(Debug, Serialize)]
pub struct Distribution {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
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
        let errors = agent.probe_errors();
        let mut processes: Vec<_> =
            agent.model().processes().map(|p| ProcessReport::build(p, duration_s, agent)).collect();
        processes.sort_by(|a, b| b.transition_cores.total_cmp(&a.transition_cores).then(a.pid.cmp(&b.pid)));
        Report {
            batchwatch_version: env!("CARGO_PKG_VERSION"),
            node: NodeReport {
                hostname: read_trimmed("/proc/sys/kernel/hostname"),
                kernel: read_trimmed("/proc/sys/kernel/osrelease"),
                transition_cost_ns: node.transition_cost_ns,
                transition_cost_source: if node.transition_cost_measured { "measured" } else { "config" },
                probes_attached: node.attached.clone(),
                probes_failed: node
                    .failed
                    .iter()
                    .map(|f| FailedProbe { tracepoint: f.tracepoint.clone(), reason: f.reason.clone() })
                    .collect(),
                stats_map_full: errors.stats_map_full,
                args_unreadable: errors.args_unreadable,
            },
            window: Window { duration_s },
            processes,
        }
    }
}

impl ProcessReport {
    fn build(process: &ProcessState, seconds: f64, agent: &Agent) -> ProcessReport {
        let total = process.total();
        let metrics = BatchingMetrics::of(&total, seconds, &agent.model().rules().transition);
        ProcessReport {
            pid: process.identity.pid,
            comm: process.identity.comm.clone(),
            command: process.identity.command.clone(),
            exited: process.exited.is_some(),
            write: WriteReport::build(&total, &metrics),
            drops: DropReport::build(&metrics),
            transition_cores: metrics.transition_cores,
            saving_cores: metrics.saving_cores,
            unbatched: process.ever_unbatched,
            reasons: process.last_reasons.clone(),
            fds: process.fds.iter().map(|(&fd, state)| FdReport::build(fd, state, seconds, agent)).collect(),
        }
    }
}

impl FdReport {
    fn build(fd: i32, state: &FdState, seconds: f64, agent: &Agent) -> FdReport {
        let metrics = BatchingMetrics::of(&state.total, seconds, &agent.model().rules().transition);
        FdReport {
            fd,
            kind: state.info.as_ref().map(|info| info.kind.name()),
            target: state.info.as_ref().map(|info| info.target.clone()),
            write: WriteReport::build(&state.total, &metrics),
            drops: DropReport::build(&metrics),
            unbatched: state.streak.flagged,
            timer_flush: state.timer,
        }
    }
}

impl WriteReport {
    fn build(stats: &WriteStats, m: &BatchingMetrics) -> WriteReport {
        let dist = |q: Option<Quantiles>, mean: Option<f64>| Distribution {
            p50: q.map(|q| q.p50),
            p99: q.map(|q| q.p99),
            mean: mean.filter(|_| m.calls > 0),
        };
        WriteReport {
            calls: m.calls,
            calls_by_syscall: WriteSyscall::ALL
                .iter()
                .map(|&s| (s.name(), stats.calls[s as usize]))
                .filter(|&(_, n)| n > 0)
                .collect(),
            calls_per_sec: m.calls_per_sec,
            bytes: m.bytes,
            bytes_requested: m.bytes_requested,
            records: m.records,
            bytes_per_call: dist(m.bytes_per_call, Some(m.mean_bytes_per_call)),
            records_per_call: dist(m.records_per_call, Some(m.mean_records_per_call)),
            gap_ns: dist(m.gap_ns, None),
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
