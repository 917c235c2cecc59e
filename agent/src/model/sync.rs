//! Durability, batchwatch's second batching domain: the four metrics for
//! syncs and the *sync per write* verdict, with advice for what is
//! recognised.
//!
//! - batch size: writes and bytes made durable per sync (the descriptor's
//!   writes since its previous sync, counted in the kernel);
//! - wait: each sync's duration (entry to exit), the time between syncs, and
//!   the share of the interval spent waiting in sync;
//! - depth: the dirty data a sync had to write is not told by the syscall
//!   tracepoints (the bytes written since the previous sync bound it from above);
//! - drops: failed syncs (`EIO` the worst: written data may be lost).

use agent_common::{
    counters::Counters as _,
    hist::log2_slot,
    sync::{IO_URING_FD, MAPPED_MEMORY_FD, PROCESS_WIDE_FD, SyncCall, SyncOutcome, SyncStats},
    write::WriteStats,
};
use serde::Serialize;

use super::{flag::Flag, metrics::Quantiles};
use crate::{
    attribution::{fds::FdInfo, identity::Identity},
    config::SyncRule,
    runtime::RuntimeName,
};

/// The syncs of one descriptor (or of one of the pseudo-descriptors that
/// `sync`/`syncfs`, `msync` and io_uring requests are counted under).
#[derive(Debug, Clone)]
pub struct SyncState {
    /// What the descriptor is, when it is a real one and was seen open.
    pub info: Option<FdInfo>,
    /// What it synced in the interval under way.
    interval: SyncStats,
    /// Since it was first seen syncing.
    pub total: SyncStats,
    /// Metrics of the last interval.
    pub metrics: SyncMetrics,
    /// Raised while it makes each write durable on its own.
    pub flag: Flag,
}

impl SyncState {
    pub fn new(info: Option<FdInfo>) -> SyncState {
        SyncState {
            info,
            interval: SyncStats::ZERO,
            total: SyncStats::ZERO,
            metrics: SyncMetrics::default(),
            flag: Flag::default(),
        }
    }

    pub fn record(&mut self, delta: &SyncStats) {
        self.interval.add(delta);
        self.total.add(delta);
    }

    /// Ends an interval: what was synced in it; the next starts empty.
    pub fn close(&mut self) -> SyncStats {
        std::mem::replace(&mut self.interval, SyncStats::ZERO)
    }

    /// The descriptor, for people.
    pub fn describe(&self, fd: i32) -> String {
        match (fd, &self.info) {
            (PROCESS_WIDE_FD, _) => "sync/syncfs (whole filesystems)".to_owned(),
            (MAPPED_MEMORY_FD, _) => "msync (mapped memory)".to_owned(),
            (IO_URING_FD, _) => "io_uring sync requests".to_owned(),
            (_, Some(info)) => info.describe(fd),
            (_, None) => format!("fd {fd}"),
        }
    }
}

/// Failed syncs by reason: drops of the worst kind, since the caller may
/// believe data durable that is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncErrors {
    pub eio: u64,
    pub einval: u64,
    pub enospc: u64,
    pub other_error: u64,
    pub total: u64,
}

impl SyncErrors {
    pub fn of(stats: &SyncStats) -> SyncErrors {
        let n = |outcome: SyncOutcome| stats.outcomes[outcome as usize];
        SyncErrors {
            eio: n(SyncOutcome::Eio),
            einval: n(SyncOutcome::Einval),
            enospc: n(SyncOutcome::NoSpace),
            other_error: n(SyncOutcome::OtherError),
            total: stats.errors(),
        }
    }
}

/// The durability metrics over `seconds` of activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SyncMetrics {
    pub calls: u64,
    pub calls_per_sec: f64,
    /// Writes and bytes the syncs made durable.
    pub writes: u64,
    pub bytes: u64,
    /// Per sync that counts writes (a successful one on a real descriptor).
    pub writes_per_sync: Option<Quantiles>,
    pub mean_writes_per_sync: Option<f64>,
    pub bytes_per_sync: Option<Quantiles>,
    pub mean_bytes_per_sync: Option<f64>,
    /// Each sync's duration, for those whose entry was seen.
    pub latency_ns: Option<Quantiles>,
    pub mean_latency_ns: Option<f64>,
    /// Time between syncs of the descriptor.
    pub gap_ns: Option<Quantiles>,
    /// Time spent inside syncs per second of the span: the share of one
    /// thread's time; above 1 when several threads sync at once.
    pub wait_share: f64,
    pub errors: SyncErrors,
}

