//! The sync family: `fsync`, `fdatasync`, `sync_file_range` and `msync`
//! per (process, fd), `syncfs` and `sync` per process, and io_uring's
//! `FSYNC` and `SYNC_FILE_RANGE` requests (counted as they are submitted).
//!
//! A sync costs two probes: its entry stamps the thread's start time in
//! `SYNC_STARTS` (see `syscalls`), its exit takes it back and aggregates the
//! call into `SYNC_STATS`, one entry per (process, fd) shared by all CPUs and
//! updated with atomic adds. Syncs are rare next to writes, so neither the
//! contention nor the two probes matter, and the maps do not grow with the
//! number of CPUs: `SYNC_STARTS` holds one word per thread inside a sync,
//! `SYNC_STATS` and `SYNC_MARKS` one entry per (process, fd) that synced.
//!
//! The writes a sync made durable are the descriptor's write calls since its
//! previous sync: a sync reads the descriptor's call and byte totals from
//! its write statistics (`WRITE_STATS`, shared by all CPUs), and
//! each successful sync swaps them into `SYNC_MARKS`, so every write counts
//! towards exactly one sync, even when threads sync the same file at once.

use agent_common::{
    key::FdKey,
    maps::ProbeErrorKind,
    sync::{IO_URING_FD, MAPPED_MEMORY_FD, PROCESS_WIDE_FD, SyncCall, SyncMark, SyncOutcome, SyncStats},
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap},
};

use super::write_family::write_totals;
use crate::{
    aggregate::{add, count_probe_error, entry, hist_add, swap},
    syscall_args::Args,
    tracepoint::traced_tgid,
};

/// Default capacity of the maps keyed per (tgid, fd); the agent sets the
/// configured one at load time.
const MAX_SYNC_FDS: u32 = 4096;
/// Threads inside a sync call at once; the agent sets it at load time.
const MAX_SYNCING_THREADS: u32 = 4096;

/// Not preallocated: entries (1.4 KB each) are made on a descriptor's first
/// sync, which is rare and slow anyway, so the map costs what is used.
const NO_PREALLOC: u32 = 1;

#[map(name = "SYNC_STATS")]
static SYNC_STATS: HashMap<FdKey, SyncStats> = HashMap::with_max_entries(MAX_SYNC_FDS, NO_PREALLOC);

/// Same keys as `SYNC_STATS` (the agent deletes both together).
#[map(name = "SYNC_MARKS")]
static SYNC_MARKS: HashMap<FdKey, SyncMark> = HashMap::with_max_entries(MAX_SYNC_FDS, 0);

/// Thread id → when its sync call entered (kernel monotonic ns).
#[map(name = "SYNC_STARTS")]
static SYNC_STARTS: HashMap<u32, u64> = HashMap::with_max_entries(MAX_SYNCING_THREADS, 0);

/// Never written: the zeroed value a new entry starts from (too big for the stack).
#[map(name = "ZERO_SYNC_STATS")]
static ZERO_SYNC_STATS: Array<SyncStats> = Array::with_max_entries(1, 0);

/// Stamps the entry of the current thread's sync call.
#[inline(always)]
pub fn record_sync_entry() {
    if traced_tgid().is_none() {
        return;
    }
    let thread = bpf_get_current_pid_tgid() as u32;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if SYNC_STARTS.insert(thread, now, 0).is_err() {
        count_probe_error(ProbeErrorKind::SyncMapFull);
    }
}

/// The descriptor a sync call's statistics go under.
#[inline(always)]
pub fn sync_fd(call: SyncCall, args: &Args) -> i32 {
    match call {
        SyncCall::Msync => MAPPED_MEMORY_FD,
        SyncCall::Syncfs | SyncCall::Sync => PROCESS_WIDE_FD,
        SyncCall::UringFsync | SyncCall::UringSyncFileRange => IO_URING_FD,
        SyncCall::Fsync | SyncCall::Fdatasync | SyncCall::SyncFileRange | SyncCall::DsyncWrite => args.arg0 as i32,
    }
}

