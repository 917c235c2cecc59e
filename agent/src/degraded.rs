//! The degraded mode, for where BPF is refused altogether (a hardened
//! container, seccomp, no CAP_BPF): polls `/proc/PID/io` for each process's
//! write syscalls (`syscw`) and bytes written (`wchar`).
//!
//! What it cannot see, and so never reports ([`CANNOT_SEE`]): descriptors
//! (everything is on one pseudo-fd, [`ALL_FDS`]), records per call (iovecs,
//! messages), outcomes, histograms, io_uring, syncs. `send*` calls on sockets are not in
//! `syscw` on Linux; writes to sockets through `write`/`writev` are.

use std::collections::HashMap;

use agent_common::{key::FdKey, write::WriteStats, write::WriteSyscall};
use procfs::{
    Current as _,
    process::{Process, all_processes},
};

/// The descriptor the degraded mode attributes all of a process's writes to.
pub const ALL_FDS: i32 = -1;

/// What the degraded mode cannot see, said wherever it is shown.
pub const CANNOT_SEE: &str = "no per-fd figures, histograms, outcomes, io_uring, or syncs (fsync, fdatasync, \
    O_SYNC/O_DSYNC writes: sync per write cannot be told)";

/// Why the agent runs degraded, and what full mode would need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    pub reason: String,
    pub needs: &'static str,
}

/// What full mode needs, in one sentence.
pub const FULL_MODE_NEEDS: &str = "root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (to mount \
    tracefs), a seccomp profile that allows bpf(), tracefs at /sys/kernel/tracing, and a kernel with BTF";

/// Cumulative counters of one process, with the start time that tells it
/// from a later process given the same pid.
#[derive(Debug, Clone, Copy)]
struct Counters {
    start_ticks: u64,
    syscw: u64,
    wchar: u64,
}

#[derive(Default)]
pub struct ProcPoller {
    previous: HashMap<u32, Counters>,
    /// When the last poll ran, in clock ticks since boot (0 before the first).
    last_poll_ticks: u64,
}

impl ProcPoller {
    /// What every process wrote since the last poll. A process seen for the
    /// first time counts in full if it started after the last poll, and
    /// only sets its baseline otherwise: what it wrote before the agent
    /// started is not the agent's to report. A process that starts and
    /// exits between two polls is never seen.
    pub fn read(&mut self) -> Vec<(FdKey, WriteStats)> {
        let Ok(processes) = all_processes() else { return Vec::new() };
        let started_since = Counters { start_ticks: 0, syscw: 0, wchar: 0 };
        let last_poll_ticks = std::mem::replace(&mut self.last_poll_ticks, boot_ticks());
        let mut seen = HashMap::with_capacity(self.previous.len());
        let mut deltas = Vec::new();
        for process in processes.flatten() {
            let Some(now) = counters(&process) else { continue };
            let pid = process.pid as u32;
            let before = match self.previous.get(&pid) {
                None if last_poll_ticks > 0 && now.start_ticks >= last_poll_ticks => {
                    Some(Counters { start_ticks: now.start_ticks, ..started_since })
                }
                before => before.copied(),
            };
            if let Some(delta) = delta(before.as_ref(), &now) {
                deltas.push((FdKey { tgid: pid, fd: ALL_FDS }, delta));
            }
            seen.insert(pid, now);
        }
        self.previous = seen;
        deltas
    }
}

/// Clock ticks since boot, the unit of a process's start time.
fn boot_ticks() -> u64 {
    let uptime = procfs::Uptime::current().map_or(0.0, |u| u.uptime);
    (uptime * procfs::ticks_per_second() as f64) as u64
}

fn counters(process: &Process) -> Option<Counters> {
    let io = process.io().ok()?;
    let start_ticks = process.stat().ok()?.starttime;
    Some(Counters { start_ticks, syscw: io.syscw, wchar: io.wchar })
}

/// The writes between two readings of the same process, as write-family
/// statistics with only calls and bytes filled in; `None` when there were
/// none, or when `before` is missing or of another process (a reused pid).
fn delta(before: Option<&Counters>, now: &Counters) -> Option<WriteStats> {
    let before = before.filter(|before| before.start_ticks == now.start_ticks)?;
    let calls = now.syscw.checked_sub(before.syscw).filter(|&calls| calls > 0)?;
    let bytes = now.wchar.saturating_sub(before.wchar);
    let mut stats = WriteStats::ZERO;
    stats.calls[WriteSyscall::Write as usize] = calls;
    stats.bytes_requested = bytes;
    stats.bytes_written = bytes;
    Some(stats)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn counts_own_writes() {
        let mut poller = ProcPoller::default();
        poller.read();
        let mut devnull = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        for _ in 0..1000 {
            devnull.write_all(&[0; 100]).unwrap();
        }
        let me = FdKey { tgid: std::process::id(), fd: ALL_FDS };
        let (_, stats) = poller.read().into_iter().find(|(key, _)| *key == me).expect("own writes seen");
        // Other test threads of this process may write too.
        assert!(stats.total_calls() >= 1000, "{stats:?}");
        assert!(stats.bytes_written >= 100_000, "{stats:?}");
    }

    #[test]
    fn a_new_process_or_a_reused_pid_only_sets_a_baseline() {
        let before = Counters { start_ticks: 1, syscw: 10, wchar: 100 };
        let now = Counters { start_ticks: 1, syscw: 15, wchar: 600 };
        let stats = delta(Some(&before), &now).unwrap();
        assert_eq!((stats.total_calls(), stats.bytes_written), (5, 500));
        assert_eq!(delta(Some(&now), &now), None, "no writes");
        assert_eq!(delta(None, &now), None, "first sight");
        let older = Counters { start_ticks: 0, ..before };
        assert_eq!(delta(Some(&older), &now), None, "the pid now names another process");
    }
}
