//! The write family: `write`, `writev`, `pwrite64`, `pwritev`, `pwritev2`,
//! `sendto`, `sendmsg` and `sendmmsg`.
//!
//! Called at each call's exit (see `syscalls`), with its arguments and its
//! result, so each call costs one probe.

use agent_common::{
    key::FdKey,
    maps::ProbeErrorKind,
    write::{MARK_EVERY_NS, MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL, Outcome, WriteEntry, WriteSyscall},
};
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap},
};

use crate::{
    aggregate::{add, count_probe_error, entry, hist_add, swap},
    syscall_args::{Args, iovec_bytes, mmsghdr_sent_bytes, msghdr_iov},
    tracepoint::traced_tgid,
};

/// Default capacity of the maps keyed per (tgid, fd); the agent sets the
/// configured one at load time.
const MAX_FDS: u32 = 16384;

/// One entry per (process, fd), shared by all CPUs and updated with atomic
/// adds, so that it takes the same memory on any node: about 0.9 KB per
/// pair, 14 MiB for the default 16,384 pairs (a per-CPU hash took that per
/// possible CPU). Preallocated: an insert in the probe never allocates, so a
/// burst of new writers cannot make it fail (178 of 10,000 writers forked in
/// a row found the allocator dry without preallocation: measured here).
#[map(name = "WRITE_STATS")]
static WRITE_STATS: HashMap<FdKey, WriteEntry> = HashMap::with_max_entries(MAX_FDS, 0);

/// Which pairs wrote lately: when a call last marked each (kernel monotonic
/// ns), at most [`MARK_EVERY_NS`] before the pair's last call. It has the
/// keys of WRITE_STATS and no more (the agent deletes both together), so it
/// never fills up, and it tells the agent which statistics changed since it
/// last read them without copying every 0.9 KB entry. A call updates it
/// only when the mark has aged, so that most calls look up one map.
#[map(name = "LAST_WRITE")]
static LAST_WRITE: HashMap<FdKey, u64> = HashMap::with_max_entries(MAX_FDS, 0);

/// Never written: the zeroed value a new entry starts from (too big for the stack).
#[map(name = "ZERO_ENTRY")]
static ZERO_ENTRY: Array<WriteEntry> = Array::with_max_entries(1, 0);

/// What one call asked for: bytes (or, for `sendmmsg`, messages) to compare
/// the result with, bytes for the size histogram, and records. Bytes and
/// records are clamped to what the kernel would ever accept of one call.
struct Request {
    wanted: u64,
    bytes: u64,
    records: u64,
}

/// Aggregates one finished write-family call: its arguments and result.
#[inline(always)]
pub fn record_write(syscall: WriteSyscall, args: &Args, ret: i64) {
    let Some(tgid) = traced_tgid() else { return };
    let key = FdKey { tgid, fd: args.arg0 as i32 };
    let request = request(syscall, args, ret);
    let outcome = Outcome::classify(ret, request.wanted);

    let Some(zero) = ZERO_ENTRY.get_ptr(0) else { return };
    // SAFETY: `zero` points at a map value of the right type.
    let Some(entry) = entry(&WRITE_STATS, &key, unsafe { &*zero }, tgid, ProbeErrorKind::StatsMapFull) else {
        return;
    };
    // SAFETY: a valid map value, shared by all CPUs; updated atomically.
    let entry = unsafe { &mut *entry };
    let gap = clock(entry, &key);
    let stats = &mut entry.stats;
    add(&mut stats.calls[syscall as usize], 1);
    add(&mut stats.outcomes[outcome as usize], 1);
    if ret < 0 {
        // A refused call moved nothing: its request is kept apart from the
        // batch sizes of the calls that went through.
        add(&mut stats.failed_bytes_requested, request.bytes);
        add(&mut stats.failed_records, request.records);
    } else {
        add(&mut stats.bytes_requested, request.bytes);
        add(&mut stats.records, request.records);
        hist_add(&mut stats.bytes_hist, request.bytes);
        hist_add(&mut stats.records_hist, request.records);
        // sendmmsg returns messages sent; its bytes were summed from msg_len.
        add(&mut stats.bytes_written, if syscall == WriteSyscall::Sendmmsg { request.bytes } else { ret as u64 });
    }
    if let Some(gap) = gap {
        add(&mut stats.gap_ns_total, gap);
        hist_add(&mut stats.gap_hist, gap);
    }
}