impl SyncMetrics {
    pub fn of(stats: &SyncStats, seconds: f64) -> SyncMetrics {
        let calls = stats.total_calls();
        let counted: u64 = stats.writes_hist.iter().sum();
        let mean = |total: u64, n: u64| (n > 0).then(|| total as f64 / n as f64);
        SyncMetrics {
            calls,
            calls_per_sec: if seconds > 0.0 { calls as f64 / seconds } else { 0.0 },
            writes: stats.writes,
            bytes: stats.bytes,
            writes_per_sync: Quantiles::of(&stats.writes_hist),
            mean_writes_per_sync: mean(stats.writes, counted),
            bytes_per_sync: Quantiles::of(&stats.bytes_hist),
            mean_bytes_per_sync: mean(stats.bytes, counted),
            latency_ns: Quantiles::of(&stats.latency_hist),
            mean_latency_ns: mean(stats.latency_ns_total, stats.timed),
            gap_ns: Quantiles::of(&stats.gap_hist),
            wait_share: if seconds > 0.0 { stats.latency_ns_total as f64 / (seconds * 1e9) } else { 0.0 },
            errors: SyncErrors::of(stats),
        }
    }
}

/// Whether one interval of a descriptor makes each write durable on its
/// own: at least `sync.min_per_sec` syncs a second carrying a median of one
/// or two writes (log2 buckets 1 and 2, which hold exactly 1 and 2).
pub fn is_sync_per_write(m: &SyncMetrics, rule: &SyncRule) -> bool {
    m.calls_per_sec >= rule.min_per_sec && m.writes_per_sync.is_some_and(|q| (1..=2).contains(&q.p50))
}

/// What the writes to an `O_SYNC`/`O_DSYNC` descriptor are as syncs: each
/// write is one sync of itself, whose duration is inside the write's.
pub fn synced_writes(writes: &WriteStats) -> SyncStats {
    let mut s = SyncStats::ZERO;
    let calls = writes.total_calls();
    s.calls[SyncCall::DsyncWrite as usize] = calls;
    s.outcomes[SyncOutcome::Ok as usize] = calls;
    s.writes = calls;
    s.bytes = writes.bytes_written;
    s.writes_hist[log2_slot(1, s.writes_hist.len())] = calls;
    // Same log2 slots as the write histograms, which are no wider.
    s.bytes_hist[..writes.bytes_hist.len()].copy_from_slice(&writes.bytes_hist);
    s.gap_hist[..writes.gap_hist.len()].copy_from_slice(&writes.gap_hist);
    s.gap_ns_total = writes.gap_ns_total;
    s
}

/// Why a descriptor is flagged, in words.
pub fn reason(what: &str, m: &SyncMetrics, held_s: f64) -> String {
    let latency = m.mean_latency_ns.map_or_else(String::new, |ns| format!(", {:.0} µs each", ns / 1000.0));
    format!(
        "{what}: sync per write, {:.0} syncs/s with a median of {} write(s) each{latency}, for {held_s:.0} s; \
         {:.0}% of the time spent waiting in sync",
        m.calls_per_sec,
        m.writes_per_sync.map_or(0, |q| q.p50),
        m.wait_share * 100.0,
    )
}