/// Aggregates one finished sync call: its duration, outcome, and what it
/// made durable.
#[inline(always)]
pub fn record_sync(call: SyncCall, args: &Args, ret: i64) {
    let thread = bpf_get_current_pid_tgid() as u32;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Taken back even for an untraced process, so no stamp is left behind.
    // SAFETY: a valid map value, read once.
    let started = SYNC_STARTS.get_ptr(thread).map(|at| unsafe { *at });
    if started.is_some() {
        let _ = SYNC_STARTS.remove(thread);
    }
    let Some(tgid) = traced_tgid() else { return };
    let key = FdKey { tgid, fd: sync_fd(call, args) };
    let Some(stats) = stats_of(&key) else { return };
    let outcome = SyncOutcome::classify(ret);
    add(&mut stats.calls[call as usize], 1);
    add(&mut stats.outcomes[outcome as usize], 1);
    if let Some(started) = started {
        let took = now.saturating_sub(started);
        add(&mut stats.timed, 1);
        add(&mut stats.latency_ns_total, took);
        hist_add(&mut stats.latency_hist, took);
    }
    // A failed sync made nothing durable: its writes wait for the next one.
    if outcome == SyncOutcome::Ok {
        mark(&key, stats, now);
    }
}

/// Counts an io_uring sync request as it is submitted (its completion is the
/// ring's: see `io_uring`).
#[inline(always)]
pub fn record_uring_sync(call: SyncCall, tgid: u32) {
    let key = FdKey { tgid, fd: IO_URING_FD };
    let Some(stats) = stats_of(&key) else { return };
    add(&mut stats.calls[call as usize], 1);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    mark(&key, stats, unsafe { bpf_ktime_get_ns() });
}

#[inline(always)]
fn stats_of(key: &FdKey) -> Option<&'static mut SyncStats> {
    // SAFETY: `zero` points at a map value of the right type.
    let zero = unsafe { &*ZERO_SYNC_STATS.get_ptr(0)? };
    let stats = entry(&SYNC_STATS, key, zero, key.tgid, ProbeErrorKind::SyncMapFull)?;
    // SAFETY: a valid map value; every update to it is atomic.
    Some(unsafe { &mut *stats })
}

/// Records a sync that ended at `now`: the time since the previous one, and
/// the writes (and bytes) made since, which this sync made durable.
#[inline(always)]
fn mark(key: &FdKey, stats: &mut SyncStats, now: u64) {
    let (writes, bytes) = if key.fd >= 0 { write_totals(key).unwrap_or((0, 0)) } else { (0, 0) };
    let Some(mark) = SYNC_MARKS.get_ptr_mut(key) else {
        // The first sync seen: it made durable what was written before it.
        if SYNC_MARKS.insert(key, SyncMark { at_ns: now, writes, bytes }, 0).is_err() {
            count_probe_error(ProbeErrorKind::SyncMapFull);
        }
        add_durable(key, stats, writes, bytes);
        return;
    };
    // SAFETY: a valid map value; its words are only swapped atomically.
    let mark = unsafe { &mut *mark };
    let previous = swap(&mut mark.at_ns, now);
    let gap = now.saturating_sub(previous);
    add(&mut stats.gap_ns_total, gap);
    hist_add(&mut stats.gap_hist, gap);
    let before = (swap(&mut mark.writes, writes), swap(&mut mark.bytes, bytes));
    // Counts below the mark mean the write entry was evicted as idle and
    // started again from zero: all it counted since is new.
    let since = |now: u64, then: u64| if now >= then { now - then } else { now };
    add_durable(key, stats, since(writes, before.0), since(bytes, before.1));
}

#[inline(always)]
fn add_durable(key: &FdKey, stats: &mut SyncStats, writes: u64, bytes: u64) {
    // The pseudo-descriptors' syncs have no writes of their own to count.
    if key.fd < 0 {
        return;
    }
    add(&mut stats.writes, writes);
    add(&mut stats.bytes, bytes);
    hist_add(&mut stats.writes_hist, writes);
    hist_add(&mut stats.bytes_hist, bytes);
}