#[inline(always)]
fn request(syscall: WriteSyscall, args: &Args, ret: i64) -> Request {
    match syscall {
        WriteSyscall::Write | WriteSyscall::Pwrite64 | WriteSyscall::Sendto => {
            // Compared unclamped: a call cut to MAX_RW_COUNT is a short write.
            Request { wanted: args.arg2, bytes: clamped(args.arg2, MAX_BYTES_PER_CALL), records: 1 }
        }
        WriteSyscall::Writev | WriteSyscall::Pwritev | WriteSyscall::Pwritev2 => vectored(args.arg1, args.arg2, ret),
        WriteSyscall::Sendmsg => match msghdr_iov(args.arg1) {
            Some((iov, iovlen)) => vectored(iov, iovlen, ret),
            None => unreadable(ret, 1),
        },
        WriteSyscall::Sendmmsg => {
            // The kernel cuts vlen to UIO_MAXIOV; the result counts messages
            // sent, and only those are records.
            let asked = clamped(args.arg2, MAX_RECORDS_PER_CALL);
            let sent = if ret > 0 { ret as u64 } else { 0 };
            let bytes = match mmsghdr_sent_bytes(args.arg1, sent) {
                Some(bytes) => bytes,
                None => {
                    count_probe_error(ProbeErrorKind::ArgsUnreadable);
                    0
                }
            };
            let records = if ret < 0 { asked } else { sent };
            Request { wanted: asked, bytes: clamped(bytes, MAX_BYTES_PER_CALL), records }
        }
    }
}

#[inline(always)]
fn vectored(iov: u64, count: u64, ret: i64) -> Request {
    // More than UIO_MAXIOV iovecs fail with EINVAL: count what could have gone.
    let count = clamped(count, MAX_RECORDS_PER_CALL);
    match iovec_bytes(iov, count) {
        // Compared unclamped (the sum saturates rather than wraps).
        Some(total) => Request { wanted: total, bytes: clamped(total, MAX_BYTES_PER_CALL), records: count },
        None => unreadable(ret, count),
    }
}

/// `value`, or `limit` if it is larger: the most the kernel takes of one
/// call. A clamp is counted, so that a request cut here is never silent.
#[inline(always)]
fn clamped(value: u64, limit: u64) -> u64 {
    if value > limit {
        count_probe_error(ProbeErrorKind::ArgsClamped);
        limit
    } else {
        value
    }
}

/// The user memory holding the request could not be read (paged out): take
/// the result as the request, so the call counts as complete.
#[inline(always)]
fn unreadable(ret: i64, records: u64) -> Request {
    count_probe_error(ProbeErrorKind::ArgsUnreadable);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    Request { wanted: bytes, bytes, records }
}

/// Nanoseconds since the previous call on the same pair, and records this
/// one; marks the pair in LAST_WRITE if its mark has aged. Before the
/// statistics change, so that a mark never trails them.
#[inline(always)]
fn clock(entry: &mut WriteEntry, key: &FdKey) -> Option<u64> {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(entry.marked_ns) >= MARK_EVERY_NS {
        // Racing calls on other CPUs may both mark: the later mark stands.
        entry.marked_ns = now;
        mark(key, now);
    }
    let last = swap(&mut entry.last_ns, now);
    (last != 0).then(|| now.saturating_sub(last))
}

#[inline(always)]
fn mark(key: &FdKey, now: u64) {
    match LAST_WRITE.get_ptr_mut(key) {
        // SAFETY: a valid map value.
        Some(mark) => unsafe { *mark = now },
        None => {
            let _ = LAST_WRITE.insert(key, now, 0);
        }
    }
}

/// The write calls and bytes written of `key` so far, as a sync compares
/// them with those at its previous sync; `None` while it has not written
/// (or its entry was evicted as idle). Read from the shared statistics
/// themselves, so that a write pays no extra count for the syncs.
#[inline(always)]
pub fn write_totals(key: &FdKey) -> Option<(u64, u64)> {
    // SAFETY: a valid map value, read word by word (each word is updated atomically).
    let stats = unsafe { &(*WRITE_STATS.get_ptr(key)?).stats };
    let mut calls = 0;
    for syscall_calls in stats.calls {
        calls += syscall_calls;
    }
    Some((calls, stats.bytes_written))
}