/// What to do about it, for what batchwatch recognises.
pub fn advice(identity: &Identity, info: Option<&FdInfo>) -> String {
    let command = identity.command.to_lowercase();
    let comm = identity.comm.to_lowercase();
    let target = info.map_or("", |info| info.target.as_str());
    // The runtime read from the executable knows a JVM or CPython that a
    // renamed launcher hides from the command line.
    let runtime = identity.runtime.as_ref().map(|runtime| runtime.name);
    if info.is_some_and(|info| info.synced_writes) {
        return format!(
            "{target} is opened O_SYNC/O_DSYNC, so every write waits for the disk: open it without the flag \
             and call fdatasync once per batch of writes (group commit)"
        );
    }
    if comm.contains("sqlite") || target.ends_with("-journal") || target.ends_with("-wal") || target.ends_with(".db") {
        return "SQLite in autocommit mode syncs each statement: wrap the inserts in one transaction \
                (BEGIN ... COMMIT), or use PRAGMA journal_mode=WAL with PRAGMA synchronous=NORMAL"
            .to_owned();
    }
    if comm.starts_with("postgres") || command.contains("postgres") {
        return "PostgreSQL flushes the WAL at each commit: set commit_delay (with commit_siblings) so concurrent \
                commits share a flush, batch statements per transaction, or use synchronous_commit=off where \
                losing the last commits on a crash is acceptable"
            .to_owned();
    }
    if runtime == Some(RuntimeName::Java) || comm == "java" || command.contains("java ") || command.contains("/java") {
        return "a JVM forcing each record (FileChannel.force, or a log appender flushing every event, such as \
                immediateFlush=true): force once per batch, or use an async appender with a bounded queue"
            .to_owned();
    }
    if runtime == Some(RuntimeName::Python) || comm.starts_with("python") || command.contains("python") {
        return "Python calling os.fsync after each record: write the records, then fsync once per batch \
                (or on a timer of a few milliseconds)"
            .to_owned();
    }
    "group commit: gather the writes of a few milliseconds (or of concurrent requests) and make them durable with \
     one fsync/fdatasync"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;
    use crate::{attribution::fds::FdKind, testing::Write};

    const RULE: SyncRule = SyncRule { min_per_sec: 10.0 };

    /// `syncs` successful fsyncs of `writes` writes of `bytes` bytes each.
    fn syncs(syncs: u64, writes: u64, bytes: u64) -> SyncStats {
        let mut s = SyncStats::ZERO;
        s.calls[SyncCall::Fsync as usize] = syncs;
        s.outcomes[SyncOutcome::Ok as usize] = syncs;
        s.writes = syncs * writes;
        s.bytes = syncs * writes * bytes;
        s.writes_hist[log2_slot(writes, s.writes_hist.len())] = syncs;
        s.bytes_hist[log2_slot(writes * bytes, s.bytes_hist.len())] = syncs;
        s.timed = syncs;
        s.latency_ns_total = syncs * 1_000_000;
        s.latency_hist[log2_slot(1_000_000, s.latency_hist.len())] = syncs;
        s
    }

    #[test]
    fn one_write_per_sync_is_flagged_and_a_hundred_are_not() {
        let m = SyncMetrics::of(&syncs(500, 1, 100), 1.0);
        assert_eq!((m.calls, m.writes, m.mean_writes_per_sync), (500, 500, Some(1.0)));
        assert_eq!(m.writes_per_sync, Some(Quantiles { p50: 1, p99: 1 }));
        assert_eq!(m.mean_latency_ns, Some(1_000_000.0));
        // 500 syncs of 1 ms each in one second: half of it waiting.
        assert_eq!(m.wait_share, 0.5);
        assert!(is_sync_per_write(&m, &RULE));
        let m = SyncMetrics::of(&syncs(5, 100, 100), 1.0);
        assert_eq!(m.mean_writes_per_sync, Some(100.0));
        assert!(!is_sync_per_write(&m, &RULE), "batched");
        assert!(!is_sync_per_write(&SyncMetrics::of(&syncs(9, 1, 100), 1.0), &RULE), "too rare");
        assert!(!is_sync_per_write(&SyncMetrics::of(&syncs(500, 0, 0), 1.0), &RULE), "nothing written");
    }

    #[test]
    fn failed_syncs_are_errors_by_reason() {
        let mut s = syncs(3, 1, 1);
        s.calls[SyncCall::Fsync as usize] += 4;
        s.outcomes[SyncOutcome::Einval as usize] = 3;
        s.outcomes[SyncOutcome::Eio as usize] = 1;
        let e = SyncMetrics::of(&s, 1.0).errors;
        assert_eq!((e.eio, e.einval, e.enospc, e.other_error, e.total), (1, 3, 0, 0, 4));
    }

    #[test]
    fn o_dsync_writes_are_one_write_per_sync() {
        let writes = Write { calls: 200, records: 1, bytes: 100, gap_ns: 1000, eagain: 0 }.stats();
        let m = SyncMetrics::of(&synced_writes(&writes), 1.0);
        assert_eq!((m.calls, m.writes, m.bytes), (200, 200, 20_000));
        assert_eq!(m.writes_per_sync, Some(Quantiles { p50: 1, p99: 1 }));
        assert_eq!(m.bytes_per_sync, Some(Quantiles { p50: 128, p99: 128 }));
        assert_eq!(m.latency_ns, None, "inside the writes");
        assert!(is_sync_per_write(&m, &RULE));
    }

    #[test]
    fn advice_names_what_it_recognises() {
        let who = |comm: &str, command: &str| Identity {
            pid: 1,
            start_ticks: 1,
            comm: comm.into(),
            command: command.into(),
            container: None,
            runtime: None,
        };
        let file = |target: &str, synced_writes| FdInfo { kind: FdKind::File, target: target.into(), synced_writes };
        let sqlite = advice(&who("sqlite3", "sqlite3 /tmp/t.db"), Some(&file("/tmp/t.db-journal", false)));
        assert!(sqlite.contains("synchronous=NORMAL"), "{sqlite}");
        assert!(advice(&who("postgres", "postgres: walwriter"), None).contains("commit_delay"));
        let launcher = Identity {
            runtime: Some(Runtime { name: RuntimeName::Java, version: None }),
            ..who("kafka-server", "/opt/kafka/bin/kafka-server")
        };
        assert!(advice(&launcher, None).contains("FileChannel.force"));
        assert!(advice(&who("java", "java -jar app.jar"), None).contains("FileChannel.force"));
        assert!(advice(&who("python3", "python3 app.py"), None).contains("os.fsync"));
        let dsync = advice(&who("app", "app"), Some(&file("/var/log/app.log", true)));
        assert!(dsync.contains("O_DSYNC"), "{dsync}");
        assert!(advice(&who("app", "app"), Some(&file("/var/log/app.log", false))).starts_with("group commit"));
    }
}
